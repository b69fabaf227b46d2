"""The host's PCI devices as data: read from sysfs (root configurable) or an lspci dump."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from southbridge.host.pciaddr import PciAddress, PciAddressError
from southbridge.host.userfile import InputFileError, read_text

# linux/ioport.h resource flags, as printed in sysfs `resource` files.
IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_MEM_64 = 0x100000


class InventoryError(ValueError):
    """The inventory source is unreadable or malformed (one-line message)."""


@dataclass(frozen=True)
class HostResource:
    """One line of a sysfs `resource` file: BAR 0-5, ROM (6) or bridge window (7+)."""

    index: int
    start: int
    end: int
    flags: int

    @property
    def size(self) -> int:
        return self.end - self.start + 1 if self.end >= self.start and self.end else 0

    @property
    def is_io(self) -> bool:
        return bool(self.flags & IORESOURCE_IO)

    @property
    def is_mem(self) -> bool:
        return bool(self.flags & IORESOURCE_MEM)

    @property
    def prefetchable(self) -> bool:
        return bool(self.flags & IORESOURCE_PREFETCH)

    @property
    def is_64bit(self) -> bool:
        return bool(self.flags & IORESOURCE_MEM_64)


@dataclass
class HostDevice:
    addr: PciAddress
    config: bytes
    resources: list[HostResource] = field(default_factory=list)
    irq: int = 0
    driver: str | None = None
    parent: PciAddress | None = None
    sysfs_path: Path | None = None

    def _u16(self, off: int) -> int:
        return (
            int.from_bytes(self.config[off : off + 2], "little")
            if len(self.config) > off + 1
            else 0xFFFF
        )

    @property
    def vendor(self) -> int:
        return self._u16(0)

    @property
    def device(self) -> int:
        return self._u16(2)

    @property
    def revision(self) -> int:
        return self.config[8] if len(self.config) > 8 else 0

    @property
    def class_code(self) -> int:
        """24-bit class: base class, subclass, programming interface."""
        if len(self.config) < 12:
            return 0
        return int.from_bytes(self.config[9:12], "little")

    @property
    def header_type(self) -> int:
        return self.config[0x0E] & 0x7F if len(self.config) > 0x0E else 0

    @property
    def is_bridge(self) -> bool:
        return self.header_type == 1

    @property
    def secondary_bus(self) -> int | None:
        return self.config[0x19] if self.is_bridge and len(self.config) > 0x1A else None

    @property
    def subordinate_bus(self) -> int | None:
        return self.config[0x1A] if self.is_bridge and len(self.config) > 0x1A else None

    def io_ranges(self) -> list[HostResource]:
        return [r for r in self.resources if r.index < 6 and r.is_io and r.size]

    def mem_ranges(self) -> list[HostResource]:
        return [r for r in self.resources if r.index < 6 and r.is_mem and r.size]


@dataclass
class HostInventory:
    devices: dict[PciAddress, HostDevice]
    source: str

    def __iter__(self) -> Iterator[HostDevice]:
        return iter(sorted(self.devices.values(), key=lambda d: d.addr))

    def __len__(self) -> int:
        return len(self.devices)

    def get(self, addr: PciAddress) -> HostDevice | None:
        return self.devices.get(addr)

    def bridges(self) -> list[HostDevice]:
        return [d for d in self if d.is_bridge]

    def on_bus(self, domain: int, bus: int) -> list[HostDevice]:
        return [d for d in self if d.addr.domain == domain and d.addr.bus == bus]


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _parse_resources(text: str | None) -> list[HostResource]:
    out: list[HostResource] = []
    if not text:
        return out
    for i, line in enumerate(text.splitlines()):
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            start, end, flags = (int(p, 16) for p in parts)
        except ValueError:
            continue
        out.append(HostResource(i, start, end, flags))
    return out


def probe_sysfs(sysfs: str | os.PathLike[str] = "/sys") -> HostInventory:
    """Read every PCI function under SYSFS/bus/pci/devices, read-only.

    The parent bridge comes from the device's real path (…/0000:00:1c.0/0000:02:00.0). Config
    space is whatever the kernel lets us read (64 bytes without root, 256/4096 with it).
    """
    base = Path(sysfs) / "bus" / "pci" / "devices"
    if not base.is_dir():
        raise InventoryError(f"no PCI devices directory at {base}")
    devices: dict[PciAddress, HostDevice] = {}
    for entry in sorted(base.iterdir()):
        try:
            addr = PciAddress.parse(entry.name)
        except PciAddressError:
            continue
        try:
            config = (entry / "config").read_bytes()
        except OSError:
            config = b""
        if len(config) < 16:
            continue  # nothing usable; a device we cannot identify is left out
        real = entry.resolve()
        parent = None
        with contextlib.suppress(PciAddressError):
            parent = PciAddress.parse(real.parent.name)
        irq_text = _read_text(entry / "irq")
        driver_link = entry / "driver"
        driver = os.path.basename(os.readlink(driver_link)) if driver_link.is_symlink() else None
        devices[addr] = HostDevice(
            addr=addr,
            config=config,
            resources=_parse_resources(_read_text(entry / "resource")),
            irq=int(irq_text) if irq_text and irq_text.isdigit() else 0,
            driver=driver,
            parent=parent,
            sysfs_path=entry,
        )
    return HostInventory(devices, f"sysfs:{sysfs}")


# lspci -xxxx of a full PCI domain (256 buses x 256 functions x ~14 KiB of hex) is about
# 900 MiB; real hosts have at most a few hundred functions. 64 MiB bounds the read.
MAX_DUMP_BYTES = 64 << 20
_DUMP_HEAD = re.compile(r"^(?P<addr>(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s")
_DUMP_ROW = re.compile(r"^(?P<off>[0-9a-fA-F]{2,3}):((?:\s[0-9a-fA-F]{2}){1,16})\s*$")


def parse_lspci_dump(text: str, source: str = "lspci dump") -> HostInventory:
    """Read `lspci -x`/`-xxx`/`-xxxx` output: a header line per function, then hex rows."""
    devices: dict[PciAddress, HostDevice] = {}
    current: PciAddress | None = None
    data = bytearray()

    def flush() -> None:
        if current is not None:
            if len(data) < 64:
                raise InventoryError(f"{source}: {current.short()} has {len(data)} config bytes")
            devices[current] = HostDevice(current, bytes(data))

    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        head = _DUMP_HEAD.match(line)
        if head:
            flush()
            current = PciAddress.parse(head["addr"])
            data = bytearray()
            continue
        row = _DUMP_ROW.match(line)
        if row and current is not None:
            off = int(row["off"], 16)
            if off != len(data):
                raise InventoryError(f"{source}:{lineno}: row at {off:#x}, expected {len(data):#x}")
            data += bytes(int(b, 16) for b in row.group(2).split())
            continue
        if line.startswith(("\t", " ")):
            continue  # -v detail lines are allowed in a dump and ignored
        raise InventoryError(f"{source}:{lineno}: not an lspci -x line: {line[:40]!r}")
    flush()
    # Bridges tell which bus each device hangs off: the nearest (narrowest) bus range wins.
    for dev in devices.values():
        best: tuple[int, PciAddress] | None = None
        for br in devices.values():
            sec, sub = br.secondary_bus, br.subordinate_bus
            if sec is None or sub is None or br.addr.domain != dev.addr.domain:
                continue
            if sec <= dev.addr.bus <= sub and (best is None or sub - sec < best[0]):
                best = (sub - sec, br.addr)
        dev.parent = best[1] if best else None
    return HostInventory(devices, source)


def load_lspci_dump(path: str | os.PathLike[str]) -> HostInventory:
    try:
        text = read_text(path, "lspci dump", MAX_DUMP_BYTES)
    except InputFileError as e:
        raise InventoryError(f"cannot read {os.fsdecode(path)}: {e.reason}") from None
    inventory = parse_lspci_dump(text, os.fsdecode(path))
    if not len(inventory):
        raise InventoryError(f"{os.fsdecode(path)}: no devices: not an lspci -x dump")
    return inventory
