"""BARs: sizing of every type, and the port/MMIO bus following moves and decode toggles.

PCI 3.0, 6.2.5.1: software sizes a BAR by writing all-ones and reading back; the read-only
low bits give the type (I/O bit 0; memory type bits 2:1, prefetchable bit 3), the zero bits
above them the size. A 64-bit BAR takes two registers. The expansion ROM BAR (6.2.5.2) has
its enable in bit 0 and decodes only while both it and the command memory bit are set.
"""

from __future__ import annotations

import logging

import pytest

from southbridge.core.device import BusDevice
from southbridge.core.memory import AddressSpace, GuestMemory
from southbridge.core.mmiobus import MmioBus
from southbridge.core.portbus import PortBus
from southbridge.pci.bar import Bar, BarKind, RomBar
from southbridge.pci.bridge import PciBridge
from southbridge.pci.bus import PciRoot
from southbridge.pci.config import CMD_IO, CMD_MEMORY
from southbridge.pci.demo import DemoDevice
from southbridge.pci.function import PciFunction


class Regs(BusDevice):
    io_sizes = frozenset({1, 2, 4, 8})

    def __init__(self, tag: int) -> None:
        self.tag = tag

    def read(self, offset: int, size: int) -> int:
        return self.tag


def make_root() -> PciRoot:
    mmio = MmioBus()
    return PciRoot(PortBus(), mmio, AddressSpace(GuestMemory(), mmio))


def fn_with(*bars: tuple[int, Bar], rom: RomBar | None = None) -> PciFunction:
    fn = PciFunction(0x5342, 0x00F0, 0xFF0000, name="t")
    for index, bar in bars:
        fn.add_bar(index, bar)
    if rom is not None:
        fn.add_rom(rom)
    return fn


@pytest.mark.parametrize(
    ("kind", "pref", "size", "readback"),
    [
        (BarKind.IO, False, 0x40, 0xFFFFFFC1),
        (BarKind.MEM32, False, 0x1000, 0xFFFFF000),
        (BarKind.MEM32, True, 0x100000, 0xFFF00008),
    ],
)
def test_sizing_32bit_bars(kind: BarKind, pref: bool, size: int, readback: int) -> None:
    fn = fn_with((0, Bar(kind, size, Regs(1), prefetchable=pref)))
    fn.config_write(0x10, 4, 0xFFFFFFFF)
    assert fn.config_read(0x10, 4) == readback
    # Size = ~(readback & ~type bits) + 1.
    low = 0x3 if kind is BarKind.IO else 0xF
    assert (~(readback & ~low) + 1) & 0xFFFFFFFF == size


def test_sizing_64bit_bar_uses_both_registers() -> None:
    fn = fn_with((2, Bar(BarKind.MEM64, 1 << 33, Regs(1), prefetchable=True)))
    fn.config_write(0x18, 4, 0xFFFFFFFF)
    fn.config_write(0x1C, 4, 0xFFFFFFFF)
    assert fn.config_read(0x18, 4) == 0x0000000C  # 64-bit prefetchable, size > 4 GiB
    assert fn.config_read(0x1C, 4) == 0xFFFFFFFE
    size = ((fn.config_read(0x1C, 4) << 32 | fn.config_read(0x18, 4) & ~0xF) ^ (2**64 - 1)) + 1
    assert size == 1 << 33


def test_sizing_probe_that_keeps_type_bits() -> None:
    """Firmware that writes ~0 with the type bits it read (e.g. 0xFFFFFFF1 for I/O) sees the
    same answer as with all-ones."""
    fn = fn_with((0, Bar(BarKind.IO, 0x20, Regs(1))), (1, Bar(BarKind.MEM32, 0x2000, Regs(2))))
    fn.config_write(0x10, 4, 0xFFFFFFFD)
    fn.config_write(0x14, 4, 0xFFFFFFF0)
    assert fn.config_read(0x10, 4) == 0xFFFFFFE1
    assert fn.config_read(0x14, 4) == 0xFFFFE000


def test_rom_bar_sizing_and_enable() -> None:
    fn = fn_with(rom=RomBar(0x8000, Regs(7)))
    fn.config_write(0x30, 4, 0xFFFFFFFF)
    assert fn.config_read(0x30, 4) == 0xFFFF8001  # address bits 31:15 and enable
    fn.config_write(0x30, 4, 0xFFFFF7FE)
    assert fn.config_read(0x30, 4) == 0xFFFF8000


