"""IOAPIC: Intel 82093AA datasheet rules, through its MMIO window and the pc machine."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.clock import ManualClock
from southbridge.core.state import StateError
from southbridge.devices.apicbus import ApicBus
from southbridge.devices.ioapic import IoApic
from southbridge.devices.lapic import LocalApic
from southbridge.machine.pc import PcConfig, PcMachine
from southbridge.qtest.server import QtestSession
from tests.qtesting import ask

EOI = 0xB0
MASKED, LEVEL, REMOTE_IRR, LOGICAL = 1 << 16, 1 << 15, 1 << 14, 1 << 11


def system(n: int = 2) -> tuple[IoApic, list[LocalApic]]:
    clock = ManualClock()
    bus = ApicBus()
    lapics = [LocalApic(i, clock, bus, bsp=i == 0) for i in range(n)]
    for a in lapics:
        a.write(0xF0, 4, 0x1FF)
    return IoApic(bus), lapics


def reg_read(io: IoApic, index: int) -> int:
    io.write(0x00, 4, index)
    return io.read(0x10, 4)


def reg_write(io: IoApic, index: int, value: int) -> None:
    io.write(0x00, 4, index)
    io.write(0x10, 4, value)


def program(io: IoApic, pin: int, low: int, dest: int = 0) -> None:
    reg_write(io, 0x11 + 2 * pin, dest << 24)
    reg_write(io, 0x10 + 2 * pin, low)


def entry(io: IoApic, pin: int) -> int:
    return reg_read(io, 0x10 + 2 * pin) | reg_read(io, 0x11 + 2 * pin) << 32


def service(a: LocalApic) -> int:
    """What a CPU does with one interrupt: acknowledge, then EOI."""
    v = a.ack()
    a.write(EOI, 4, 0)
    return v


# -- registers -------------------------------------------------------------------------------
def test_identification_registers() -> None:
    """82093AA 3.2: ID bits 27:24 (R/W), version 0x20 with max redirection entry 23 (RO),
    arbitration ID loaded from the ID (RO); IOREGSEL reads back."""
    io, _ = system()
    assert reg_read(io, 0x01) == 0x00170020
    reg_write(io, 0x01, 0)
    assert reg_read(io, 0x01) == 0x00170020
    reg_write(io, 0x00, 0xFFFFFFFF)
    assert reg_read(io, 0x00) == 0x0F000000
    assert reg_read(io, 0x02) == 0x0F000000
    io.write(0x00, 4, 0x12)
    assert io.read(0x00, 4) == 0x12
    assert reg_read(io, 0x40) == 0  # undefined register


def test_redirection_reset_and_read_only_bits() -> None:
    """82093AA 3.2.4: entries reset masked; delivery status and remote IRR are read-only and
    bits 55:17 reserved."""
    io, _ = system()
    assert all(entry(io, p) == MASKED for p in range(24))
    reg_write(io, 0x10, 0xFFFFFFFF)
    reg_write(io, 0x11, 0xFFFFFFFF)
    assert entry(io, 0) == (0xFF << 56) | 0x1AFFF
    assert reg_read(io, 0x10 + 48) == 0  # beyond pin 23


def test_iowin_needs_32bit_access() -> None:
    """As QEMU: IOWIN is accessed with 32-bit cycles; other sizes read 0 and are dropped."""
    io, _ = system()
    io.write(0x00, 1, 0x01)
    assert io.read(0x10, 2) == 0
    assert io.read(0x10, 4) == 0x00170020
    io.write(0x00, 4, 0x10)
    io.write(0x10, 2, 0x41)
    assert entry(io, 0) == MASKED


# -- edge ------------------------------------------------------------------------------------
def test_edge_pin_delivers_on_rising_edge_only() -> None:
    """82093AA 3.2.4: edge-sensitive pins deliver once per 0->1 transition."""
    io, (a, b) = system()
    program(io, 4, 0x34, dest=1)
    io.set_irq(4, True)
    assert b.highest_pending() == 0x34 and a.irr == 0
    assert service(b) == 0x34
    io.set_irq(4, True)
    assert b.irr == 0
    io.set_irq(4, False)
    io.set_irq(4, True)
    assert b.highest_pending() == 0x34
    assert not entry(io, 4) & REMOTE_IRR


def test_masked_edge_is_ignored_not_held() -> None:
    """82093AA 3.2.4 (mask): edges on a masked pin are neither delivered nor held."""
    io, (a, _) = system()
    program(io, 5, MASKED | 0x35)
    io.set_irq(5, True)
    io.set_irq(5, False)
    program(io, 5, 0x35)
    assert a.irr == 0


def test_logical_destination() -> None:
    """Destination mode 1: the destination field is matched against each LDR."""
    io, (a, b) = system()
    a.write(0xD0, 4, 0x01 << 24)
    b.write(0xD0, 4, 0x02 << 24)
    program(io, 6, LOGICAL | 0x36, dest=0x03)
    io.set_irq(6, True)
    assert a.highest_pending() == 0x36 and b.highest_pending() == 0x36


# -- level -----------------------------------------------------------------------------------
def test_level_remote_irr_and_redelivery_after_eoi() -> None:
    """82093AA 3.2.4: a level interrupt sets remote IRR when accepted and is not sent again
    until the EOI; a line still asserted then delivers again (no lost interrupt)."""
    io, (a, _) = system()
    program(io, 10, LEVEL | 0x3A)
    io.set_irq(10, True)
    assert entry(io, 10) & REMOTE_IRR
    assert a.tmr >> 0x3A & 1
    assert a.ack() == 0x3A
    io.set_irq(10, False)
    io.set_irq(10, True)  # remote IRR still set: nothing new
    assert a.irr == 0
    a.write(EOI, 4, 0)  # LAPIC EOI broadcast
    assert a.highest_pending() == 0x3A
    assert entry(io, 10) & REMOTE_IRR
    io.set_irq(10, False)
    assert service(a) == 0x3A
    assert not entry(io, 10) & REMOTE_IRR
    assert a.irr == 0


def test_eoi_register_clears_remote_irr() -> None:
    """IOAPIC version 0x20: writing a vector to the EOI register at +0x40 clears remote IRR
    of the level entries with that vector."""
    io, (a, _) = system()
    program(io, 11, LEVEL | 0x3B)
    io.set_irq(11, True)
    a.ack()
    io.write(0x40, 4, 0x3C)  # other vector: no effect
    assert entry(io, 11) & REMOTE_IRR
    io.set_irq(11, False)
    io.write(0x40, 4, 0x3B)
    assert not entry(io, 11) & REMOTE_IRR


def test_unmasking_asserted_level_pin_delivers() -> None:
    """A level pin asserted while masked delivers when it is unmasked."""
    io, (a, _) = system()
    program(io, 12, MASKED | LEVEL | 0x3C)
    io.set_irq(12, True)
    assert a.irr == 0
    program(io, 12, LEVEL | 0x3C)
    assert a.highest_pending() == 0x3C


def test_switch_to_edge_clears_remote_irr() -> None:
    """QEMU: an entry written edge-triggered loses its remote IRR (Linux's EOI fallback for
    IOAPICs without the EOI register)."""
    io, (a, _) = system()
    program(io, 13, LEVEL | 0x3D)
    io.set_irq(13, True)
    assert entry(io, 13) & REMOTE_IRR and a.irr >> 0x3D & 1
    program(io, 13, MASKED | 0x3D)
    assert not entry(io, 13) & REMOTE_IRR


def test_no_remote_irr_when_nobody_accepts() -> None:
    """Remote IRR is set when a local APIC accepts the interrupt; with no destination the
    entry stays free to deliver later."""
    io, (a, _) = system()
    program(io, 14, LEVEL | 0x3E, dest=7)
    io.set_irq(14, True)
    assert not entry(io, 14) & REMOTE_IRR and a.irr == 0


def test_nmi_entry_is_edge_whatever_trigger_says() -> None:
    """82093AA: NMI, SMI, INIT and ExtINT deliveries are edge-triggered."""
    io, (a, _) = system()
    program(io, 15, LEVEL | (4 << 8))
    io.set_irq(15, True)
    assert a.take_nmi()
    assert not entry(io, 15) & REMOTE_IRR


def test_extint_pin_follows_pic_intr() -> None:
    """ExtINT (virtual wire through the IOAPIC): the addressed APIC takes the PIC's vector
    while the pin is asserted."""
    io, (_, b) = system()
    program(io, 0, 7 << 8, dest=1)
    io.set_irq(0, True)
    assert b.extint_requested()
    io.set_irq(0, False)
    assert not b.extint_requested()
    io.set_irq(0, True)
    program(io, 0, MASKED | 7 << 8, dest=1)
    assert not b.extint_requested()


# -- the pc machine --------------------------------------------------------------------------
def qtest(m: PcMachine) -> tuple[QtestSession, list[str]]:
    out: list[str] = []
    return QtestSession(m, out.append), out


def test_qtest_window_and_pit_override_to_pin2() -> None:
    """The pc IOAPIC at 0xFEC00000; GSI 0 (the PIT) arrives at pin 2 (the MADT override) and
    `irq_intercept_in ioapic` numbers inputs by GSI as QEMU's does."""
    m = PcMachine(PcConfig(smp=1))
    s, out = qtest(m)
    assert ask(s, out, "writel 0xfec00000 0x1") == "OK\n"
    assert ask(s, out, "readl 0xfec00010") == "OK 0x0000000000170020\n"
    m.lapics[0].write(0xF0, 4, 0x1FF)
    assert ask(s, out, "writel 0xfec00000 0x14") == "OK\n"  # pin 2 low word
    assert ask(s, out, "writel 0xfec00010 0x30") == "OK\n"
    assert ask(s, out, "irq_intercept_in ioapic") == "OK\n"
    # PIT channel 0, mode 2, count 1000: OUT0 pulses GSI 0.
    for line in ("outb 0x43 0x34", "outb 0x40 0xe8", "outb 0x40 0x03"):
        assert ask(s, out, line) == "OK\n"
    reply = ask(s, out, "clock_step 2000000")
    assert "IRQ raise 0\n" in reply
    assert m.lapics[0].highest_pending() == 0x30


