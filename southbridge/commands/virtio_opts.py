"""The run command's virtio options in QEMU's words: --drive, --device, --boot.

  --drive file=PATH[,if=virtio][,format=raw][,readonly=on]   repeatable, a disk each
  --device virtio-rng-pci                                      entropy from os.urandom
  --device virtio-serial[,chardev=SPEC]                        one console port (SPEC as
                                                               --serial; default none)
  --boot order=c|n                                             c: the disks first (fw_cfg
                                                               bootorder, read by SeaBIOS)
Options are checked when parsed (`check`); images and backends open per machine build
(`open_setup`), each failure one UserError line.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from southbridge.errors import UserError
from southbridge.host.drive import DriveError, DriveSpec, parse_drive, split_options
from southbridge.machine.virtio import VirtioSetup

DEVICES = ("virtio-rng-pci", "virtio-serial")


def add_options(r: argparse.ArgumentParser) -> None:
    r.add_argument(
        "--drive",
        action="append",
        default=[],
        metavar="SPEC",
        help="disk image: file=PATH[,if=virtio][,format=raw][,readonly=on]; repeatable",
    )
    r.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="NAME",
        help="add a device: virtio-rng-pci, virtio-serial[,chardev=SPEC]",
    )
    r.add_argument("--boot", metavar="order=c|n", help="boot order: c (disk) or n (network)")


@dataclass(frozen=True)
class VirtioOptions:
    drives: tuple[DriveSpec, ...]
    rng: bool
    console: str | None  # chardev spec
    boot_order: str | None


def check(args: argparse.Namespace) -> VirtioOptions:
    drives: list[DriveSpec] = []
    for text in args.drive:
        try:
            spec = parse_drive(text)
        except DriveError as e:
            raise UserError(f"--drive {text}: {e}") from None
        if spec.interface != "virtio":
            raise UserError(f"--drive {text}: if={spec.interface} is not wired to the pc yet")
        drives.append(spec)
    rng, console = False, None
    for text in args.device:
        name, _, rest = text.partition(",")
        if name not in DEVICES:
            raise UserError(f"--device {name}: unknown (known: {', '.join(DEVICES)})")
        opts = _options(text, rest, ("chardev",) if name == "virtio-serial" else ())
        if name == "virtio-rng-pci":
            if rng:
                raise UserError("--device virtio-rng-pci given twice")
            rng = True
        else:
            if console is not None:
                raise UserError("--device virtio-serial given twice (one port is supported)")
            console = opts.get("chardev", "none")
    order = None
    if args.boot is not None:
        opts = _options(f"--boot {args.boot}", args.boot, ("order",))
        order = opts.get("order")
        if order not in ("c", "n"):
            raise UserError(f"--boot {args.boot}: expected order=c or order=n")
        if order == "n":
            raise UserError("--boot order=n: there is no network device to boot from yet")
        if not drives:
            raise UserError("--boot order=c: no --drive to boot from")
    return VirtioOptions(tuple(drives), rng, console, order)


def _options(what: str, text: str, known: tuple[str, ...]) -> dict[str, str]:
    if not text:
        return {}
    try:
        items = split_options(text)
    except DriveError as e:
        raise UserError(f"{what}: {e}") from None
    out: dict[str, str] = {}
    for key, value in items:
        if key not in known:
            raise UserError(f"{what}: unknown option '{key}'")
        out[key] = value
    return out


def open_setup(opts: VirtioOptions, threads: bool = True) -> VirtioSetup:
    """Open the images and backends; on a failure, close what was opened and raise.
    Without `threads` the disks complete inline (a CPU-less machine)."""
    from southbridge.host.block import ImageError, RawImage, ThreadExecutor
    from southbridge.host.chardev import make_backend
    from southbridge.host.entropy import UrandomSource

    images: list[RawImage] = []
    try:
        for spec in opts.drives:
            images.append(spec.open())
        console = None
        if opts.console is not None:
            console = make_backend(opts.console)
    except (ImageError, ValueError) as e:
        for img in images:
            img.close()
        raise UserError(str(e)) from None
    return VirtioSetup(
        drives=images,
        executor=ThreadExecutor if threads else None,
        rng=UrandomSource() if opts.rng else None,
        console=console,
        boot_order=opts.boot_order,
    )


def close_setup(setup: VirtioSetup) -> None:
    """Close what `open_setup` opened when the machine never took it over."""
    for d in setup.drives:
        closer = getattr(d, "close", None)
        if callable(closer):
            closer()
    if setup.console is not None:
        setup.console.close()
