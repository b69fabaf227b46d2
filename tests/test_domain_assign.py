"""Assigned devices in a user domain (issue 7, items 4-5): virtual config over the host
function, I/O BARs reaching the host ports wherever the guest puts them, memory BARs, INTx
masked while in service and unmasked on EOI (PIC and IOAPIC), MSI and MSI-X, isolation from
other domains, and revocation on detach."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.domains.assign import AssignedDevice
from southbridge.domains.assignment import Assignments
from southbridge.domains.sources import source_for
from southbridge.host.hide import parse_hide
from southbridge.host.pciaddr import PciAddress
from southbridge.host.simulated import (
    REG_DOORBELL,
    REG_ID,
    REG_SCRATCH,
    REG_STATUS,
    SimulatedDevice,
    SimulatedHost,
    build_simulated_host,
    example_specs,
)
from southbridge.machine.pc import PcMachine
from southbridge.pci.piix3 import pirq_of
from tests.pcicfg import cfg_read, cfg_write

NIC = PciAddress.parse("02:00.0")
SLOT = PciAddress(0, 0, 3, 0)  # the first free slot of the pc machine's bus
PIIX3 = PciAddress(0, 0, 1, 0)
IRQ = 11


def setup(tmp: Path) -> tuple[SimulatedHost, SimulatedDevice, PcMachine, AssignedDevice]:
    sim = build_simulated_host(tmp, example_specs())
    a = Assignments(sim.inventory(), parse_hide("02:00.0"))
    m = PcMachine(host_ports=sim.ports)
    [dev] = a.claim("user")
    ad = AssignedDevice(m, dev, source_for(dev, sim), "user", sim)
    live = sim.get(NIC)
    assert live is not None
    return sim, live, m, ad


def program_bar(m: PcMachine, io: int = 0xD000) -> None:
    cfg_write(m, SLOT, 0x10, 4, io)
    cfg_write(m, SLOT, 0x14, 4, 0xE0000000)
    cfg_write(m, SLOT, 0x04, 2, 0x0007)


def init_pic(m: PcMachine) -> None:
    for port, words in ((0x20, (0x11, 0x08, 0x04, 0x01)), (0xA0, (0x11, 0x70, 0x02, 0x01))):
        m.ports.write(port, 1, words[0])
        for w in words[1:]:
            m.ports.write(port + 1, 1, w)
        m.ports.write(port + 1, 1, 0)
    m.ports.write(0x4D1, 1, 1 << (IRQ - 8))  # ELCR: IRQ 11 level, as firmware sets PCI IRQs
    cfg_write(m, PIIX3, 0x60, 4, IRQ * 0x01010101)  # PIRQA-D -> IRQ 11


def test_device_at_its_own_slot_with_virtual_header(tmp_path: Path) -> None:
    _sim, live, m, ad = setup(tmp_path)
    assert ad.fn.address() == "00:03.0"
    assert cfg_read(m, SLOT, 0) == 0x813910EC
    assert cfg_read(m, SLOT, 0x10) == 0x1  # BARs start unassigned, host address hidden
    cfg_write(m, SLOT, 0x10, 4, 0xFFFFFFFF)
    assert cfg_read(m, SLOT, 0x10) == 0xFFFFFF01  # 256-byte I/O BAR
    assert live.config_writes == []


def test_io_bar_moved_by_guest_reaches_host_addresses(tmp_path: Path) -> None:
    sim, _live, m, _ = setup(tmp_path)
    program_bar(m, 0xD000)
    assert m.ports.read(0xD000 + REG_ID, 4) == 0x813910EC
    m.ports.write(0xD000 + REG_SCRATCH, 4, 0xCAFE)
    assert ("out", 0xC000 + REG_SCRATCH, 4, 0xCAFE) in sim.ports.log
    # The host range itself is open in this domain's bitmap (the enabled-port rule).
    assert m.permissions.allowed(0xC000) and m.permissions.allowed(0xC0FF)
    assert m.ports.read(0xC000 + REG_SCRATCH, 4) == 0xCAFE
    # Decoding off: the guest range goes away, the host range stays permitted.
    cfg_write(m, SLOT, 0x04, 2, 0)
    assert m.ports.read(0xD000, 4) == 0xFFFFFFFF


def test_memory_bar_maps_device_memory(tmp_path: Path) -> None:
    _sim, live, m, _ = setup(tmp_path)
    program_bar(m)
    m.space.write(0xE0000900, 4, 0x12345678)  # past the MSI-X table and PBA
    assert live.memory[1].data[0x900:0x904] == bytes.fromhex("78563412")


def test_other_domain_sees_nothing(tmp_path: Path) -> None:
    sim, _live, _m, _ = setup(tmp_path)
    other = PcMachine(host_ports=sim.ports)
    n = len(sim.ports.log)
    for port in (0xC000, 0xC004, 0xC008, 0xD000):
        assert other.ports.read(port, 4) == 0xFFFFFFFF
        other.ports.write(port, 4, 0)
    assert len(sim.ports.log) == n
    assert all(cfg_read(other, PciAddress(0, 0, s, 0), 0) != 0x813910EC for s in range(32))


def test_intx_through_pic_masked_until_eoi(tmp_path: Path) -> None:
    # VFIO INTx: the source is masked while the guest services it; EOI unmasks and a source
    # still asserted interrupts again, so none is lost and none sticks.
    _sim, _live, m, ad = setup(tmp_path)
    init_pic(m)
    program_bar(m)
    assert pirq_of(3, 0) == 2  # slot 3 INTA -> PIRQC
    m.ports.write(0xD000 + REG_DOORBELL, 4, 0)
    assert m.pic.intr.level
    assert m.pic.acknowledge() == 0x70 + IRQ - 8
    m.ports.write(0xD000 + REG_STATUS, 4, 0)  # handler acks the device
    assert ad.masked and ad.fn.intx_asserted  # line held until EOI
    m.ports.write(0xD000 + REG_DOORBELL, 4, 0)  # device asserts again before EOI
    m.ports.write(0xA0, 1, 0x20)
    m.ports.write(0x20, 1, 0x20)
    assert m.pic.intr.level and ad.masked  # re-delivered after EOI
    assert m.pic.acknowledge() == 0x70 + IRQ - 8
    m.ports.write(0xD000 + REG_STATUS, 4, 0)
    m.ports.write(0xA0, 1, 0x20)
    m.ports.write(0x20, 1, 0x20)
    assert not m.pic.intr.level and not ad.masked and not ad.fn.intx_asserted


def test_edge_during_service_is_not_lost(tmp_path: Path) -> None:
    _sim, live, m, _ad = setup(tmp_path)
    live.irq.mode = "edge"
    init_pic(m)
    program_bar(m)
    m.ports.write(0xD000 + REG_DOORBELL, 4, 0)
    m.pic.acknowledge()
    m.ports.write(0xD000 + REG_DOORBELL, 4, 0)  # edge while masked
    m.ports.write(0xA0, 1, 0x20)
    m.ports.write(0x20, 1, 0x20)
    assert m.pic.intr.level
    m.pic.acknowledge()
    m.ports.write(0xA0, 1, 0x20)
    m.ports.write(0x20, 1, 0x20)
    assert not m.pic.intr.level


def test_intx_through_ioapic_unmasked_on_lapic_eoi(tmp_path: Path) -> None:
    _sim, _live, m, ad = setup(tmp_path)
    program_bar(m)
    lapic = m.lapics[0]
    lapic.write(0xF0, 4, 0x1FF)
    pin = 16 + pirq_of(3, 0)
    m.mmio.write(0xFEC00000, 4, 0x10 + 2 * pin)
    m.mmio.write(0xFEC00010, 4, 0x8000 | 0x45)  # level, vector 0x45, unmasked
    m.ports.write(0xD000 + REG_DOORBELL, 4, 0)
    assert lapic.ack() == 0x45
    m.ports.write(0xD000 + REG_STATUS, 4, 0)
    m.ports.write(0xD000 + REG_DOORBELL, 4, 0)
    lapic.write(0xB0, 4, 0)  # EOI: broadcast to the IOAPIC for a level vector
    assert lapic.highest_pending() == 0x45 and ad.masked
    assert lapic.ack() == 0x45
    m.ports.write(0xD000 + REG_STATUS, 4, 0)
    lapic.write(0xB0, 4, 0)
    assert lapic.highest_pending() is None and not ad.masked


def test_msi_vectors_as_guest_programmed(tmp_path: Path) -> None:
    _sim, live, m, ad = setup(tmp_path)
    program_bar(m)
    m.lapics[0].write(0xF0, 4, 0x1FF)
    msi = 0x50
    cfg_write(m, SLOT, msi + 4, 4, 0xFEE00000)
    cfg_write(m, SLOT, msi + 8, 4, 0)
    cfg_write(m, SLOT, msi + 12, 2, 0x60)
    cfg_write(m, SLOT, msi + 2, 2, 0x0021)  # enable, 4 vectors
    assert live.irq.msi_enabled
    m.ports.write(0xD000 + REG_DOORBELL, 4, 2)
    assert m.lapics[0].highest_pending() == 0x62
    assert not ad.fn.intx_asserted
    assert live.config_writes == []  # MSI is emulated: the host capability untouched
    cfg_write(m, SLOT, msi + 2, 2, 0)
    assert not live.irq.msi_enabled


def test_msix_table_clamped_and_vectors_delivered(tmp_path: Path) -> None:
    # XSA-164: table offsets beyond the table size reach neither the table nor the host.
    _sim, live, m, _ad = setup(tmp_path)
    program_bar(m)
    m.lapics[0].write(0xF0, 4, 0x1FF)
    base = 0xE0000000
    m.space.write(base + 1 * 16, 4, 0xFEE00000)
    m.space.write(base + 1 * 16 + 8, 4, 0x77)
    m.space.write(base + 1 * 16 + 12, 4, 0)  # unmask entry 1
    for e in (0, 2, 3):
        m.space.write(base + e * 16 + 8, 4, 0x1234)
    # The guest's table is emulated: the device's own table bytes never see its writes.
    assert live.memory[1].data[0:0x40] == bytes(0x40)
    assert m.space.read(base + 0x800, 8) == 0  # PBA: nothing pending
    cfg_write(m, SLOT, 0x70 + 2, 2, 0x8000)
    m.ports.write(0xD000 + REG_DOORBELL, 4, 1)
    assert m.lapics[0].highest_pending() == 0x77
    m.ports.write(0xD000 + REG_DOORBELL, 4, 9)  # no such vector: logged, nothing sent
    assert live.config_writes == []


def test_forbidden_config_writes_never_reach_host(tmp_path: Path) -> None:
    _sim, live, m, _ = setup(tmp_path)
    cfg_write(m, SLOT, 0x10, 4, 0xC000)  # BAR over the host's own address: virtual
    cfg_write(m, SLOT, 0x04, 2, 0xFFFF)  # decode bits
    cfg_write(m, SLOT, 0x34, 1, 0x40)  # capability pointer
    cfg_write(m, SLOT, 0x51, 1, 0)  # MSI next pointer
    cfg_write(m, SLOT, 0x72, 2, 0x07FF)  # MSI-X table size field
    cfg_write(m, SLOT, 0x80, 4, 0xFFFFFFFF)  # device-specific bytes
    assert live.config_writes == []
    assert cfg_read(m, SLOT, 0x34, 1) == 0x50 and cfg_read(m, SLOT, 0x72, 2) & 0x7FF == 3


def test_detach_revokes_everything(tmp_path: Path) -> None:
    _sim, live, m, ad = setup(tmp_path)
    init_pic(m)
    program_bar(m)
    m.ports.write(0xD000 + REG_DOORBELL, 4, 0)
    assert m.pic.intr.level
    ad.detach()
    assert m.permissions.count() == 0
    assert m.ports.read(0xD000, 4) == 0xFFFFFFFF and m.ports.read(0xC000, 4) == 0xFFFFFFFF
    assert cfg_read(m, SLOT, 0) == 0xFFFFFFFF
    assert m.space.read(0xE0000900, 4) == 0xFFFFFFFF
    assert not m.pic.slave.irr & 1 << (IRQ - 8)  # the level request is withdrawn
    assert not live.irq.intx_listeners and not live.irq.msi_listeners
    ad.detach()  # twice is harmless


ACCESS = st.one_of(
    st.tuples(
        st.just("cfg"), st.integers(0, 0xFF), st.sampled_from([1, 2, 4]), st.integers(0, 2**32 - 1)
    ),
    st.tuples(
        st.just("io"),
        st.integers(0xC000, 0xD0FF),
        st.sampled_from([1, 2, 4]),
        st.integers(0, 2**32 - 1),
    ),
    st.tuples(
        st.just("mem"),
        st.integers(0xE0000000, 0xE0001000),
        st.sampled_from([1, 2, 4, 8]),
        st.integers(0, 2**32 - 1),
    ),
    st.tuples(st.just("eoi"), st.integers(0, 1), st.just(1), st.just(0)),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(ACCESS, max_size=50))
def test_any_access_sequence_keeps_isolation(ops: list[tuple[str, int, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        _sim, live, m, ad = setup(Path(d))
        init_pic(m)
        program_bar(m)
        for kind, a, size, v in ops:
            v &= (1 << 8 * size) - 1
            if kind == "cfg":
                off = a & ~(size - 1)
                cfg_write(m, SLOT, off, size, v)
                cfg_read(m, SLOT, off, size)
            elif kind == "io":
                m.ports.write(a, size, v)
                m.ports.read(a, size)
            elif kind == "mem":
                m.space.write(a & ~(size - 1), size, v)
            else:
                if m.pic.intr.level:
                    m.pic.acknowledge()
                m.ports.write(0xA0, 1, 0x20)
                m.ports.write(0x20, 1, 0x20)
        assert live.config_writes == []
        # Invariant: the guest's line is up only while the source is masked in service.
        assert ad.fn.intx_asserted == (ad.masked and not live.irq.msi_enabled)
        state = m.pci_bus.save()
        m.pci_bus.restore(state)
        assert m.pci_bus.save() == state
        ad.detach()
        assert m.permissions.count() == 0


def test_platform_reset_while_in_service_is_not_stuck(tmp_path: Path) -> None:
    # RST# with INTx in service (no EOI will ever come): the source is followed again and
    # MSI is off, so the rebooted guest gets the device's interrupt once it routes it.
    _sim, live, m, ad = setup(tmp_path)
    init_pic(m)
    program_bar(m)
    cfg_write(m, SLOT, 0x52, 2, 0x0001)  # MSI on ...
    cfg_write(m, SLOT, 0x52, 2, 0x0000)  # ... and off: back to INTx
    m.ports.write(0xD000 + REG_DOORBELL, 4, 0)
    assert ad.masked
    m.ports.write(0xD000 + REG_STATUS, 4, 0)  # source low again, line held until EOI
    m.pci_bus.reset()
    assert not ad.masked and not ad.fn.intx_asserted and not live.irq.msi_enabled
    init_pic(m)
    program_bar(m)
    m.ports.write(0xD000 + REG_DOORBELL, 4, 0)
    assert ad.masked and m.pic.intr.level


def test_saved_forwarding_state_round_trips_and_is_validated(tmp_path: Path) -> None:
    from southbridge.core.state import StateError

    _sim, _live, m, ad = setup(tmp_path)
    init_pic(m)
    program_bar(m)
    m.ports.write(0xD000 + REG_DOORBELL, 4, 0)
    state = ad.fn.save()
    assert state["device"] == {"masked": True, "edge_seen": False}
    ad.fn.restore(state)
    assert ad.fn.save() == state
    bad = {**state, "device": {"masked": False, "edge_seen": True}}
    with pytest.raises(StateError):
        ad.fn.restore(bad)
    assert ad.fn.save() == state  # a rejected state changes nothing