def test_qtest_level_pin_redelivers_after_lapic_eoi() -> None:
    """Through qtest: a level GSI asserted through `set_irq_in`, remote IRR visible in the
    entry, the EOI written to CPU 0's window clears it and the still-asserted line delivers
    again (IRR bit of vector 0x59 in IRR word 2 at 0xFEE00220)."""
    m = PcMachine(PcConfig(smp=1))
    s, out = qtest(m)
    for line in (
        "writel 0xfee000f0 0x1ff",
        "writel 0xfec00000 0x22",  # pin 9 low word
        "writel 0xfec00010 0x8059",  # level, vector 0x59
        "set_irq_in ioapic unnamed-gpio-in 9 1",
    ):
        assert ask(s, out, line) == "OK\n"
    assert ask(s, out, "readl 0xfec00010") == "OK 0x000000000000c059\n"  # remote IRR
    assert ask(s, out, "readl 0xfee00220") == "OK 0x0000000002000000\n"
    assert m.lapics[0].ack() == 0x59  # the CPU takes it
    assert ask(s, out, "readl 0xfee00220") == "OK 0x0000000000000000\n"
    assert ask(s, out, "writel 0xfee000b0 0") == "OK\n"
    assert ask(s, out, "readl 0xfee00220") == "OK 0x0000000002000000\n"
    assert ask(s, out, "set_irq_in ioapic unnamed-gpio-in 9 0") == "OK\n"
    assert m.lapics[0].ack() == 0x59
    assert ask(s, out, "writel 0xfee000b0 0") == "OK\n"
    assert ask(s, out, "readl 0xfec00010") == "OK 0x0000000000008059\n"


