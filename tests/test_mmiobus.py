"""MMIO bus: 64-bit ranges, binary search, 1/2/4/8-byte accesses, all-ones when unassigned."""

from __future__ import annotations

import pytest

from southbridge.core.device import BusError
from southbridge.core.memory import AddressSpace, GuestMemory
from southbridge.core.mmiobus import MmioBus
from tests.conftest import Reg


def test_unassigned_reads_all_ones_at_every_size() -> None:
    bus = MmioBus()
    for size, ones in ((1, 0xFF), (2, 0xFFFF), (4, 0xFFFFFFFF), (8, (1 << 64) - 1)):
        assert bus.read(0xFEE00000, size) == ones
    bus.write(0xFEE00000, 8, 0)
    assert bus.unhandled_reads == 4 and bus.unhandled_writes == 1


def test_regions_found_by_binary_search_with_offsets() -> None:
    bus = MmioBus()
    regs = [Reg(0x100, frozenset({1, 2, 4, 8}), f"r{i}") for i in range(50)]
    for i, r in enumerate(regs):
        bus.register(0x1_0000_0000 + i * 0x1000, 0x100, r)
    bus.write(0x1_0000_0000 + 37 * 0x1000 + 0x10, 8, 0x1122334455667788)
    assert regs[37].accesses == [("w", 0x10, 8, 0x1122334455667788)]
    assert bus.read(0x1_0000_0000 + 37 * 0x1000 + 0x14, 4) == 0x11223344
    assert bus.read(0x1_0000_0000 + 37 * 0x1000 + 0x100, 4) == 0xFFFFFFFF  # just past the end


def test_mmio_overlap_and_range_errors() -> None:
    bus = MmioBus()
    bus.register(0xFEC00000, 0x1000, Reg(0x1000, name="ioapic"))
    with pytest.raises(BusError, match="overlaps ioapic"):
        bus.register(0xFEC00800, 0x1000, Reg(0x1000))
    with pytest.raises(BusError, match="overlaps ioapic"):
        bus.register(0xFEBFF000, 0x1001, Reg(0x1001))
    with pytest.raises(BusError):
        bus.register((1 << 64) - 0x10, 0x20, Reg(0x20))
    bus.register(0xFEBFF000, 0x1000, Reg(0x1000))
    assert bus.overlaps(0xFEC00FFF, 1) is not None and bus.overlaps(0xFEC01000, 1) is None


def test_qword_to_dword_device_split_and_byte_widened() -> None:
    bus = MmioBus()
    dev = Reg(0x10, frozenset({4}))
    bus.register(0xFEE00000, 0x10, dev)
    bus.write(0xFEE00000, 8, 0xAAAAAAAA_BBBBBBBB)
    assert dev.accesses == [("w", 0, 4, 0xBBBBBBBB), ("w", 4, 4, 0xAAAAAAAA)]
    assert bus.read(0xFEE00005, 1) == 0xAA


def test_unregister() -> None:
    bus = MmioBus()
    bus.register(0x1000, 0x10, Reg(0x10))
    bus.unregister(0x1000)
    assert bus.read(0x1000, 4) == 0xFFFFFFFF
    with pytest.raises(BusError):
        bus.unregister(0x1000)


def test_address_space_reads_ram_then_mmio_then_all_ones() -> None:
    mem = GuestMemory()
    mem.add(0, 0x10000, "ram")
    bus = MmioBus()
    dev = Reg(0x10, frozenset({1, 2, 4, 8}))
    bus.register(0x20000, 0x10, dev)
    space = AddressSpace(mem, bus)
    space.write(0xFFFC, 8, 0x0102030405060708)  # crosses RAM end into unassigned
    assert space.read(0xFFFC, 4) == 0x05060708
    assert space.read(0x10000, 4) == 0xFFFFFFFF
    space.write_bytes(0x20000, bytes(range(16)))
    assert dev.data == bytes(range(16))
    assert space.read_bytes(0x1FFFE, 4) == b"\xff\xff\x00\x01"


def test_memory_regions_must_not_overlap_and_be_page_aligned() -> None:
    mem = GuestMemory()
    mem.add(0, 0xA0000, "low")
    with pytest.raises(ValueError):
        mem.add(0x9F000, 0x2000, "x")
    with pytest.raises(ValueError):
        mem.add(0x100001, 0x1000, "y")
    rom = mem.add(0xFFFC0000, 0x40000, "bios", readonly=True)
    space = AddressSpace(mem, MmioBus())
    space.write(0xFFFFFFF0, 4, 0x12345678)  # ROM ignores writes
    assert space.read(0xFFFFFFF0, 4) == 0 and rom.readonly
