"""The `southbridge` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from southbridge import __version__


class UserError(Exception):
    """Bad user input: reported as one line and a non-zero exit status, never a traceback."""


def _cmd_qtest(args: argparse.Namespace) -> int:
    from southbridge.qtest.runner import run_qtest

    return run_qtest(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from southbridge.qtest.runner import run_demo

    return run_demo(args)


def _cmd_lspci(args: argparse.Namespace) -> int:
    from southbridge.pci.lspci import run_lspci

    return run_lspci(args)


def _cmd_run(args: argparse.Namespace) -> int:
    if args.config or args.hide:
        from southbridge.domains.runcmd import run_hypervisor

        return run_hypervisor(args)
    from southbridge.kvm.runner import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="southbridge", description=__doc__)
    p.add_argument("--version", action="version", version=f"southbridge {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = p.add_subparsers(dest="command", required=True)

    q = sub.add_parser("qtest", help="serve QEMU's qtest protocol over a CPU-less pc machine")
    q.add_argument("--socket", metavar="PATH", help="listen on a unix socket instead of stdio")
    q.add_argument("--trace", metavar="FILE", help="also record every access as qtest lines")
    q.add_argument("script", nargs="?", help="read commands from FILE instead of stdin")
    q.set_defaults(func=_cmd_qtest)

    from southbridge.host.listing import add_parser as add_host_parser

    add_host_parser(sub)

    lp = sub.add_parser("lspci", help="list the pc machine's PCI bus like lspci -nn")
    lp.add_argument("-n", dest="numeric", action="count", help="-n: numbers only; -nn (default)")
    lp.add_argument("-x", dest="hex", action="count", help="hex dump: -x, -xxx, -xxxx")
    lp.add_argument("--dump", metavar="FILE", help="write an lspci -xxx dump (-xxxx with -xxxx)")
    lp.set_defaults(func=_cmd_lspci)

    r = sub.add_parser("run", help="run a guest under KVM on the pc machine's devices")
    r.add_argument(
        "--bios",
        metavar="FILE",
        help="firmware image mapped below 4 GiB (default: the bundled tour guest)",
    )
    r.add_argument(
        "--kernel", metavar="FILE", help="boot a Multiboot (v1) kernel, ELF or a.out kludge"
    )
    r.add_argument("--append", metavar="STRING", help="the kernel's command line (with --kernel)")
    r.add_argument(
        "--initrd",
        metavar="FILE",
        help="Multiboot modules (with --kernel): FILE[ ARGS][,FILE...], module 0 first",
    )
    r.add_argument(
        "-m", "--memory", metavar="MB", type=int, default=128, help="guest RAM in MiB (default 128)"
    )
    r.add_argument(
        "--serial",
        metavar="SPEC",
        default="stdio",
        help="COM1 backend: stdio, file:PATH or none (default stdio)",
    )
    r.add_argument(
        "--debugcon", metavar="SPEC", help="debug console on port 0x402: stdio or file:PATH"
    )
    r.add_argument(
        "--trace", metavar="FILE", help="record every port and MMIO access as qtest commands"
    )
    r.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        help="end the run after this much host time (exit status 124)",
    )
    r.add_argument(
        "--no-reboot",
        action="store_true",
        help="exit with status 0 when the guest resets instead of rebooting",
    )
    r.add_argument("--smp", metavar="N", type=int, default=1, help="number of vCPUs")
    r.add_argument(
        "--kvm-device",
        metavar="PATH",
        help="KVM device node (default $SOUTHBRIDGE_KVM_DEVICE or /dev/kvm)",
    )
    r.add_argument(
        "--config",
        metavar="FILE",
        help="run the domains of a hypervisor configuration (TOML) in one process",
    )
    r.add_argument(
        "--hide",
        action="append",
        metavar="SPEC",
        help="hide host PCI devices from the privileged domain: hide=02:01.0 or "
        "(02:01.0)(0000:03:00.1); repeatable",
    )
    r.set_defaults(func=_cmd_run)

    d = sub.add_parser("demo", help="replay the bundled sample trace and show the answers")
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="southbridge: %(levelname)s: %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except UserError as e:
        print(f"southbridge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