def test_unused_bars_read_zero_and_ignore_writes() -> None:
    fn = fn_with((0, Bar(BarKind.MEM32, 0x1000, Regs(1))))
    for off in range(0x14, 0x28, 4):
        fn.config_write(off, 4, 0xFFFFFFFF)
        assert fn.config_read(off, 4) == 0


def test_bar_mapped_only_while_decode_enabled_and_follows_moves() -> None:
    root = make_root()
    fn = fn_with(
        (0, Bar(BarKind.MEM32, 0x1000, Regs(0x11))), (1, Bar(BarKind.IO, 0x10, Regs(0x22)))
    )
    root.add(fn, 3)
    fn.config_write(0x10, 4, 0xFE000000)
    fn.config_write(0x14, 4, 0xC000)
    assert root.mmio.read(0xFE000000, 4) == 0xFFFFFFFF  # memory decode off
    assert root.ports.read(0xC000, 1) == 0xFF
    fn.config_write(0x04, 2, CMD_MEMORY)
    assert root.mmio.read(0xFE000000, 4) == 0x11
    assert root.ports.read(0xC000, 1) == 0xFF  # I/O decode still off
    fn.config_write(0x04, 2, CMD_MEMORY | CMD_IO)
    assert root.ports.read(0xC00F, 1) == 0x22
    # Moving the BAR moves the region.
    fn.config_write(0x10, 4, 0xFE100000)
    assert root.mmio.read(0xFE000000, 4) == 0xFFFFFFFF
    assert root.mmio.read(0xFE100FFC, 4) == 0x11
    # A byte write to one byte of the BAR moves it too.
    fn.config_write(0x12, 1, 0x20)
    assert root.mmio.read(0xFE200000, 4) == 0x11
    fn.config_write(0x04, 2, 0)
    assert root.mmio.read(0xFE200000, 4) == 0xFFFFFFFF
    assert root.ports.read(0xC000, 1) == 0xFF
    assert root.mapped() == {}


def test_sizing_with_decode_on_never_maps_io_past_64k() -> None:
    root = make_root()
    fn = fn_with((0, Bar(BarKind.IO, 0x10, Regs(1))))
    root.add(fn, 3)
    fn.config_write(0x04, 2, CMD_IO)
    fn.config_write(0x10, 4, 0xFFFFFFFF)  # address 0xFFFFFFF0: beyond the port space
    assert root.mapped() == {}
    fn.config_write(0x10, 4, 0)  # 0 = unassigned
    assert root.mapped() == {}
    fn.config_write(0x10, 4, 0xFFF0)
    assert root.ports.read(0xFFF0, 1) == 1


def test_64bit_bar_maps_above_4g() -> None:
    root = make_root()
    fn = fn_with((0, Bar(BarKind.MEM64, 0x4000, Regs(0x64))))
    root.add(fn, 3)
    fn.config_write(0x10, 4, 0x00004000)
    fn.config_write(0x14, 4, 0x00000010)
    fn.config_write(0x04, 2, CMD_MEMORY)
    assert root.mmio.read(0x10_0000_4000, 8) == 0x64
    fn.config_write(0x14, 4, 0)  # high half cleared: now below 4 GiB
    assert root.mmio.read(0x10_0000_4000, 8) == 2**64 - 1
    assert root.mmio.read(0x4000, 4) == 0x64


def test_rom_decodes_with_enable_and_memory_bit() -> None:
    root = make_root()
    fn = fn_with(rom=RomBar(0x800, Regs(0x0E)))
    root.add(fn, 3)
    fn.config_write(0x30, 4, 0xFEB00000)
    fn.config_write(0x04, 2, CMD_MEMORY)
    assert root.mmio.read(0xFEB00000, 4) == 0xFFFFFFFF  # enable bit clear
    fn.config_write(0x30, 4, 0xFEB00001)
    assert root.mmio.read(0xFEB00000, 4) == 0x0E


def test_overlapping_bars_newest_wins_then_older_returns(caplog: pytest.LogCaptureFixture) -> None:
    """Two BARs programmed onto one address: the later mapping shadows the earlier one
    (logged), and the earlier comes back once the later moves away."""
    root = make_root()
    a = fn_with((0, Bar(BarKind.MEM32, 0x1000, Regs(0xA))))
    b = fn_with((0, Bar(BarKind.MEM32, 0x2000, Regs(0xB))))
    root.add(a, 3)
    root.add(b, 4)
    for fn in (a, b):
        fn.config_write(0x04, 2, CMD_MEMORY)
    a.config_write(0x10, 4, 0xFE000000)
    with caplog.at_level(logging.WARNING, "southbridge.pci"):
        b.config_write(0x10, 4, 0xFE000000)
    assert root.mmio.read(0xFE000000, 4) == 0xB
    assert "overlap" in caplog.text
    b.config_write(0x10, 4, 0xFE800000)
    assert root.mmio.read(0xFE000000, 4) == 0xA
    assert root.mmio.read(0xFE800000, 4) == 0xB


