"""8254 PIT and port 0x61, driven through the port bus on the manual clock.

Rules cited from the Intel 82C54 datasheet (order 231244); "QEMU" means hw/timer/i8254*.c.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.bcd import to_bcd
from southbridge.core.clock import ManualClock
from southbridge.core.irq import IrqLine
from southbridge.core.portbus import PortBus
from southbridge.core.state import StateError
from southbridge.devices import pit as pit_mod
from southbridge.devices.pit import (
    DEFAULT_POLICY,
    NS_PER_SEC,
    PIT_HZ,
    LostTickPolicy,
    Pit,
    ticks_to_ns,
)
from southbridge.devices.port61 import REFRESH_PERIOD_NS

CTRL = 0x43


class Rig:
    """A PIT on a port bus with IRQ0 recorded: rising/falling instants of the line. With
    `ack` the recorder is also an interrupt controller that acknowledges each rising edge at
    once (what the "delay" policy paces on); without it the test acknowledges by hand."""

    def __init__(
        self,
        policy: LostTickPolicy = DEFAULT_POLICY,
        clock: ManualClock | None = None,
        ack: bool = True,
    ):
        self.clock = clock if clock is not None else ManualClock()
        self.auto_ack = ack
        self.line = IrqLine("irq0")
        self.rises: list[int] = []
        self.falls: list[int] = []
        self.line.connect(self._record)
        # The waveform tests follow OUT0 at any count: the rate clamp off (KVM's
        # min_timer_period_us=0); test_reinject.py covers the clamp.
        self.pit = Pit(self.clock, self.line, policy, min_period_ns=0)
        self.bus = PortBus()
        self.bus.register(0x40, 4, self.pit, "pit")
        self.bus.register(0x61, 1, self.pit.port61, "port61")
        self.rises.clear()
        self.falls.clear()
        self.t0 = 0

    def mark(self) -> None:
        """Remember now as the load instant that `after`/`edge` count pulses from."""
        self.t0 = self.clock.now()

    def after(self, ticks: int) -> None:
        """Move to the first nanosecond at which `ticks` pulses elapsed since the mark."""
        self.clock.set(self.edge(ticks))

    def edge(self, ticks: int) -> int:
        return self.t0 + ticks_to_ns(ticks)

    def _record(self, level: bool) -> None:
        (self.rises if level else self.falls).append(self.clock.now())
        if level and self.auto_ack:
            self.line.ack()

    def out(self, port: int, value: int) -> None:
        self.bus.write(port, 1, value)

    def inb(self, port: int) -> int:
        return self.bus.read(port, 1)

    def program(self, ch: int, mode: int, count: int, bcd: bool = False) -> None:
        """Control word with LSB-then-MSB access, then the count (datasheet, fig. 7)."""
        self.out(CTRL, ch << 6 | 3 << 4 | mode << 1 | int(bcd))
        self.out(0x40 + ch, count & 0xFF)
        self.out(0x40 + ch, count >> 8 & 0xFF)
        self.mark()

    def latched(self, ch: int) -> int:
        """Counter latch command (SC=ch, RW=00), then LSB and MSB from the output latch."""
        self.out(CTRL, ch << 6)
        return self.inb(0x40 + ch) | self.inb(0x40 + ch) << 8

    def status(self, ch: int) -> int:
        """Read-back with COUNT=1 (no count latch), STATUS=0, only this channel selected."""
        self.out(CTRL, 0xE0 | 2 << ch)
        return self.inb(0x40 + ch)

    def at_tick(self, ticks: int) -> None:
        """Move to the first nanosecond at which `ticks` pulses elapsed since time 0."""
        self.clock.set(ticks_to_ns(ticks))


def edge_ns(k: int) -> int:
    return ticks_to_ns(k)


# -- frequency and mode 2 ------------------------------------------------------------------


def test_tick_arithmetic_is_exact_at_1193182_hz() -> None:
    # One second holds exactly 1,193,182 input pulses.
    assert pit_mod.ns_to_ticks(NS_PER_SEC) == PIT_HZ
    assert pit_mod.ns_to_ticks(NS_PER_SEC - 1) == PIT_HZ - 1
    assert ticks_to_ns(PIT_HZ) == NS_PER_SEC
    for k in (1, 2, 1193, 65536, 10**9 + 7):
        t = ticks_to_ns(k)
        assert pit_mod.ns_to_ticks(t) == k and pit_mod.ns_to_ticks(t - 1) == k - 1


def test_mode2_count_1193_raises_irq0_every_999_847_us() -> None:
    """Mode 2: OUT high, low for one CLK when the count reaches 1, then high again and the
    count reloads, so IRQ0 rises every N pulses: 1193 / 1193182 s = 999.847 us."""
    r = Rig()
    r.program(0, 2, 1193)
    r.clock.advance(NS_PER_SEC)
    assert len(r.rises) == 1000  # 1000 periods of 999.847 us fit in one second, 1001 do not
    assert r.rises == [edge_ns(1193 * k) for k in range(1, 1001)]
    gaps = {b - a for a, b in zip(r.rises, r.rises[1:], strict=False)}
    assert gaps <= {999_847, 999_848}  # the exact period rounded to whole nanoseconds
    assert r.rises[-1] == 999_847_467  # 1000 * 1193 pulses, no accumulated drift
    # Low for exactly one CLK pulse before each rise.
    assert r.falls == [edge_ns(1193 * k - 1) for k in range(1, 1001)]


def test_mode2_counts_down_and_reloads() -> None:
    """Mode 2 count sequence: N, N-1, ... 1, then reload N (datasheet, mode 2)."""
    r = Rig()
    r.program(0, 2, 100)
    r.at_tick(1)
    assert r.latched(0) == 99
    r.at_tick(99)
    assert r.latched(0) == 1
    assert not r.pit.out(0)
    r.at_tick(100)
    assert r.latched(0) == 100
    assert r.pit.out(0)
    r.at_tick(250)
    assert r.latched(0) == 50


def test_mode2_new_count_takes_effect_at_end_of_period() -> None:
    """Mode 2: "writing a new count while counting does not affect the current counting
    sequence ... the new count will be loaded at the end of the current counting cycle"; null
    count stays 1 until CR is transferred to CE."""
    r = Rig()
    r.program(0, 2, 1000)
    r.at_tick(300)
    r.out(0x40, 500 & 0xFF)
    r.out(0x40, 500 >> 8)
    assert r.status(0) & 0x40  # null count: new count not yet in CE
    assert r.latched(0) == 700  # still the old sequence
    r.at_tick(1000)
    assert not r.status(0) & 0x40
    assert r.latched(0) == 500
    r.clock.set(edge_ns(2600))
    assert r.rises == [edge_ns(1000), edge_ns(1500), edge_ns(2000), edge_ns(2500)]


# -- mode 0 ----------------------------------------------------------------------------------


def test_mode0_one_shot_interrupt_on_terminal_count() -> None:
    """Mode 0: OUT low after the control word and remains low until the counter reaches zero,
    then high until a new count or control word; the counter wraps and keeps counting."""
    r = Rig()
    r.out(CTRL, 0x30)  # channel 0, LSB then MSB, mode 0
    assert not r.line.level
    r.out(0x40, 0x10)
    r.out(0x40, 0x27)  # 10000 pulses
    r.clock.advance(ticks_to_ns(9999))
    assert not r.line.level and r.rises == []
    r.clock.set(edge_ns(10000))
    assert r.line.level and r.rises == [edge_ns(10000)]
    r.at_tick(10001)
    assert r.latched(0) == 0xFFFF  # wrapped after terminal count
    r.clock.advance(NS_PER_SEC)
    assert r.rises == [edge_ns(10000)]  # one shot, not periodic


def test_mode0_first_byte_stops_counting_and_drops_out() -> None:
    """Mode 0, two-byte count: "writing the first byte disables counting. OUT is set low
    immediately"; writing the second byte loads the new count."""
    r = Rig()
    r.program(0, 0, 100)
    r.at_tick(150)
    assert r.line.level
    r.out(0x40, 50)
    assert not r.line.level
    held = r.latched(0)
    r.at_tick(400)
    assert r.latched(0) == held
    r.out(0x40, 0)
    r.mark()
    r.after(49)
    assert not r.line.level
    r.after(50)
    assert r.line.level


