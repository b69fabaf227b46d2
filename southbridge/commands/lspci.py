"""`southbridge lspci`: the bus of a CPU-less pc machine, as lspci shows it."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from southbridge.commands import virtio_opts
from southbridge.commands.common import Subparsers
from southbridge.errors import UserError

if TYPE_CHECKING:
    from southbridge.machine.pc import PcMachine


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    lp = sub.add_parser("lspci", help="list the pc machine's PCI bus like lspci -nn")
    lp.add_argument("-n", dest="numeric", action="count", help="-n: numbers only; -nn (default)")
    lp.add_argument("-x", dest="hex", action="count", help="hex dump: -x, -xxx, -xxxx")
    lp.add_argument("--dump", metavar="FILE", help="write an lspci -xxx dump (-xxxx with -xxxx)")
    virtio_opts.add_options(lp)
    lp.set_defaults(func=run)
    return lp


def run(args: argparse.Namespace) -> int:
    """The default machine, plus the virtio devices named by --drive/--device."""
    from southbridge.core.clock import ManualClock
    from southbridge.machine.pc import PcMachine

    setup = virtio_opts.open_setup(virtio_opts.check(args), threads=False)
    try:
        machine = PcMachine(clock=ManualClock(), virtio=setup)
    except BaseException:
        virtio_opts.close_setup(setup)
        raise
    try:
        return _show(args, machine)
    finally:
        machine.close()


def _show(args: argparse.Namespace, machine: PcMachine) -> int:
    from southbridge.host.userfile import open_output_text
    from southbridge.pci.lspci import dump, render

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
