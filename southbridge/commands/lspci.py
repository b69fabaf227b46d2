"""`southbridge lspci`: the bus of a CPU-less pc machine, as lspci shows it."""

from __future__ import annotations

import argparse
import sys

from southbridge.commands.common import Subparsers
from southbridge.errors import UserError


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    lp = sub.add_parser("lspci", help="list the pc machine's PCI bus like lspci -nn")
    lp.add_argument("-n", dest="numeric", action="count", help="-n: numbers only; -nn (default)")
    lp.add_argument("-x", dest="hex", action="count", help="hex dump: -x, -xxx, -xxxx")
    lp.add_argument("--dump", metavar="FILE", help="write an lspci -xxx dump (-xxxx with -xxxx)")
    lp.set_defaults(func=run)
    return lp


def run(args: argparse.Namespace) -> int:
    from southbridge.core.clock import ManualClock
    from southbridge.host.userfile import open_output_text
    from southbridge.machine.pc import PcMachine
    from southbridge.pci.lspci import dump, render

    machine = PcMachine(clock=ManualClock())
    bus = machine.pci_bus
    numeric = int(args.numeric or 2)
    hexlevel = int(args.hex or 0)
    if args.dump:
        try:
            with open_output_text(args.dump) as f:
                f.write(dump(bus, max(3, hexlevel)))
        except OSError as e:
            raise UserError(f"cannot write {args.dump}: {e.strerror}") from None
        return 0
    sys.stdout.write(render(bus, numeric, hexlevel))
    return 0
