"""`southbridge host`: the host's PCI devices like `lspci -nn`, with who may see each."""

from __future__ import annotations

import argparse
import sys

from southbridge.commands.common import Subparsers
from southbridge.errors import UserError


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
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
    h.set_defaults(func=run)
    return h


def run(args: argparse.Namespace) -> int:
    # Deferred: these imports cost every other command's start-up 30 ms.
    from southbridge.domains.assignment import Assignments
    from southbridge.domains.config import ConfigError, HypervisorConfig, load_config
    from southbridge.domains.hypervisor import load_inventory
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
