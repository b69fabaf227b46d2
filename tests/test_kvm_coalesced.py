"""The coalesced write ring (southbridge.kvm.coalesced) without KVM: a bytearray laid out as
linux/kvm.h says (struct kvm_coalesced_mmio_ring on page KVM_COALESCED_MMIO_PAGE_OFFSET of the
vCPU mapping; KVM advances `last`, userspace `first`). The guest-level order test is in
test_kvm_guest.py."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.device import BusDevice
from southbridge.kvm import abi
from southbridge.kvm.coalesced import PAGE, CoalescedRing
from southbridge.machine.base import Machine

BASE = abi.KVM_COALESCED_MMIO_PAGE_OFFSET * PAGE
MAX = abi.KVM_COALESCED_MMIO_MAX


class Sink(BusDevice):
    io_sizes = frozenset({1, 2, 4, 8})

    def __init__(self, log: list[tuple[int, int, int]]) -> None:
        self.log = log

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        self.log.append((offset, size, value))


def put(page: bytearray, slot: int, addr: int, length: int, pio: int, data: bytes) -> None:
    struct.pack_into("<QII8s", page, BASE + 8 + slot * 24, addr, length, pio, data)


def test_ring_capacity_is_one_page_of_entries() -> None:
    assert MAX == (4096 - 8) // 24 == 170


def test_drain_replays_in_order_across_the_wrap_and_frees_the_slots() -> None:
    m = Machine()
    log: list[tuple[int, int, int]] = []
    m.ports.register(0x402, 1, Sink(log), "debugcon")
    m.mmio.register(0xA0000, 0x1000, Sink(log), "mmio")
    page = bytearray(3 * PAGE)
    put(page, MAX - 1, 0x402, 1, 1, b"A".ljust(8, b"\0"))
    put(page, 0, 0xA0004, 4, 0, (0x12345678).to_bytes(8, "little"))
    put(page, 1, 0x402, 1, 1, b"B".ljust(8, b"\0"))
    struct.pack_into("<II", page, BASE, MAX - 1, 2)  # first, last
    ring = CoalescedRing(page)
    assert ring.pending()
    assert ring.drain(m) == 3
    assert log == [(0, 1, 0x41), (4, 4, 0x12345678), (0, 1, 0x42)]
    assert struct.unpack_from("<II", page, BASE) == (2, 2) and not ring.pending()
    ring.release()


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.binary(min_size=4080, max_size=4080)
)
def test_any_ring_contents_drain_bounded_without_raising(
    first: int, last: int, body: bytes
) -> None:
    """The page is shared with the kernel, never with the guest; still, garbage indexes or
    entries end the drain within one ring's worth of entries and raise nothing."""
    m = Machine()
    page = bytearray(3 * PAGE)
    struct.pack_into("<II", page, BASE, first, last)
    page[BASE + 8 : BASE + 8 + len(body)] = body
    ring = CoalescedRing(page)
    assert 0 <= ring.drain(m) <= MAX
    ring.release()
