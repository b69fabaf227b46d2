"""`southbridge run --config FILE` / `--hide SPEC`: several domains in one process.

With `--config` the domains come from the TOML file (see `domains/config.py`); `--hide` adds
to its hide list. With `--hide` alone one privileged domain runs the `--bios` image (or the
bundled tour guest) with the run options, seeing every host device but the hidden ones, as
the original's boot option did. Each domain that does not end with a guest exit or power-off
gets one line on stderr; the exit status is the first domain's (isa-debug-exit convention,
124 on timeout), so the privileged domain decides it when it is listed first.
"""

from __future__ import annotations

import argparse
import sys

from southbridge.commands.common import check_timeout
from southbridge.domains.config import ConfigError, DomainConfig, HypervisorConfig, load_config
from southbridge.errors import UserError
from southbridge.host.hide import HideError, parse_hide
from southbridge.host.inventory import InventoryError


def config_from_args(args: argparse.Namespace) -> HypervisorConfig:
    """The hypervisor configuration the options describe (ConfigError/HideError on bad input)."""
    if args.config:
        cfg = load_config(args.config)
        if not cfg.domains:
            raise ConfigError(f"{args.config}: no [[domain]] tables: nothing to run")
    else:
        cfg = HypervisorConfig()
        cfg.domains.append(
            DomainConfig(
                name="dom0",
                privileged=True,
                memory_mb=args.memory,
                bios=args.bios,
                serial=args.serial,
                debugcon=args.debugcon,
            )
        )
    if args.hide:
        cfg.hide = parse_hide([*map(str, cfg.hide), *args.hide])
    return cfg


def run_hypervisor(args: argparse.Namespace) -> int:
    from southbridge.domains.hypervisor import Hypervisor, HypervisorError

    check_timeout(args.timeout)
    try:
        cfg = config_from_args(args)
        hv = Hypervisor(cfg)
    except (ConfigError, HideError, InventoryError) as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise UserError(f"host port backend: {e.strerror}") from None
    for msg in hv.warnings:
        print(f"southbridge: warning: {msg}", file=sys.stderr)
    try:
        hv.build()
        results = hv.run(args.timeout, getattr(args, "kvm_device", None))
    except (HypervisorError, ValueError, OSError) as e:
        hv.shutdown()
        raise UserError(str(e)) from None
    status = 0
    for i, dc in enumerate(cfg.domains):
        res = results.get(dc.name)
        if res is None:
            continue
        if res.reason not in ("exit", "poweroff", "reset"):
            print(f"southbridge: domain {dc.name}: {res.message}", file=sys.stderr)
        if i == 0:
            status = res.status
    return status & 0xFF
