"""MSI decoding and delivery: Intel SDM vol. 3 section 10.11 message address and data."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.clock import ManualClock
from southbridge.devices.apicbus import DM_FIXED, DM_INIT, DM_LOWEST, DM_NMI, ApicBus
from southbridge.devices.lapic import LocalApic
from southbridge.devices.msi import MsiError, MsiRouter, decode
from southbridge.machine.pc import PcConfig, PcMachine


def system(n: int = 3) -> tuple[MsiRouter, list[LocalApic]]:
    clock = ManualClock()
    bus = ApicBus()
    lapics = [LocalApic(i, clock, bus, bsp=i == 0) for i in range(n)]
    for a in lapics:
        a.write(0xF0, 4, 0x1FF)
    return MsiRouter(bus), lapics


def test_decode_fields() -> None:
    """SDM 10.11.1/10.11.2: destination ID bits 19:12, DM bit 2; vector 7:0, delivery mode
    10:8, level 14, trigger 15."""
    msg = decode(0xFEE0_5004, 0xC4A7)
    assert msg.dest == 0x05 and msg.logical
    assert msg.vector == 0xA7 and msg.delivery_mode == DM_NMI
    assert msg.level_triggered and msg.assert_
    msg = decode(0xFEE0_2000, 0x0041)
    assert (msg.dest, msg.logical, msg.delivery_mode, msg.level_triggered) == (2, False, 0, False)
    assert msg.assert_  # edge messages carry the interrupt whatever bit 14 says


def test_redirection_hint_means_lowest_priority() -> None:
    """RH=1 redirects a fixed message to the lowest-priority APIC of its destinations (as KVM)."""
    assert decode(0xFEE0_F008, 0x41).delivery_mode == DM_LOWEST
    assert decode(0xFEE0_F008, 0x541).delivery_mode == DM_INIT
    assert decode(0xFEE0_F000, 0x41).delivery_mode == DM_FIXED


@pytest.mark.parametrize(
    ("address", "data"),
    [
        (0xFED0_0000, 0x41),  # not 0xFEExxxxx
        (0x1_FEE0_0000, 0x41),  # bits 63:32 set
        (0xFEE0_0000, 0x341),  # delivery mode 011 reserved
        (0xFEE0_0000, 0x641),  # delivery mode 110 reserved (no SIPI by MSI)
    ],
)
def test_invalid_messages_are_rejected(address: int, data: int) -> None:
    with pytest.raises(MsiError):
        decode(address, data)


def test_invalid_message_logged_rate_limited_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    """Invalid addresses are logged (rate-limited) and dropped; nothing reaches any APIC."""
    router, lapics = system()
    with caplog.at_level(logging.WARNING, logger="southbridge.msi"):
        for _ in range(100):
            assert not router.send(0xFED0_0000, 0x41)
    assert router.dropped == 100
    assert 1 <= len([r for r in caplog.records if "MSI dropped" in r.message]) <= 10
    assert all(a.irr == 0 for a in lapics)


def test_physical_delivery_sets_irr() -> None:
    router, lapics = system()
    assert router.send(0xFEE0_1000, 0x61)
    assert lapics[1].highest_pending() == 0x61
    assert lapics[0].irr == lapics[2].irr == 0


def test_logical_broadcast_and_lowest_priority() -> None:
    """Logical flat destination mask, and RH=1 choosing one APIC of the set."""
    router, lapics = system()
    for i, a in enumerate(lapics):
        a.write(0xD0, 4, (1 << i) << 24)
    lapics[1].write(0x80, 4, 0x50)
    assert router.send(0xFEE0_3004, 0x62)  # logical 0x03: APICs 0 and 1
    assert [a.apic_id for a in lapics if a.irr >> 0x62 & 1] == [0, 1]
    assert router.send(0xFEE0_300C, 0x63)  # RH=1: lowest priority of 0 and 1
    assert [a.apic_id for a in lapics if a.irr >> 0x63 & 1] == [0]


def test_level_msi_sets_tmr_and_deassert_carries_nothing() -> None:
    """Level-triggered MSIs set TMR (their EOI is broadcast); a de-assert message (trigger 1,
    level 0) is not an interrupt."""
    router, lapics = system()
    assert router.send(0xFEE0_0000, 0xC064)
    assert lapics[0].tmr >> 0x64 & 1
    assert not router.send(0xFEE0_0000, 0x8065)
    assert not lapics[0].irr >> 0x65 & 1


def test_pc_machine_routes_pci_msi_to_the_apics() -> None:
    """The pc machine's PCI root delivers MSI/MSI-X writes through the APIC bus."""
    m = PcMachine(PcConfig(smp=2))
    assert m.pci_bus.msi_sink is m.msi
    m.lapics[1].write(0xF0, 4, 0x1FF)
    m.pci_bus.msi_sink(0xFEE0_1000, 0x71)
    assert m.lapics[1].highest_pending() == 0x71


@settings(max_examples=300, deadline=None)
@given(st.integers(0, (1 << 64) - 1), st.integers(0, 0xFFFFFFFF))
def test_any_message_never_raises(address: int, data: int) -> None:
    router, lapics = system()
    router.send(address, data)
    router.send(0xFEE0_0000 | (address & 0xFFFFF), data)
    for a in lapics:
        assert a.irr & 0xFFFF == 0
