"""The run command's virtio options in QEMU's words: --drive, --device, --boot.

  --drive file=PATH[,if=virtio|ide][,format=raw][,readonly=on][,index=N][,media=cdrom]
                                                               repeatable, a disk each
  --cdrom PATH                                                 the secondary IDE master
  --netdev user[,mac=52:54:00:12:34:56]                       virtio-net through passt
  --device virtio-rng-pci                                      entropy from os.urandom
  --device virtio-serial[,chardev=SPEC]                        one console port (SPEC as
                                                               --serial; default none)
  --boot order=c|d|n                                           c: the disks first, d: the
                                                               CD-ROM (fw_cfg bootorder,
                                                               read by SeaBIOS)
Options are checked when parsed (`check`); images and backends open per machine build
(`open_setup`), each failure one UserError line.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from southbridge.errors import UserError
from southbridge.host.drive import (
    IDE_INDEXES,
    DriveError,
    DriveSpec,
    cdrom_drive,
    parse_drive,
    split_options,
)
from southbridge.machine.ide import IdeSetup, IdeUnit
from southbridge.machine.virtio import VirtioSetup

DEVICES = ("virtio-rng-pci", "virtio-serial")


def add_options(r: argparse.ArgumentParser) -> None:
    r.add_argument(
        "--drive",
        action="append",
        default=[],
        metavar="SPEC",
        help="disk image: file=PATH[,if=virtio|ide][,format=raw][,readonly=on][,index=N]"
        "[,media=cdrom]; repeatable",
    )
    r.add_argument("--cdrom", metavar="PATH", help="ISO image on the secondary IDE master")
    r.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="NAME",
        help="add a device: virtio-rng-pci, virtio-serial[,chardev=SPEC]",
    )
    r.add_argument(
        "--netdev",
        action="append",
        default=[],
        metavar="SPEC",
        help="virtio-net card: user[,mac=XX:XX:XX:XX:XX:XX] (passt) or "
        "tap,ifname=NAME[,mac=...] (a host tap interface, root); repeatable",
    )
    r.add_argument(
        "--boot", metavar="order=c|d|n", help="boot order: c (disk), d (CD-ROM) or n (network)"
    )


@dataclass(frozen=True)
class VirtioOptions:
    drives: tuple[DriveSpec, ...]
    nets: tuple[tuple[str | None, bytes], ...]  # per card: tap ifname (None: passt), MAC
    rng: bool
    console: str | None  # chardev spec
    boot_order: str | None
    ide: tuple[tuple[int, DriveSpec], ...] = ()  # (index, drive) on the PIIX3 IDE function


def check(args: argparse.Namespace) -> VirtioOptions:
    drives: list[DriveSpec] = []
    ide_specs: list[tuple[str, DriveSpec]] = []
    for text in args.drive:
        try:
            spec = parse_drive(text)
        except DriveError as e:
            raise UserError(f"--drive {text}: {e}") from None
        if spec.interface == "ide":
            ide_specs.append((f"--drive {text}", spec))
        else:
            drives.append(spec)
    cdrom = getattr(args, "cdrom", None)
    if cdrom is not None:
        ide_specs.append((f"--cdrom {cdrom}", cdrom_drive(cdrom)))
    ide = _ide_indexes(ide_specs)
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
    nets: list[tuple[str | None, bytes]] = []
    for text in args.netdev:
        kind, _, rest = text.partition(",")
        if kind not in ("user", "tap"):
            raise UserError(f"--netdev {kind}: unknown (known: user, tap)")
        keys = ("mac",) if kind == "user" else ("mac", "ifname")
        opts = _options(f"--netdev {text}", rest, keys)
        ifname = None
        if kind == "tap":
            ifname = opts.get("ifname")
            if not ifname:
                raise UserError(f"--netdev {text}: tap needs ifname=NAME")
            if any(name == ifname for name, _ in nets):
                raise UserError(f"--netdev {text}: tap {ifname} is given twice")
        mac = _mac(text, opts["mac"]) if "mac" in opts else bytes.fromhex("525400123456")
        if "mac" not in opts:
            mac = mac[:5] + bytes([mac[5] + len(nets)])  # QEMU's default, one per card
        nets.append((ifname, mac))
    order = None
    if args.boot is not None:
        opts = _options(f"--boot {args.boot}", args.boot, ("order",))
        order = opts.get("order")
        if order not in ("c", "d", "n"):
            raise UserError(f"--boot {args.boot}: expected order=d (CD-ROM), order=c or order=n")
        if order == "n" and not nets:
            raise UserError("--boot order=n: no --netdev to boot from")
        if order == "c" and not drives and not any(s.media == "disk" for _, s in ide):
            raise UserError("--boot order=c: no --drive to boot from")
        if order == "d" and not any(s.media == "cdrom" for _, s in ide):
            raise UserError("--boot order=d: no CD-ROM (--cdrom PATH or media=cdrom)")
    return VirtioOptions(tuple(drives), tuple(nets), rng, console, order, tuple(ide))


def _ide_indexes(specs: list[tuple[str, DriveSpec]]) -> list[tuple[int, DriveSpec]]:
    """QEMU's rule: a drive with index= takes it, the others the free ones in order."""
    taken: dict[int, str] = {}
    for what, spec in specs:
        if spec.index is not None:
            if spec.index in taken:
                raise UserError(f"{what}: IDE index {spec.index} is taken by {taken[spec.index]}")
            taken[spec.index] = what
    out = [(spec.index, spec) for _, spec in specs if spec.index is not None]
    free = (i for i in range(IDE_INDEXES) if i not in taken)
    for what, spec in specs:
        if spec.index is None:
            index = next(free, None)
            if index is None:
                raise UserError(f"{what}: all {IDE_INDEXES} IDE places are taken")
            out.append((index, spec))
    return sorted(out, key=lambda x: x[0])


