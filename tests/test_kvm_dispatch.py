"""Decoding KVM_EXIT_IO and KVM_EXIT_MMIO from a kvm_run page into bus accesses
(southbridge.kvm.vcpu.dispatch_io / dispatch_mmio), without KVM: the page is a bytearray
laid out as linux/kvm.h says (the layout itself is checked in test_kvm_abi.py)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.device import BusDevice
from southbridge.kvm import abi
from southbridge.kvm.vcpu import dispatch_io, dispatch_mmio
from southbridge.machine.base import Machine
from tests.conftest import Reg

PAGE = 4096
EXIT = abi.kvm_run.exit.offset


def _io_page(direction: int, size: int, port: int, count: int, off: int, data: bytes) -> bytearray:
    page = bytearray(PAGE)
    struct.pack_into("<BBHIQ", page, EXIT, direction, size, port, count, off)
    page[off : off + len(data)] = data
    return page


def _mmio_page(addr: int, data: bytes, length: int, is_write: bool) -> bytearray:
    page = bytearray(PAGE)
    struct.pack_into("<Q8sIB", page, EXIT, addr, data.ljust(8, b"\0"), length, is_write)
    return page


class Fifo(BusDevice):
    """A byte port that records what it is written and answers reads from a counter."""

    io_sizes = frozenset({1, 2, 4})

    def __init__(self) -> None:
        self.written: list[tuple[int, int]] = []
        self.reads = 0

    def read(self, offset: int, size: int) -> int:
        self.reads += 1
        return (0x40 + self.reads) * 0x01010101 & ((1 << (8 * size)) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        self.written.append((size, value))


def test_rep_outsb_reaches_the_device_byte_by_byte_in_order() -> None:
    """String OUT with count > 1: `count` items of `size` bytes at data_offset (kvm.h)."""
    m = Machine()
    dev = Fifo()
    m.ports.register(0x700, 1, dev)
    dispatch_io(m, _io_page(abi.KVM_EXIT_IO_OUT, 1, 0x700, 5, 0x100, b"hello"))
    assert dev.written == [(1, c) for c in b"hello"]


def test_rep_insw_fills_count_items_and_nothing_else() -> None:
    m = Machine()
    dev = Fifo()
    m.ports.register(0x700, 2, dev)
    page = _io_page(abi.KVM_EXIT_IO_IN, 2, 0x700, 3, 0x200, b"")
    before = bytes(page)
    dispatch_io(m, page)
    assert page[0x200:0x206] == bytes.fromhex("4141 4242 4343".replace(" ", ""))
    assert page[:0x200] == before[:0x200] and page[0x206:] == before[0x206:]


def test_unassigned_port_reads_all_ones() -> None:
    """No device decodes the port: an ISA bus floats high, so IN reads all-ones."""
    m = Machine()
    page = _io_page(abi.KVM_EXIT_IO_IN, 4, 0x2F00, 1, 0x100, b"")
    dispatch_io(m, page)
    assert page[0x100:0x104] == b"\xff" * 4


def test_mmio_write_and_read_reach_the_device() -> None:
    m = Machine()
    reg = Reg(16, frozenset({1, 2, 4, 8}))
    m.mmio.register(0xFEB00000, 16, reg)
    dispatch_mmio(m, _mmio_page(0xFEB00004, (0xDEADBEEF).to_bytes(4, "little"), 4, True))
    page = _mmio_page(0xFEB00004, b"", 4, False)
    dispatch_mmio(m, page)
    assert page[EXIT + 8 : EXIT + 12] == (0xDEADBEEF).to_bytes(4, "little")
    assert reg.accesses == [("w", 4, 4, 0xDEADBEEF), ("r", 4, 4, 0xDEADBEEF)]


def test_mmio_write_to_rom_is_dropped() -> None:
    """KVM_MEM_READONLY slots turn guest writes into MMIO exits; ROM ignores them."""
    m = Machine()
    rom = m.memory.add(0xF0000, 0x10000, "rom", readonly=True)
    rom.buf[0:4] = b"ROM!"
    dispatch_mmio(m, _mmio_page(0xF0000, b"XXXX", 4, True))
    assert rom.buf[0:4] == b"ROM!"


def test_odd_length_mmio_is_split_not_refused() -> None:
    m = Machine()
    reg = Reg(16, frozenset({1}))
    m.mmio.register(0xFEB00000, 16, reg)
    dispatch_mmio(m, _mmio_page(0xFEB00001, b"abc", 3, True))
    assert reg.data[1:4] == b"abc"


@settings(max_examples=200, deadline=None)
@given(
    direction=st.sampled_from([abi.KVM_EXIT_IO_IN, abi.KVM_EXIT_IO_OUT]),
    size=st.sampled_from([1, 2, 4]),
    port=st.integers(0, 0xFFFF),
    count=st.integers(1, 64),
    off=st.integers(0x100, PAGE - 64 * 4),
    data=st.binary(min_size=256, max_size=256),
)
def test_any_io_exit_never_raises_and_touches_only_its_items(
    direction: int, size: int, port: int, count: int, off: int, data: bytes
) -> None:
    m = Machine()
    dev = Fifo()
    m.ports.register(0x700, 8, dev)
    page = _io_page(direction, size, port, count, off, data[: count * size])
    before = bytes(page)
    dispatch_io(m, page)
    end = off + count * size
    assert page[:off] == before[:off] and page[end:] == before[end:]
    if direction == abi.KVM_EXIT_IO_OUT:
        assert page == before
        if port >= 0x700 and port + size <= 0x708:
            assert [v.to_bytes(s, "little") for s, v in dev.written] == [
                data[i : i + size] for i in range(0, count * size, size)
            ]


@settings(max_examples=200, deadline=None)
@given(
    addr=st.integers(0, (1 << 64) - 16),
    data=st.binary(min_size=8, max_size=8),
    length=st.integers(0, 16),
    is_write=st.booleans(),
)
def test_any_mmio_exit_never_raises(addr: int, data: bytes, length: int, is_write: bool) -> None:
    m = Machine()
    m.memory.add(0, 0x10000, "ram")
    m.mmio.register(0xFEB00000, 16, Reg(16, frozenset({4})))
    page = _mmio_page(addr, data, length, is_write)
    dispatch_mmio(m, page)
    if (
        not is_write
        and 0 < length <= 8
        and m.mmio.overlaps(addr, length) is None
        and m.memory.find(addr) is None
    ):
        assert page[EXIT + 8 : EXIT + 8 + length] == b"\xff" * length  # unassigned: all-ones