def test_bar_over_a_platform_device_stays_undecoded(caplog: pytest.LogCaptureFixture) -> None:
    root = make_root()
    root.ports.register(0xCF8, 8, Regs(0xCF), "platform")
    fn = fn_with((0, Bar(BarKind.IO, 0x10, Regs(0x10))))
    root.add(fn, 3)
    fn.config_write(0x04, 2, CMD_IO)
    with caplog.at_level(logging.WARNING, "southbridge.pci"):
        fn.config_write(0x10, 4, 0xCF0)
    assert root.ports.read(0xCF8, 1) == 0xCF  # the platform device keeps its ports
    assert root.ports.read(0xCF0, 1) == 0xFF
    assert "undecoded" in caplog.text
    fn.config_write(0x10, 4, 0xD00)
    assert root.ports.read(0xD00, 1) == 0x10


def test_bar_behind_bridge_decodes_only_inside_window() -> None:
    """PCI-to-PCI Bridge 1.2, 4.2-4.3: memory and I/O pass downstream only inside the
    windows, and only while the bridge's command decode bits are set."""
    root = make_root()
    br = PciBridge()
    root.add(br, 5)
    br.config_write(0x18, 4, 0x010100)
    dev = fn_with((0, Bar(BarKind.MEM32, 0x1000, Regs(0x77))), (1, Bar(BarKind.IO, 0x10, Regs(1))))
    br.add(dev, 0)
    dev.config_write(0x10, 4, 0xFE100000)
    dev.config_write(0x14, 4, 0x2000)
    dev.config_write(0x04, 2, CMD_MEMORY | CMD_IO)
    assert root.mmio.read(0xFE100000, 4) == 0xFFFFFFFF  # window closed
    br.config_write(0x20, 4, 0xFE10FE10)  # memory window 0xFE100000-0xFE1FFFFF
    br.config_write(0x1C, 2, 0x2020)  # I/O window 0x2000-0x2FFF
    assert root.mmio.read(0xFE100000, 4) == 0xFFFFFFFF  # bridge decode off
    br.config_write(0x04, 2, CMD_MEMORY | CMD_IO)
    assert root.mmio.read(0xFE100000, 4) == 0x77
    assert root.ports.read(0x2000, 1) == 1
    dev.config_write(0x10, 4, 0xFE200000)  # outside the window
    assert root.mmio.read(0xFE200000, 4) == 0xFFFFFFFF
    br.config_write(0x22, 2, 0xFE20)  # widen the limit to 0xFE2FFFFF
    assert root.mmio.read(0xFE200000, 4) == 0x77
    dev.config_write(0x10, 4, 0xFE100000)
    br.config_write(0x24, 4, 0xFE10FE10)  # prefetchable window also forwards memory
    br.config_write(0x20, 4, 0x0000FFF0)  # memory window empty (limit < base)
    assert root.mmio.read(0xFE100000, 4) == 0x77


def test_demo_bars_sizes_as_documented() -> None:
    fn = DemoDevice()
    expect = {
        0x10: 0xFFFFF000,
        0x14: 0xFFFFFFC1,
        0x18: 0xFFFFF004,
        0x1C: 0xFFFFFFFF,
        0x20: 0xFFFF000C,
        0x24: 0xFFFFFFFF,
        0x30: 0xFFFFF801,
    }
    for off in expect:
        fn.config_write(off, 4, 0xFFFFFFFF)
    assert {off: fn.config_read(off, 4) for off in expect} == expect


def test_bar_definitions_validated() -> None:
    with pytest.raises(ValueError):
        Bar(BarKind.MEM32, 0x1800, Regs(0))
    with pytest.raises(ValueError):
        Bar(BarKind.IO, 0x10, Regs(0), prefetchable=True)
    with pytest.raises(ValueError):
        RomBar(0x400, Regs(0))
    fn = fn_with((5, Bar(BarKind.MEM32, 0x1000, Regs(0))))
    with pytest.raises(ValueError):
        fn.add_bar(5, Bar(BarKind.MEM64, 0x1000, Regs(0)))
