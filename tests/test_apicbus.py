"""APIC bus delivery: SDM vol. 3 section 10.6 destinations, shorthands and arbitration."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.clock import ManualClock
from southbridge.devices.apicbus import (
    DM_EXTINT,
    DM_FIXED,
    DM_INIT,
    DM_LOWEST,
    DM_NMI,
    DM_SIPI,
    DM_SMI,
    SH_ALL,
    SH_OTHERS,
    SH_SELF,
    ApicBus,
    ApicMessage,
)
from southbridge.devices.lapic import LocalApic

TPR, LDR, DFR, SVR, ICR_LO, ICR_HI = 0x80, 0xD0, 0xE0, 0xF0, 0x300, 0x310


def system(n: int = 3) -> tuple[ApicBus, list[LocalApic]]:
    clock = ManualClock()
    bus = ApicBus()
    lapics = [LocalApic(i, clock, bus, bsp=i == 0) for i in range(n)]
    for a in lapics:
        a.write(SVR, 4, 0x1FF)
    return bus, lapics


def ipi(src: LocalApic, low: int, dest: int = 0) -> None:
    src.write(ICR_HI, 4, dest << 24)
    src.write(ICR_LO, 4, low)


def got(lapics: list[LocalApic], vector: int) -> list[int]:
    return [a.apic_id for a in lapics if a.irr >> vector & 1]


def test_physical_destination() -> None:
    """SDM 10.6.2.1: physical mode addresses the APIC whose ID matches."""
    _, ls = system()
    ipi(ls[0], 0x40, dest=2)
    assert got(ls, 0x40) == [2]


def test_physical_broadcast() -> None:
    """SDM 10.6.2.1: destination 0xFF is a broadcast to every APIC, including the sender."""
    _, ls = system()
    ipi(ls[0], 0x41, dest=0xFF)
    assert got(ls, 0x41) == [0, 1, 2]


def test_logical_flat_model() -> None:
    """SDM 10.6.2.2: flat model, the destination is a bit mask against LDR[31:24]."""
    _, ls = system()
    for i, a in enumerate(ls):
        a.write(LDR, 4, (1 << i) << 24)
    ipi(ls[0], 0x800 | 0x42, dest=0x06)
    assert got(ls, 0x42) == [1, 2]


def test_logical_cluster_model() -> None:
    """SDM 10.6.2.2: cluster model, dest[7:4] picks the cluster (0xF all) and dest[3:0] the
    members against LDR[27:24]."""
    _, ls = system()
    for a, ldr in zip(ls, (0x11, 0x12, 0x21), strict=True):
        a.write(DFR, 4, 0x0FFFFFFF)
        a.write(LDR, 4, ldr << 24)
    ipi(ls[0], 0x800 | 0x43, dest=0x13)
    assert got(ls, 0x43) == [0, 1]
    ipi(ls[0], 0x800 | 0x44, dest=0x21)
    assert got(ls, 0x44) == [2]
    ipi(ls[0], 0x800 | 0x45, dest=0xF1)
    assert got(ls, 0x45) == [0, 2]
    ipi(ls[0], 0x800 | 0x46, dest=0xFF)
    assert got(ls, 0x46) == [0, 1, 2]


def test_x2apic_logical_cluster() -> None:
    """SDM 10.12.10: x2APIC logical destination = cluster (bits 31:16) and a 16-bit mask,
    both derived from the x2APIC ID."""
    clock = ManualClock()
    bus = ApicBus()
    ls = [LocalApic(i, clock, bus, bsp=i == 0) for i in (0, 1, 17)]
    for a in ls:
        assert a.write_msr(0x1B, 0xFEE00C00 | (0x100 if a.bsp else 0))
        assert a.write_msr(0x80F, 0x1FF)
    assert ls[0].write_msr(0x830, ((1 << 16 | 1 << 1) << 32) | 0x800 | 0x47)
    assert got(ls, 0x47) == [17]
    assert ls[0].write_msr(0x830, ((0 << 16 | 3) << 32) | 0x800 | 0x48)
    assert got(ls, 0x48) == [0, 1]


def test_shorthands() -> None:
    """SDM 10.6.1: self, all including self, all excluding self ignore the destination."""
    _, ls = system()
    ipi(ls[1], (SH_SELF << 18) | 0x50, dest=2)
    assert got(ls, 0x50) == [1]
    ipi(ls[1], (SH_ALL << 18) | 0x51)
    assert got(ls, 0x51) == [0, 1, 2]
    ipi(ls[1], (SH_OTHERS << 18) | 0x52)
    assert got(ls, 0x52) == [0, 2]


def test_lowest_priority_picks_lowest_arbitration_priority() -> None:
    """SDM 10.6.2.4: lowest priority delivers to one APIC, the one with the lowest
    arbitration priority; our tie-break is the lowest APIC ID."""
    _, ls = system()
    for a, tpr in zip(ls, (0x20, 0x10, 0x30), strict=True):
        a.write(TPR, 4, tpr)
    ipi(ls[0], (DM_LOWEST << 8) | 0x60, dest=0xFF)
    assert got(ls, 0x60) == [1]
    assert ls[1].ack() == 0x60
    ls[1].write(0xB0, 4, 0)
    ls[1].write(TPR, 4, 0x20)
    ipi(ls[0], (DM_LOWEST << 8) | 0x61, dest=0xFF)
    assert got(ls, 0x61) == [0]  # APIC 0 and 1 tie at APR 0x20: the lower ID wins


def test_lowest_priority_tie_breaks_by_id() -> None:
    _, ls = system()
    ipi(ls[2], (DM_LOWEST << 8) | 0x62, dest=0xFF)
    assert got(ls, 0x62) == [0]
    ipi(ls[2], (DM_LOWEST << 8) | 0x800 | 0x63, dest=0x00)  # logical 0: nobody
    assert got(ls, 0x63) == []


def test_lowest_priority_focus_processor() -> None:
    """SDM 10.6.2.4: with focus checking on, an APIC already servicing the vector gets it;
    SVR bit 9 turns focus checking off."""
    _, ls = system()
    ls[2].accept(0x70)
    ls[2].ack()
    ipi(ls[0], (DM_LOWEST << 8) | 0x70, dest=0xFF)
    assert got(ls, 0x70) == [2]
    for a in ls:
        a.write(SVR, 4, 0x3FF)
    ipi(ls[0], (DM_LOWEST << 8) | 0x70, dest=0xFF)
    assert got(ls, 0x70) == [0, 2]  # APIC 2's APR is now 0x70: arbitration picks APIC 0


def test_lowest_priority_skips_software_disabled() -> None:
    """A software-disabled APIC does not accept fixed interrupts, so arbitration skips it."""
    _, ls = system()
    ls[0].write(SVR, 4, 0xFF)
    ls[1].write(TPR, 4, 0x40)
    ls[2].write(TPR, 4, 0x40)
    ipi(ls[1], (DM_LOWEST << 8) | 0x64, dest=0xFF)
    assert got(ls, 0x64) == [1]


def test_nmi_smi_init_sipi_extint_messages() -> None:
    """SDM 10.6.1: NMI, SMI, INIT and SIPI are events for the CPU, not IRR vectors."""
    bus, ls = system(2)
    target = ls[1]
    bus.deliver(ApicMessage(0, DM_NMI, dest=1))
    bus.deliver(ApicMessage(0, DM_SMI, dest=1))
    bus.deliver(ApicMessage(0, DM_INIT, dest=1))
    bus.deliver(ApicMessage(0x10, DM_SIPI, dest=1))
    assert target.irr == 0
    assert target.take_nmi() and target.take_smi() and target.take_init()
    assert target.take_sipi() == 0x10
    bus.deliver(ApicMessage(0, DM_EXTINT, dest=1))
    assert target.extint_requested() and target.intr.level
    bus.deliver(ApicMessage(0, DM_EXTINT, dest=1, assert_=False))
    assert not target.extint_requested()


def test_init_level_deassert_delivers_nothing() -> None:
    """SDM 10.6.1: INIT level de-assert only resynchronises arbitration IDs."""
    bus, ls = system(2)
    assert (
        bus.deliver(ApicMessage(0, DM_INIT, dest=0xFF, level_triggered=True, assert_=False)) == []
    )
    assert not any(a.pending_init for a in ls)


def test_hardware_disabled_apic_hears_nothing() -> None:
    """SDM 10.4.3: a globally disabled APIC takes no part in the APIC bus."""
    bus, ls = system(2)
    assert ls[1].write_msr(0x1B, 0xFEE00000)
    assert bus.deliver(ApicMessage(0x40, DM_FIXED, dest=0xFF)) == [ls[0]]
    bus.deliver(ApicMessage(0, DM_NMI, dest=1))
    assert not ls[1].pending_nmi


def test_level_ipi_sets_tmr_and_broadcasts_eoi() -> None:
    """A level-triggered fixed message sets TMR; its EOI goes to the bus listeners."""
    bus, ls = system(2)
    seen: list[int] = []
    bus.on_eoi(seen.append)
    bus.deliver(ApicMessage(0x90, DM_FIXED, dest=1, level_triggered=True))
    assert ls[1].tmr >> 0x90 & 1
    assert ls[1].ack() == 0x90
    ls[1].write(0xB0, 4, 0)
    assert seen == [0x90]


msg_st = st.builds(
    ApicMessage,
    vector=st.integers(0, 255),
    delivery_mode=st.integers(0, 7),
    dest=st.integers(0, 0xFFFFFFFF),
    logical=st.booleans(),
    level_triggered=st.booleans(),
    assert_=st.booleans(),
    shorthand=st.integers(0, 3),
    x2apic=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(msg_st, st.integers(-1, 2), st.sampled_from([0, 0x10, 0x80, 0xF0])), max_size=30
    )
)
def test_any_message_never_raises_and_lowest_priority_hits_at_most_one(msgs: list[Any]) -> None:
    bus, ls = system(3)
    for msg, src, tpr in msgs:
        ls[msg.vector % 3].write(TPR, 4, tpr)
        accepted = bus.deliver(msg, None if src < 0 else ls[src])
        if msg.delivery_mode == DM_LOWEST:
            assert len(accepted) <= 1
        for a in ls:
            assert a.irr & 0xFFFF == 0
            if a.highest_pending() is not None:
                assert a.intr.level
