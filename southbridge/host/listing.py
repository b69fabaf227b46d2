"""`southbridge host`: the host's PCI devices like `lspci -nn`, with who may see each."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the imports below cost `southbridge run` 30 ms of start-up: deferred
    from southbridge.domains.config import HypervisorConfig
    from southbridge.host.inventory import HostInventory


def load_inventory(cfg: HypervisorConfig) -> HostInventory:
    from southbridge.host.inventory import load_lspci_dump, probe_sysfs

    if cfg.lspci_dump:
        return load_lspci_dump(cfg.lspci_dump)
    return probe_sysfs(cfg.sysfs or "/sys")


def run_host(args: argparse.Namespace) -> int:
    from southbridge.cli import UserError
    from southbridge.domains.assignment import Assignments
    from southbridge.domains.config import ConfigError, HypervisorConfig, load_config
    from southbridge.host.hide import HideError, parse_hide
    from southbridge.host.inventory import InventoryError
    from southbridge.host.pciids import lspci_nn_line

    try:
        cfg = load_config(args.config) if args.config else HypervisorConfig()
        if args.hide:
            cfg.hide = parse_hide([*map(str, cfg.hide), *args.hide])
        if args.sysfs:
            cfg.sysfs, cfg.lspci_dump = args.sysfs, None
        if args.lspci_dump:
            cfg.lspci_dump = args.lspci_dump
        inventory = load_inventory(cfg)
    except (ConfigError, HideError, InventoryError) as e:
        raise UserError(str(e)) from None
    ledger = Assignments(inventory, cfg.hide)
    for dc in cfg.domains:
        for addr in dc.assign:
            if ledger.is_hidden(addr):
                ledger.reserve(addr, dc.name)
    for msg in ledger.warnings:
        print(f"southbridge: warning: {msg}", file=sys.stderr)
    for dev in inventory:
        line = lspci_nn_line(dev.addr.short(), dev.class_code, dev.vendor, dev.device, dev.revision)
        print(f"{ledger.status(dev.addr):<20} {line}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    h = sub.add_parser("host", help="list the host's PCI devices and whether each is hidden")
    h.add_argument("--sysfs", metavar="ROOT", help="sysfs root to probe (default /sys)")
    h.add_argument("--lspci-dump", metavar="FILE", help="read an lspci -xxx dump instead")
    h.add_argument(
        "--hide",
        action="append",
        metavar="SPEC",
        help="hide=02:01.0 or (02:01.0)(0000:03:00.1); repeatable",
    )
    h.add_argument("--config", metavar="FILE", help="hypervisor configuration (TOML)")
    h.set_defaults(func=run_host)
