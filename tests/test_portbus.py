"""Port I/O bus: registration, O(1) dispatch, size splitting/widening, all-ones, permissions."""

from __future__ import annotations

import pytest

from southbridge.core.device import BusDevice, BusError
from southbridge.core.hostports import FakeHostPorts
from southbridge.core.permissions import PortPermissions
from southbridge.core.portbus import PortBus
from tests.conftest import Reg


def test_unhandled_reads_are_all_ones_of_the_access_size() -> None:
    bus = PortBus()
    assert bus.read(0x1234, 1) == 0xFF
    assert bus.read(0x1234, 2) == 0xFFFF
    assert bus.read(0x1234, 4) == 0xFFFFFFFF
    assert bus.unhandled_reads == 3


def test_unhandled_write_is_dropped_and_counted() -> None:
    bus = PortBus()
    bus.write(0x1234, 1, 0x55)
    assert bus.unhandled_writes == 1
    assert bus.read(0x1234, 1) == 0xFF


def test_device_gets_offset_inside_its_range() -> None:
    bus = PortBus()
    dev = Reg(8)
    bus.register(0x3F8, 8, dev)
    bus.write(0x3FB, 1, 0x83)
    assert dev.accesses[-1] == ("w", 3, 1, 0x83)
    assert bus.read(0x3FB, 1) == 0x83


def test_overlap_rejected_with_clear_error() -> None:
    bus = PortBus()
    bus.register(0x60, 1, Reg(1, name="kbd"))
    with pytest.raises(BusError, match="overlap kbd"):
        bus.register(0x5F, 2, Reg(2, name="other"))
    bus.register(0x61, 1, Reg(1))  # adjacent is fine


@pytest.mark.parametrize("base,length", [(-1, 1), (0xFFFF, 2), (0, 0), (0x10000, 1)])
def test_out_of_range_registration_rejected(base: int, length: int) -> None:
    with pytest.raises(BusError):
        PortBus().register(base, length, Reg(max(length, 1)))


def test_unregister_restores_all_ones() -> None:
    bus = PortBus()
    dev = Reg(4)
    bus.register(0x100, 4, dev)
    assert bus.unregister(0x100) is dev
    assert bus.read(0x100, 4) == 0xFFFFFFFF
    with pytest.raises(BusError):
        bus.unregister(0x100)


def test_word_access_to_byte_device_is_split_into_two_byte_cycles() -> None:
    bus = PortBus()
    dev = Reg(2, frozenset({1}))
    bus.register(0x70, 2, dev)
    bus.write(0x70, 2, 0xBEEF)
    assert dev.accesses == [("w", 0, 1, 0xEF), ("w", 1, 1, 0xBE)]
    assert bus.read(0x70, 2) == 0xBEEF


def test_dword_to_word_device_split_into_words() -> None:
    bus = PortBus()
    dev = Reg(4, frozenset({2}))
    bus.register(0x1F0, 4, dev)
    bus.write(0x1F0, 4, 0x11223344)
    assert dev.accesses == [("w", 0, 2, 0x3344), ("w", 2, 2, 0x1122)]


def test_byte_access_to_dword_only_device_is_widened() -> None:
    bus = PortBus()
    dev = Reg(4, frozenset({4}))
    dev.data[:] = bytes([1, 2, 3, 4])
    bus.register(0xCF8, 4, dev)
    assert bus.read(0xCFA, 1) == 3
    assert dev.accesses[-1] == ("r", 0, 4, 0x04030201)
    assert bus.read(0xCFA, 2) == 0x0403
    bus.write(0xCF9, 1, 0xAA)  # QEMU semantics: shifted into an aligned dword write
    assert dev.accesses[-1] == ("w", 0, 4, 0xAA00)


def test_access_spanning_two_devices_is_split_per_byte() -> None:
    bus = PortBus()
    a, b = Reg(1, frozenset({1}), "a"), Reg(1, frozenset({1}), "b")
    bus.register(0x10, 1, a)
    bus.register(0x11, 1, b)
    a.data[0], b.data[0] = 0x12, 0x34
    assert bus.read(0x10, 2) == 0x3412
    # half-assigned: the unassigned bytes float high
    assert bus.read(0x11, 2) == 0xFF34
    bus.write(0x10, 4, 0xAABBCCDD)
    assert a.data[0] == 0xDD and b.data[0] == 0xCC


def test_access_at_top_of_port_space_wraps_nothing() -> None:
    bus = PortBus()
    dev = Reg(1)
    bus.register(0xFFFF, 1, dev)
    dev.data[0] = 0x5A
    assert bus.read(0xFFFF, 4) == 0xFFFFFF5A
    bus.write(0xFFFF, 2, 0x1234)
    assert dev.data[0] == 0x34


class Exploding(BusDevice):
    def read(self, offset: int, size: int) -> int:
        raise RuntimeError("boom")

    def write(self, offset: int, size: int, value: int) -> None:
        raise ZeroDivisionError


