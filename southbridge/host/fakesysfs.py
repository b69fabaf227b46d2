"""A fake sysfs PCI tree, so host probing and assignment are tested without real hardware.

Devices are described declaratively (address, IDs, class, BARs, bridge bus numbers); the tree
matches what Linux writes: /sys/devices/pci0000:00/<bridge>/<dev> directories with config,
resource, irq files and /sys/bus/pci/devices/<addr> symlinks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from southbridge.host.inventory import (
    IORESOURCE_IO,
    IORESOURCE_MEM,
    IORESOURCE_MEM_64,
    IORESOURCE_PREFETCH,
)
from southbridge.host.pciaddr import PciAddress


@dataclass
class FakeBar:
    kind: str  # "io" | "mem32" | "mem64"
    start: int
    size: int
    prefetch: bool = False


@dataclass
class FakeDevice:
    addr: str
    vendor: int
    device: int
    class_code: int  # 24-bit
    bars: dict[int, FakeBar] = field(default_factory=dict)
    irq: int = 0
    revision: int = 0
    multifunction: bool = False
    bridge: tuple[int, int] | None = None  # (secondary, subordinate) for a PCI-PCI bridge
    driver: str | None = None
    pin: int = 1  # INTA

    def config(self) -> bytes:
        c = bytearray(256)
        c[0:2] = self.vendor.to_bytes(2, "little")
        c[2:4] = self.device.to_bytes(2, "little")
        c[4:6] = (0x0007).to_bytes(2, "little")  # I/O, memory, bus master on, as firmware left it
        c[8] = self.revision
        c[9:12] = self.class_code.to_bytes(3, "little")
        header = 1 if self.bridge else 0
        c[0x0E] = header | (0x80 if self.multifunction else 0)
        for i, bar in self.bars.items():
            off = 0x10 + 4 * i
            if bar.kind == "io":
                c[off : off + 4] = (bar.start | 1).to_bytes(4, "little")
            elif bar.kind == "mem32":
                low = bar.start | (8 if bar.prefetch else 0)
                c[off : off + 4] = low.to_bytes(4, "little")
            else:
                low = (bar.start & 0xFFFFFFF0) | 4 | (8 if bar.prefetch else 0)
                c[off : off + 4] = low.to_bytes(4, "little")
                c[off + 4 : off + 8] = (bar.start >> 32).to_bytes(4, "little")
        if self.bridge:
            c[0x18], c[0x19], c[0x1A] = PciAddress.parse(self.addr).bus, *self.bridge
        else:
            c[0x2C:0x2E] = self.vendor.to_bytes(2, "little")
            c[0x3C] = self.irq & 0xFF
            c[0x3D] = self.pin
        return bytes(c)

    def resource_text(self) -> str:
        lines = []
        for i in range(13):
            bar = self.bars.get(i)
            if bar is None:
                lines.append(f"0x{0:016x} 0x{0:016x} 0x{0:016x}")
                continue
            flags = IORESOURCE_IO if bar.kind == "io" else IORESOURCE_MEM
            if bar.kind == "mem64":
                flags |= IORESOURCE_MEM_64
            if bar.prefetch:
                flags |= IORESOURCE_PREFETCH
            end = bar.start + bar.size - 1
            lines.append(f"0x{bar.start:016x} 0x{end:016x} 0x{flags:016x}")
        return "\n".join(lines) + "\n"


def build_fake_sysfs(root: str | os.PathLike[str], devices: list[FakeDevice]) -> Path:
    """Write a sysfs tree for `devices` under ROOT; returns ROOT (pass it as the sysfs root)."""
    root = Path(root)
    by_addr = {PciAddress.parse(d.addr): d for d in devices}
    bus_dir = root / "bus" / "pci" / "devices"
    bus_dir.mkdir(parents=True, exist_ok=True)

    def parent_of(addr: PciAddress) -> PciAddress | None:
        # The bridge with the narrowest bus range that contains the bus: the nearest one.
        best: tuple[int, PciAddress] | None = None
        for a, d in by_addr.items():
            if d.bridge and a.domain == addr.domain and d.bridge[0] <= addr.bus <= d.bridge[1]:
                width = d.bridge[1] - d.bridge[0]
                if best is None or width < best[0]:
                    best = (width, a)
        return best[1] if best else None

    def path_of(addr: PciAddress) -> Path:
        chain = [addr]
        p = parent_of(addr)
        while p is not None and p not in chain:
            chain.append(p)
            p = parent_of(p)
        base = root / "devices" / f"pci{addr.domain:04x}:{chain[-1].bus:02x}"
        for a in reversed(chain):
            base = base / str(a)
        return base

    for addr, dev in sorted(by_addr.items()):
        d = path_of(addr)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config").write_bytes(dev.config())
        (d / "resource").write_text(dev.resource_text())
        (d / "irq").write_text(f"{dev.irq}\n")
        (d / "vendor").write_text(f"0x{dev.vendor:04x}\n")
        (d / "device").write_text(f"0x{dev.device:04x}\n")
        (d / "class").write_text(f"0x{dev.class_code:06x}\n")
        if dev.driver:
            drv = root / "bus" / "pci" / "drivers" / dev.driver
            drv.mkdir(parents=True, exist_ok=True)
            link = d / "driver"
            if not link.exists():
                link.symlink_to(os.path.relpath(drv, d))
        link = bus_dir / str(addr)
        if not link.exists():
            link.symlink_to(os.path.relpath(d, bus_dir))
    return root