def test_mode0_gate_low_pauses_count() -> None:
    """Mode 0 gate: 0 disables counting, 1 enables it (datasheet, Gate Pin Operations)."""
    r = Rig()
    r.program(0, 0, 1000)
    r.at_tick(200)
    r.pit.set_gate(0, False)
    r.at_tick(5000)
    assert r.latched(0) == 800 and not r.line.level
    r.pit.set_gate(0, True)
    r.mark()
    r.after(799)
    assert not r.line.level
    r.after(800)
    assert r.line.level and r.rises == [r.edge(800)]


# -- mode 1 (channel 2 gated through port 0x61) -------------------------------------------


def test_mode1_one_shot_triggered_by_gate_rising_edge() -> None:
    """Mode 1: OUT high; a gate rising edge loads the count, OUT goes low and returns high
    when the counter reaches zero; retriggerable (datasheet, mode 1)."""
    r = Rig()
    r.program(2, 1, 500)
    assert r.inb(0x61) & 0x20  # OUT2 high before any trigger
    assert r.status(2) & 0x40  # null count until the trigger loads CE
    r.at_tick(1000)
    assert r.inb(0x61) & 0x20
    r.out(0x61, 0x01)  # gate 2 rising: trigger
    r.mark()
    assert not r.inb(0x61) & 0x20
    assert not r.status(2) & 0x40
    r.after(499)
    assert not r.inb(0x61) & 0x20
    assert r.latched(2) == 1
    r.after(500)
    assert r.inb(0x61) & 0x20
    r.after(2000)
    assert r.inb(0x61) & 0x20  # stays high: one shot
    # Retrigger mid-pulse restarts the full count.
    r.out(0x61, 0x00)
    r.out(0x61, 0x01)
    r.after(2300)
    r.out(0x61, 0x00)
    r.out(0x61, 0x01)
    r.mark()
    r.after(499)
    assert not r.inb(0x61) & 0x20
    r.after(500)
    assert r.inb(0x61) & 0x20