def test_device_exception_never_escapes_and_reads_all_ones() -> None:
    bus = PortBus()
    bus.register(0x80, 1, Exploding())
    assert bus.read(0x80, 1) == 0xFF
    bus.write(0x80, 1, 1)
    assert bus.faults == 2


def test_device_returning_too_wide_value_is_masked() -> None:
    class Wide(BusDevice):
        def read(self, offset: int, size: int) -> int:
            return 0x1FFFF

    bus = PortBus()
    bus.register(0x10, 1, Wide())
    assert bus.read(0x10, 1) == 0xFF


# -- permissions ---------------------------------------------------------------------------


def make_permitted() -> tuple[PortBus, PortPermissions, FakeHostPorts, Reg]:
    perms = PortPermissions()
    host = FakeHostPorts()
    bus = PortBus(perms, host)
    dev = Reg(8)
    bus.register(0x300, 8, dev)
    return bus, perms, host, dev


def test_permitted_port_passes_through_to_host_instead_of_emulation() -> None:
    bus, perms, host, dev = make_permitted()
    perms.allow(0x300, 4)
    bus.write(0x300, 1, 0x42)
    assert host.log == [("out", 0x300, 1, 0x42)]
    assert dev.accesses == []
    assert bus.read(0x300, 1) == 0x42
    # the ports not permitted still reach the emulation
    bus.write(0x304, 1, 0x99)
    assert dev.accesses == [("w", 4, 1, 0x99)]


def test_deny_restores_emulation() -> None:
    bus, perms, host, dev = make_permitted()
    perms.allow(0x300, 8)
    perms.deny(0x300, 8)
    bus.write(0x300, 1, 7)
    assert host.log == [] and dev.accesses == [("w", 0, 1, 7)]


def test_permitted_unregistered_port_reaches_host() -> None:
    perms = PortPermissions()
    host = FakeHostPorts()
    bus = PortBus(perms, host)
    perms.allow(0x0, 1)
    perms.allow(0xFFFF, 1)
    bus.write(0, 1, 0x11)
    bus.write(0xFFFF, 1, 0x22)
    assert host.mem[0] == 0x11 and host.mem[0xFFFF] == 0x22
    assert bus.read(0xFFFF, 1) == 0x22
    assert bus.read(0xFFFE, 1) == 0xFF  # neighbour not permitted
    assert [e[1] for e in host.log] == [0, 0xFFFF, 0xFFFF]


def test_dword_straddling_permitted_and_forbidden_ports_splits_per_port() -> None:
    perms = PortPermissions()
    host = FakeHostPorts()
    bus = PortBus(perms, host)
    perms.allow(0x500, 2)  # 0x500-0x501 permitted, 0x502-0x503 not
    host.mem[0x500:0x504] = bytes([1, 2, 3, 4])
    assert bus.read(0x500, 4) == 0xFFFF0201  # forbidden half is unassigned: all-ones
    bus.write(0x500, 4, 0xDDCCBBAA)
    assert host.mem[0x500:0x504] == bytes([0xAA, 0xBB, 3, 4])  # never wrote 0x502/0x503
    assert all(p in (0x500, 0x501) for _, p, _, _ in host.log)


def test_whole_permitted_dword_is_one_host_access() -> None:
    perms = PortPermissions()
    host = FakeHostPorts()
    bus = PortBus(perms, host)
    perms.allow(0xCFC, 4)
    bus.write(0xCFC, 4, 0x12345678)
    assert host.log == [("out", 0xCFC, 4, 0x12345678)]


def test_permission_bitmap_edges_and_ranges() -> None:
    p = PortPermissions()
    assert not p.allowed(0) and not p.allowed(0xFFFF)
    p.allow(0, 1)
    p.allow(0xFFFF, 1)
    p.allow(0x3F8, 8)
    assert p.allowed(0) and p.allowed(0xFFFF) and p.allowed(0x3FF) and not p.allowed(0x400)
    assert list(p.ranges()) == [(0, 1), (0x3F8, 8), (0xFFFF, 1)]
    assert p.count() == 10
    assert p.allowed_range(0x3F8, 8) and not p.allowed_range(0x3F8, 9)
    assert not p.allowed(-1) and not p.allowed(0x10000)
    with pytest.raises(ValueError):
        p.allow(0xFFFF, 2)
    p.deny_all()
    assert p.count() == 0


def test_tracer_sees_guest_accesses_only_once() -> None:
    bus = PortBus()
    dev = Reg(2, frozenset({1}))
    bus.register(0x70, 2, dev)
    seen: list[tuple[str, int, int, int]] = []
    bus.set_tracer(lambda *a: seen.append(a))
    bus.write(0x70, 2, 0x0102)  # split internally, traced once
    bus.read(0x1234, 1)
    assert seen == [("out", 0x70, 2, 0x0102), ("in", 0x1234, 1, 0xFF)]
    bus.set_tracer(None)
    bus.read(0x70, 1)
    assert len(seen) == 2