def test_pc_pins_16_to_19_and_cascade() -> None:
    """PIRQ GSIs 16-19 reach pins 16-19; GSI 2 is not wired to any pin."""
    m = PcMachine(PcConfig(smp=2))
    a = m.lapics[1]
    a.write(0xF0, 4, 0x1FF)
    program(m.ioapic, 17, LEVEL | 0x51, dest=1)
    line = m.gsi.input(17, "test")
    line.raise_()
    assert a.highest_pending() == 0x51
    program(m.ioapic, 2, 0x52, dest=1)
    gsi2 = m.gsi.input(2, "test")
    gsi2.raise_()
    assert not a.irr >> 0x52 & 1


# -- state -----------------------------------------------------------------------------------
def test_save_restore_round_trip() -> None:
    io, _ = system()
    program(io, 10, LEVEL | 0x3A, dest=0)
    io.set_irq(10, True)
    io.write(0x00, 4, 0x21)
    state = io.save()
    io2, _ = system()
    io2.restore(state)
    assert io2.save() == state
    assert io2.pin_lines[10].level


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("redir", [MASKED] * 23),
        ("redir", [MASKED | 1 << 20] + [MASKED] * 23),
        ("redir", [REMOTE_IRR] + [MASKED] * 23),  # remote IRR on an edge entry
        ("id", 16),
        ("lines", 1 << 24),
        ("version", 2),
    ],
)
def test_restore_rejects_impossible_states(key: str, value: object) -> None:
    io, _ = system()
    state = io.save()
    state[key] = value
    with pytest.raises(StateError):
        io.restore(state)


# -- Hypothesis ------------------------------------------------------------------------------
op = st.one_of(
    st.tuples(st.just("sel"), st.integers(0, 0xFF), st.just(0)),
    st.tuples(st.just("win"), st.integers(0, 0xFFFFFFFF), st.just(0)),
    st.tuples(st.just("mmio"), st.integers(0, 0xFFF), st.integers(0, 0xFFFFFFFF)),
    st.tuples(st.just("pin"), st.integers(0, 23), st.booleans()),
    st.tuples(st.just("cpu"), st.integers(0, 1), st.just(0)),
    st.tuples(st.just("eoi"), st.integers(0, 255), st.just(0)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(op, max_size=60))
def test_any_access_sequence_keeps_invariants(ops: list[Any]) -> None:
    io, lapics = system()
    for kind, x, y in ops:
        if kind == "sel":
            io.write(0, 4, x)
        elif kind == "win":
            io.write(0x10, 4, x)
        elif kind == "mmio":
            io.write(x & ~3, 4, y)
            assert 0 <= io.read(x & ~3, 4) <= 0xFFFFFFFF
        elif kind == "pin":
            io.set_irq(x, y)
        elif kind == "cpu":
            a = lapics[x]
            if a.highest_pending() is not None:
                service(a)
        else:
            io.eoi(x)
        for pin, e in enumerate(io.redir):
            assert not e & (1 << 12)  # delivery is synchronous: status always idle
            if e & REMOTE_IRR:
                assert e & LEVEL and (e >> 8) & 7 in (0, 1)
            assert io.pin_lines[pin].level == bool(io.lines >> pin & 1)
    state = io.save()
    io2, _ = system()
    io2.restore(state)
    assert io2.save() == state