def _mac(text: str, value: str) -> bytes:
    parts = value.split(":")
    try:
        if len(parts) != 6 or any(len(p) != 2 for p in parts):
            raise ValueError
        mac = bytes(int(p, 16) for p in parts)
    except ValueError:
        raise UserError(f"--netdev {text}: mac={value}: expected XX:XX:XX:XX:XX:XX") from None
    if mac[0] & 1:
        raise UserError(f"--netdev {text}: mac={value} is a multicast address")
    return mac


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
    from southbridge.host.net import start_passt
    from southbridge.host.tap import TapBackend, open_tap
    from southbridge.virtio.net import NetBackend

    images: list[RawImage] = []
    units: list[IdeUnit] = []
    nets: list[tuple[NetBackend, bytes]] = []
    console = None
    try:
        for spec in opts.drives:
            images.append(spec.open())
        for index, spec in opts.ide:
            img = spec.open()
            images.append(img)
            cd = spec.media == "cdrom"
            if img.size < (2048 if cd else 512):
                raise ImageError(f"{spec.file}: too small for an IDE {'CD-ROM' if cd else 'disk'}")
            units.append(IdeUnit(index, img, cdrom=cd, serial=spec.serial))
        for ifname, mac in opts.nets:
            if ifname is None:
                nets.append((start_passt(), mac))
            else:
                nets.append((TapBackend(open_tap(ifname)), mac))
        if opts.console is not None:
            console = make_backend(opts.console)
    except (ImageError, ValueError) as e:
        for img in images:
            img.close()
        for be, _ in nets:
            be.close()
        raise UserError(str(e)) from None
    ide_boot = opts.boot_order if units and opts.boot_order in ("c", "d") else None
    net_rom = _ipxe_rom() if opts.nets else None
    return VirtioSetup(
        drives=images[: len(opts.drives)],
        nets=nets,
        executor=ThreadExecutor if threads else None,
        rng=UrandomSource() if opts.rng else None,
        console=console,
        boot_order=None if ide_boot else opts.boot_order,  # the IDE side writes the file
        net_rom=net_rom,
        ide=IdeSetup(units, ThreadExecutor if threads else None, ide_boot),
    )


# iPXE for virtio-net: set-up fetches Debian's ipxe-qemu into .cache/ipxe; the system's copy
# serves too. Without it SeaBIOS simply has no network boot, as QEMU without its ROM.
IPXE_ROM = "pxe-virtio.rom"
IPXE_DIRS = (
    Path(__file__).resolve().parents[2] / ".cache" / "ipxe",
    Path("/usr/lib/ipxe/qemu"),
)


def _ipxe_rom() -> bytes | None:
    from southbridge.host.userfile import InputFileError, find_in, read_bytes

    found = find_in(IPXE_ROM, IPXE_DIRS)
    if found is None:
        return None
    try:
        return read_bytes(str(found), "iPXE ROM", 1 << 20)
    except InputFileError:
        return None


def close_setup(setup: VirtioSetup) -> None:
    """Close what `open_setup` opened when the machine never took it over."""
    for d in [*setup.drives, *(u.backend for u in setup.ide.units)]:
        closer = getattr(d, "close", None)
        if callable(closer):
            closer()
    for be, _ in setup.nets:
        be.close()
    if setup.console is not None:
        setup.console.close()