def test_mode1_on_channel0_drives_one_irq() -> None:
    r = Rig()
    r.program(0, 1, 300)
    r.clock.advance(ticks_to_ns(1000))
    assert r.rises == [] and r.line.level  # gate held high: no rising edge, no trigger
    r.pit.set_gate(0, False)
    r.at_tick(2000)
    r.pit.set_gate(0, True)
    r.mark()
    assert not r.line.level
    r.clock.advance(NS_PER_SEC // 10)
    assert r.rises == [r.edge(300)]


# -- mode 3 ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1000, 1001, 2, 3, 65536])
def test_mode3_square_wave_duty(n: int) -> None:
    """Mode 3: even N, OUT high N/2 and low N/2; odd N, high (N+1)/2 and low (N-1)/2."""
    r = Rig()
    r.program(0, 3, n & 0xFFFF)
    r.clock.set(edge_ns(4 * n) + 1)
    high = (n + 1) // 2
    assert r.falls == [edge_ns(k * n + high) for k in range(4)]
    assert r.rises == [edge_ns(k * n) for k in range(1, 5)]


def test_mode3_counts_down_by_two() -> None:
    """Mode 3 even count: decremented by two on each CLK; odd count: N, N-1 then by two,
    reloaded at expiry and decremented by three first in the low half (datasheet, mode 3)."""
    r = Rig()
    r.program(0, 3, 10)
    seen = []
    for k in range(10):
        r.at_tick(k)
        seen.append(r.latched(0))
    assert seen == [10, 8, 6, 4, 2, 10, 8, 6, 4, 2]
    r.program(0, 3, 7)
    base = r.clock.now()
    seen = []
    for k in range(7):
        r.clock.set(base + ticks_to_ns(k))
        seen.append(r.latched(0))
    assert seen == [7, 6, 4, 2, 7, 4, 2]


def test_mode3_gate_low_forces_out_high_and_rising_reloads() -> None:
    """Modes 2/3 gate: low disables counting and sets OUT high immediately; a rising edge
    reloads the count (datasheet, Gate Pin Operations Summary)."""
    r = Rig()
    r.program(0, 3, 100)
    r.at_tick(60)
    assert not r.line.level
    r.pit.set_gate(0, False)
    assert r.line.level
    r.at_tick(1000)
    assert len(r.rises) == 1
    r.pit.set_gate(0, True)
    r.mark()
    assert r.latched(0) == 100
    r.after(50)
    assert not r.line.level
    r.after(100)
    assert r.rises[-1] == r.edge(100)


# -- modes 4 and 5 ---------------------------------------------------------------------------


def test_mode4_software_strobe() -> None:
    """Mode 4: OUT high; when the initial count expires OUT goes low for one CLK pulse."""
    r = Rig()
    r.program(0, 4, 50)
    r.clock.advance(NS_PER_SEC // 100)
    assert r.falls == [edge_ns(50)] and r.rises == [edge_ns(51)]


def test_mode5_hardware_strobe_on_gate_trigger() -> None:
    """Mode 5: counting starts on a gate rising edge; a one-pulse low strobe at expiry."""
    r = Rig()
    r.program(2, 5, 40)
    r.at_tick(500)
    assert r.inb(0x61) & 0x20
    r.out(0x61, 1)
    r.at_tick(539)
    assert r.inb(0x61) & 0x20
    r.at_tick(540)
    assert not r.inb(0x61) & 0x20
    r.at_tick(541)
    assert r.inb(0x61) & 0x20


# -- access modes, BCD, latch and read-back -----------------------------------------------


def test_lsb_only_and_msb_only_access() -> None:
    """RW=01 reads/writes the LSB only, RW=10 the MSB only (the other byte is 0)."""
    r = Rig()
    r.out(CTRL, 0x10)  # channel 0, LSB only, mode 0
    r.out(0x40, 0x80)
    r.at_tick(0x10)
    assert r.inb(0x40) == 0x70 and r.inb(0x40) == 0x70
    r.out(CTRL, 0x20)  # MSB only
    r.out(0x40, 0x02)  # count 0x200
    t0 = r.clock.now()
    r.clock.set(t0 + ticks_to_ns(0x100))
    assert r.inb(0x40) == 0x01


def test_bcd_counting() -> None:
    """BCD=1: the count is four decades; 0 means 10^4 (datasheet, control word BCD bit)."""
    r = Rig()
    r.program(0, 2, 0x1000, bcd=True)  # 1000 decimal
    r.at_tick(1)
    assert r.latched(0) == 0x0999
    r.at_tick(2000)
    assert r.rises == [edge_ns(1000), edge_ns(2000)]
    r.program(0, 0, 0x0000, bcd=True)  # 10000
    t0 = r.clock.now()
    r.clock.set(t0 + ticks_to_ns(1))
    assert r.latched(0) == 0x9999
    r.clock.set(t0 + ticks_to_ns(10001))
    assert r.latched(0) == 0x9999  # wraps in BCD


def test_counter_latch_holds_value_while_counting() -> None:
    """Counter latch: the output latch holds the count until read (or the counter is
    reprogrammed); a second latch before reading is ignored."""
    r = Rig()
    r.program(0, 2, 5000)
    r.at_tick(1234)
    r.out(CTRL, 0x00)
    r.at_tick(2000)
    r.out(CTRL, 0x00)  # ignored: already latched
    assert r.inb(0x40) | r.inb(0x40) << 8 == 5000 - 1234
    # Unlatched reads follow the counter live; the read flip-flop alternates LSB and MSB.
    lsb = r.inb(0x40)
    r.at_tick(3000)
    msb = r.inb(0x40)
    assert lsb == (5000 - 2000) & 0xFF and msb == (5000 - 3000) >> 8


def test_read_back_status_and_count_of_several_channels_while_counting() -> None:
    """Read-back command (11 COUNT STATUS CNT2 CNT1 CNT0 0): latches the selected counters'
    status and count at once; status is read first; latches hold while counting goes on."""
    r = Rig()
    r.program(0, 2, 1193)
    r.program(1, 0, 0x4000)
    r.program(2, 3, 0x100, bcd=False)
    r.out(0x61, 1)
    r.at_tick(100)
    r.out(CTRL, 0xC0 | 0b1110)  # latch count and status of channels 0, 1, 2
    r.at_tick(900)  # counting continues; the latches do not
    s0, c0 = r.inb(0x40), r.inb(0x40) | r.inb(0x40) << 8
    s1, c1 = r.inb(0x41), r.inb(0x41) | r.inb(0x41) << 8
    s2, c2 = r.inb(0x42), r.inb(0x42) | r.inb(0x42) << 8
    # Status: OUT, NULL COUNT, RW1 RW0, M2 M1 M0, BCD.
    assert s0 == 0x80 | 0x30 | 2 << 1
    assert s1 == 0x30 | 0 << 1  # mode 0, OUT still low
    assert c0 == 1193 - 100 and c1 == 0x4000 - 100
    assert s2 & 0x3F == 0x30 | 3 << 1
    assert c2 % 2 == 0  # mode 3 counts by two
    # After reading, the counters read live again.
    assert r.latched(0) == 1193 - 900


def test_read_back_status_only_and_null_count() -> None:
    """Null count is 1 from the control word until the count reaches CE; a status latched
    twice keeps the first value (datasheet, read-back and null count)."""
    r = Rig()
    r.out(CTRL, 0x74)  # channel 1, LSB/MSB, mode 2
    r.out(CTRL, 0xE4)  # read-back status of channel 1 only
    r.out(CTRL, 0xE4)  # ignored until read
    r.out(0x41, 10)
    r.out(0x41, 0)
    st = r.inb(0x41)
    assert st == 0x80 | 0x40 | 0x30 | 2 << 1  # OUT high, null count set, mode 2
    assert r.status(1) == 0x80 | 0x30 | 2 << 1  # now loaded
    r.out(CTRL, 0xD4)  # read-back count only (STATUS bit set), channel 1
    r.at_tick(7)
    assert r.inb(0x41) | r.inb(0x41) << 8 == 10  # latched at load, read later


def test_mode_word_aliases_and_control_port_is_write_only() -> None:
    """Modes x10 and x11 are modes 2 and 3 (datasheet, control word M2 "X"); reading the
    control register is a no-op with the bus in 3-state."""
    r = Rig()
    r.out(CTRL, 0x3C)  # M = 110
    r.out(0x40, 100)
    r.out(0x40, 0)
    r.at_tick(250)
    assert r.rises == [edge_ns(100), edge_ns(200)]
    assert r.inb(0x43) == 0xFF


def test_illegal_guest_values_are_answered_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """Count 1 is illegal in modes 2/3 and BCD counts need decimal digits: the part still
    counts (OUT stays put rather than oscillating at the CLK rate) and the oddity is logged."""
    r = Rig()
    with caplog.at_level("WARNING", logger="southbridge.pit"):
        r.program(0, 2, 1)
        r.program(1, 0, 0x00FA, bcd=True)  # "FA": not decimal, counts as 15*10 + 10
    assert any("illegal" in m for m in caplog.messages)
    assert any("non-BCD" in m for m in caplog.messages)
    assert r.pit._timer.deadline is None  # no 1.19 MHz timer for the illegal count
    r.after(100)
    assert r.latched(1) == to_bcd(160 - 100, 4)


def test_reset_returns_to_qemu_power_on_state() -> None:
    """pit_reset_common: every channel mode 3 with count 0x10000; gate 2 low."""
    r = Rig()
    r.program(0, 0, 5)
    r.out(0x61, 0x0F)
    r.pit.reset()
    assert r.status(0) == 0x80 | 0x30 | 3 << 1
    assert r.line.level and r.rises == [0]  # mode 0 OUT was low: reset raises it
    r.rises.clear()
    assert r.inb(0x61) & 0x0F == 0
    r.clock.advance(NS_PER_SEC)
    assert len(r.rises) == 18  # 1193182 / 65536 = 18.2 Hz


# -- port 0x61 -----------------------------------------------------------------------------


def test_port61_out2_toggles_as_channel2_counts() -> None:
    """Port 0x61 bit 5 reflects OUT2: in mode 3 it follows the square wave once bit 0 (gate
    2) is set, and stays high while the gate is low."""
    r = Rig()
    r.program(2, 3, 1000)
    samples = []
    for k in range(0, 4000, 250):
        r.at_tick(k)
        samples.append(bool(r.inb(0x61) & 0x20))
    assert all(samples)  # gate 2 low: mode 3 OUT forced high
    r.out(0x61, 0x03)  # gate on, speaker data on
    t0 = r.clock.now()
    levels = []
    for k in range(0, 3000, 250):
        r.clock.set(t0 + ticks_to_ns(k))
        levels.append(bool(r.inb(0x61) & 0x20))
    assert levels == [True, True, False, False] * 3
    assert r.inb(0x61) & 0x03 == 0x03


def test_port61_refresh_toggle_every_15_085_us() -> None:
    """Bit 4 toggles on each refresh request, every 15.085 us, independent of reads."""
    r = Rig()
    bits = []
    for t in (0, 15_084, 15_085, 30_169, 30_170, 45_255):
        r.clock.set(t)
        bits.append(r.inb(0x61) >> 4 & 1)
        bits.append(r.inb(0x61) >> 4 & 1)  # a second read does not toggle it
    assert bits == [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1]
    assert REFRESH_PERIOD_NS == 15_085


def test_port61_writable_and_read_only_bits() -> None:
    """Bits 0-3 are read/write; 4-7 are read-only (status), with no NMI source bits 6/7 = 0."""
    r = Rig()
    r.out(0x61, 0xFF)
    v = r.inb(0x61)
    assert v & 0x0F == 0x0F and v & 0xC0 == 0
    r.out(0x61, 0x0C)
    assert r.inb(0x61) & 0x0F == 0x0C
    assert not r.pit.channels[2].gate


# -- lost ticks ----------------------------------------------------------------------------


class StallClock(ManualClock):
    """A manual clock whose timer thread can stall: time moves on, callbacks run late."""

    def stall(self, ns: int) -> None:
        self._now += ns
        self.set(self._now)  # overdue timers now fire, each seeing the late `now`


def stalled_run(policy: LostTickPolicy) -> Rig:
    r = Rig(policy, StallClock())
    r.program(0, 2, 1193)
    r.clock.advance(10_000_000)  # 10 edges on time
    assert isinstance(r.clock, StallClock)
    r.clock.stall(50_000_000)  # 50 edges fall due while the host is stalled
    return r


def test_default_lost_tick_policy_is_qemus_delay() -> None:
    # QEMU hw/i386/kvm/i8254.c: DEFINE_PROP_LOSTTICKPOLICY(..., LOST_TICK_POLICY_DELAY).
    assert DEFAULT_POLICY == "delay"
    assert Pit(ManualClock()).policy == "delay"
    with pytest.raises(ValueError):
        Pit(ManualClock(), policy="slow")  # type: ignore[arg-type]


def test_lost_ticks_discard_skips_missed_periods() -> None:
    r = stalled_run("discard")
    late = r.clock.now()
    assert len(r.rises) == 11 and r.rises[-1] == late  # one delivered late, 49 dropped
    assert r.pit.dropped_ticks == 49
    r.clock.advance(10_000_000)
    # Back on the original grid: the phase of the counter is untouched.
    assert r.rises[11:] == [edge_ns(1193 * k) for k in range(61, 71)]


def test_lost_ticks_delay_delivers_every_tick_late() -> None:
    r = stalled_run("delay")
    late = r.clock.now()
    assert len(r.rises) == 60
    assert r.rises[10:] == [late] * 50  # each in its own callback, re-armed immediately
    assert r.pit.late_ticks == 49
    r.clock.advance(10_000_000)
    assert r.rises[60:] == [edge_ns(1193 * k) for k in range(61, 71)]


def test_lost_ticks_catchup_delivers_missed_quickly_then_resyncs() -> None:
    r = stalled_run("catchup")
    late = r.clock.now()
    assert len(r.rises) == 11
    period = ticks_to_ns(1193)
    r.clock.advance(period * 20)
    burst = [t for t in r.rises[11:] if t < late + period * 20]
    # 49 owed plus the 20 edges of the window, at up to four per period, never two at once.
    assert len(burst) == 49 + 20
    assert len(set(burst)) == len(burst)
    assert r.pit._owed == 0
    r.clock.advance(10_000_000)
    # All edges due by now were delivered, and the last ones are on the grid again.
    due = pit_mod.ns_to_ticks(r.clock.now()) // 1193
    assert len(r.rises) == due
    assert r.rises[-5:] == [edge_ns(1193 * k) for k in range(due - 4, due + 1)]


def test_counter_reads_are_real_time_whatever_the_policy() -> None:
    for policy in pit_mod.LOST_TICK_POLICIES:
        r = stalled_run(policy)
        ticks = pit_mod.ns_to_ticks(r.clock.now())
        assert r.latched(0) == 1193 - ticks % 1193


def test_short_stall_loses_no_edge_under_discard() -> None:
    """A callback late by less than a period still delivers the rising edge (mode 2's low
    pulse is one CLK: the fall and the rise are handled by the same late callback)."""
    r = Rig("discard", StallClock())
    r.program(0, 2, 1193)
    assert isinstance(r.clock, StallClock)
    for _ in range(20):
        r.clock.advance(ticks_to_ns(1190))
        r.clock.stall(300_000)
    assert r.pit.dropped_ticks == 0
    assert len(r.rises) == pit_mod.ns_to_ticks(r.clock.now()) // 1193


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(pit_mod.LOST_TICK_POLICIES),
    st.sampled_from([1193, 2000, 4771]),
    st.lists(st.tuples(st.integers(0, 5_000_000), st.integers(0, 20_000_000)), max_size=5),
)
def test_lost_tick_policies_conserve_or_count_every_edge(
    policy: LostTickPolicy, n: int, stalls: list[tuple[int, int]]
) -> None:
    """Whatever the stalls: delay and catchup deliver every edge OUT0 produced (once the debt
    is paid), discard delivers or counts each as dropped; the line never has two edges at
    once under discard."""
    clock = StallClock()
    r = Rig(policy, clock)
    r.program(0, 2, n)
    for run, stall in stalls:
        clock.advance(run)
        clock.stall(stall)
    clock.advance(NS_PER_SEC)  # on time again: enough for catchup to pay its debt
    ideal = pit_mod.ns_to_ticks(clock.now() - r.t0) // n
    assert r.pit._owed == 0
    if policy == "discard":
        assert len(r.rises) + r.pit.dropped_ticks == ideal
        assert len(set(r.rises)) == len(r.rises)
    else:
        assert len(r.rises) == ideal
    assert r.line.level == r.pit.out(0)


# -- state ---------------------------------------------------------------------------------


def test_save_restore_mid_count_continues_identically() -> None:
    r = Rig()
    r.program(0, 2, 1193)
    r.program(2, 3, 777)
    r.out(0x61, 0x03)
    r.at_tick(5000)
    r.out(0x42, 0x12)  # pending count (mode 3: loaded at the end of the half-cycle)
    r.out(0x42, 0x01)
    r.out(CTRL, 0xC2 | 0x20)  # latch status of channel 0 only
    state = r.pit.save()
    seen = len(r.rises)
    r2 = Rig(clock=ManualClock(r.clock.now() + 123))
    r2.pit.restore(state)
    assert r2.pit.save() == state
    assert r2.inb(0x40) == r.inb(0x40)
    for k in (5500, 9000, 20000):
        r.at_tick(k)
        r2.clock.set(edge_ns(k) + 123)
        assert r.latched(0) == r2.latched(0)
        assert r.latched(2) == r2.latched(2)
        assert r.inb(0x61) & 0x2F == r2.inb(0x61) & 0x2F
    # Same IRQ0 edges, shifted by the restored clock's offset.
    assert [t + 123 for t in r.rises[seen:]] == r2.rises and len(r2.rises) == 12
    assert r2.line.level == r2.pit.out(0)


def bad_states() -> Iterator[tuple[str, Any]]:
    good = Pit(ManualClock()).save()

    def variant(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
        import copy

        s = copy.deepcopy(good)
        obj = s
        for p in path[:-1]:
            obj = obj[p]
        obj[path[-1]] = value
        return s

    yield "kind", variant(("kind",), "i8259")
    yield "version", variant(("version",), 99)
    yield "channels", variant(("channels",), [])
    yield "rw", variant(("channels", 0, "rw"), 0)
    yield "mode", variant(("channels", 0, "mode"), 8)
    yield "count", variant(("channels", 1, "n"), 0)
    yield "cr", variant(("channels", 1, "cr"), 0x10000)
    yield "bool", variant(("channels", 2, "gate"), 1)
    yield "future base", variant(("channels", 0, "base_rel_ns"), 5)
    yield "latch state", variant(("channels", 0, "latch_state"), 3)
    yield "pending in mode 3 idle", variant(("channels", 0, "switch_d"), 10)
    yield "owed", variant(("owed",), -1)
    yield "port61", variant(("port61", "bits"), 0x10)
    s = variant(("channels", 0, "write_msb_next"), True)
    s["channels"][0]["rw"] = 1
    yield "flip-flop", s
    s = variant(("channels", 0, "base_d"), -(10**9))
    yield "negative elapsed", s
    s = variant(("channels", 0, "mode"), 1)
    s["channels"][0]["cr_valid"] = False
    s["channels"][0]["null_count"] = True
    yield "triggered without count", s


@pytest.mark.parametrize("what,state", list(bad_states()))
def test_restore_rejects_impossible_states(what: str, state: Any) -> None:
    r = Rig()
    r.program(0, 2, 1193)
    before = r.pit.save()
    with pytest.raises(StateError):
        r.pit.restore(state)
    assert r.pit.save() == before  # nothing changed


# -- Hypothesis ----------------------------------------------------------------------------

ops = st.one_of(
    st.tuples(st.just("out"), st.integers(0x40, 0x43), st.integers(0, 0xFF)),
    st.tuples(st.just("out"), st.just(0x43), st.sampled_from([0x34, 0x36, 0x30, 0xB6, 0xC2])),
    st.tuples(st.just("in"), st.integers(0x40, 0x43), st.just(0)),
    st.tuples(st.just("out61"), st.just(0x61), st.integers(0, 0xFF)),
    st.tuples(st.just("in61"), st.just(0x61), st.just(0)),
    st.tuples(st.just("gate0"), st.just(0), st.booleans().map(int)),
    st.tuples(st.just("wait"), st.just(0), st.integers(0, 200_000)),
    st.tuples(st.just("save"), st.just(0), st.just(0)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(ops, max_size=40))
def test_any_access_sequence_never_raises_and_invariants_hold(
    seq: list[tuple[str, int, int]],
) -> None:
    r = Rig()
    for op, port, value in seq:
        if op in ("out", "out61"):
            r.out(port, value)
        elif op in ("in", "in61"):
            assert 0 <= r.inb(port) <= 0xFF
        elif op == "gate0":
            r.pit.set_gate(0, bool(value))
        elif op == "wait":
            r.clock.advance(value)
        else:
            state = r.pit.save()
            other = Pit(r.clock)
            other.restore(state)
            assert other.save() == state
        # On the manual clock IRQ0 always equals OUT0, and the timer is armed exactly when
        # OUT0 has a future edge.
        assert r.line.level == r.pit.out(0)
        nxt = r.pit.channels[0].next_edge_ns(r.clock.now())
        assert (r.pit._timer.deadline is None) == (nxt is None)
        if nxt is not None:
            assert nxt > r.clock.now()
        for ch in r.pit.channels:
            assert 0 <= ch.value(r.clock.now()) <= 0x10000
            assert ch.elapsed(r.clock.now()) >= 0
    state = r.pit.save()
    r.pit.restore(state)
    assert r.pit.save() == state


# -- cross-check against a ticking reference model -----------------------------------------


class RefChannel:
    """The datasheet's sequences simulated one CLK pulse at a time (what the closed-form
    model must agree with), with the same "count loads at the write" simplification."""

    def __init__(self) -> None:
        self.mode, self.cr, self.n, self.cnt = 3, 0x10000, 0x10000, 0x10000
        self.gate, self.active, self.out, self.pending, self.fired = True, True, True, False, False
        self.cr_valid = True

    def control(self, mode: int) -> None:
        self.mode, self.active, self.cr_valid, self.pending = mode, False, False, False
        self.out = mode != 0

    def count(self, n: int) -> None:
        self.cr, self.cr_valid = n, True
        m = self.mode
        if m in (0, 4) or (m in (2, 3) and not self.active):
            self._load()
        elif m in (2, 3):
            self.pending = True

    def _load(self) -> None:
        self.n = self.cnt = self.cr
        self.active, self.pending, self.fired = True, False, False
        self.out = self.mode != 0 and self.mode != 1

    def set_gate(self, g: bool) -> None:
        if g == self.gate:
            return
        self.gate = g
        if self.mode in (2, 3) and not g:
            self.out = True
        if g and self.cr_valid and self.mode in (1, 2, 3, 5):
            self._load()

    def tick(self) -> None:
        m = self.mode
        if not self.active or (m in (0, 2, 3, 4) and not self.gate):
            return
        if m in (0, 1):
            self.cnt = (self.cnt - 1) % 0x10000
            if self.cnt == 0:
                self.out = True
        elif m == 2:
            self.cnt -= 1
            if self.cnt == 1:
                self.out = False
            elif self.cnt == 0:
                self.cnt = self.n = self.cr if self.pending else self.n
                self.pending, self.out = False, True
        elif m == 3:
            self.cnt -= (1 if self.out else 3) if self.cnt % 2 else 2
            if self.cnt <= 0:
                self.out = not self.out
                self.cnt = self.n = self.cr if self.pending else self.n
                self.pending = False
        else:
            self.cnt = (self.cnt - 1) % 0x10000
            if not self.out:
                self.out = True
            elif self.cnt == 0 and not self.fired:
                self.out, self.fired = False, True


@contextmanager
def one_tick_per_ns() -> Iterator[None]:
    # Scale the input clock so that one CLK pulse is one nanosecond: the reference can then
    # be compared at every pulse. The rounding at 1.193182 MHz is tested separately above.
    with mock.patch.object(pit_mod, "PIT_HZ", NS_PER_SEC):
        yield


ref_ops = st.one_of(
    st.tuples(st.just("control"), st.integers(0, 5)),
    st.tuples(st.just("count"), st.integers(2, 23)),
    st.tuples(st.just("gate"), st.integers(0, 1)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(ref_ops, st.integers(0, 40)), min_size=1, max_size=12))
def test_closed_form_matches_ticking_reference(steps: list[tuple[tuple[str, int], int]]) -> None:
    with one_tick_per_ns():
        r = Rig()
        ref = RefChannel()
        ref_rises = 0
        for (op, arg), wait in steps:
            before = ref.out
            if op == "control":
                r.out(CTRL, 0x30 | arg << 1)
                ref.control(arg)
            elif op == "count":
                r.out(0x40, arg)
                r.out(0x40, 0)
                ref.count(arg)
            else:
                r.pit.set_gate(0, bool(arg))
                ref.set_gate(bool(arg))
            ref_rises += not before and ref.out
            for _ in range(wait + 1):
                assert r.pit.out(0) == ref.out == r.line.level
                if ref.active:
                    assert r.pit.channels[0].value(r.clock.now()) % 0x10000 == ref.cnt % 0x10000
                assert len(r.rises) == ref_rises
                before = ref.out
                r.clock.advance(1)
                ref.tick()
                ref_rises += not before and ref.out
