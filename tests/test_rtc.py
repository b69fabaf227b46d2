"""MC146818A RTC/CMOS driven through the port bus on the manual clock.

Rules cited from the Motorola MC146818A datasheet ("DS" below); "QEMU" means
hw/rtc/mc146818rtc.c and tests/qtest/rtc-test.c, the peer.
"""

from __future__ import annotations

import calendar
import logging
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.clock import ManualClock
from southbridge.core.irq import IrqLine
from southbridge.core.portbus import PortBus
from southbridge.core.state import StateError
from southbridge.devices import rtc_time as rt
from southbridge.devices.rtc import DEFAULT_POLICY, Rtc, period_ticks

NS = 1_000_000_000
SEC, SEC_AL, MIN, MIN_AL, HOUR, HOUR_AL, WDAY, MDAY, MON, YEAR = range(10)
A, B, C, D, CENTURY = 0x0A, 0x0B, 0x0C, 0x0D, 0x32
SET, PIE, AIE, UIE, DM, H24, DSE = 0x80, 0x40, 0x20, 0x10, 0x04, 0x02, 0x01
IRQF, PF, AF, UF = 0x80, 0x40, 0x20, 0x10
BASE = "2024-03-10T12:34:56"  # a Sunday


class Rig:
    """An RTC at 0x70-0x73 on a port bus, IRQ8 rising/falling instants recorded."""

    def __init__(self, base: str = BASE, policy: str = DEFAULT_POLICY, start: int = 0) -> None:
        self.clock = ManualClock(start)
        self.line = IrqLine("irq8")
        self.rises: list[int] = []
        self.falls: list[int] = []
        self.line.connect(lambda lv: (self.rises if lv else self.falls).append(self.clock.now()))
        self.rtc = Rtc(self.clock, self.line, base=base, lost_tick_policy=policy)
        self.bus = PortBus()
        self.bus.register(0x70, 4, self.rtc, "rtc")

    def rd(self, index: int) -> int:
        self.bus.write(0x70, 1, index)
        return self.bus.read(0x71, 1)

    def wr(self, index: int, value: int) -> None:
        self.bus.write(0x70, 1, index)
        self.bus.write(0x71, 1, value)

    def at(self, ns: int) -> None:
        self.clock.set(ns)

    def time(self) -> tuple[int, ...]:
        return tuple(self.rd(i) for i in (YEAR, MON, MDAY, HOUR, MIN, SEC))

    def set_time(self, regs: dict[int, int]) -> None:
        """The documented way to set the clock (DS, "SET"): SET=1, write, SET=0."""
        b = self.rd(B)
        self.wr(B, b | SET)
        for i, v in regs.items():
            self.wr(i, v)
        self.wr(B, b & ~SET)

    def ack_on_raise(self) -> None:
        """A guest ISR: read C each time IRQ8 rises (as Linux's rtc_interrupt does)."""

        def isr(level: bool) -> None:
            if level:
                self.rd(C)

        self.line.connect(isr)


def edge_ns(k: int, rs: int) -> int:
    """Instant (ns) of the k-th periodic edge from a second boundary at clock 0."""
    return -(-k * period_ticks(rs) * NS // 32768)


# -- reset values and ports ------------------------------------------------------------------
def test_power_on_registers_match_qemu_and_ds() -> None:
    # QEMU rtc_realizefn / issue: A=0x26, B=0x02, C=0x00, D=0x80 (VRT: battery good).
    r = Rig()
    assert [r.rd(i) for i in (A, B, C, D)] == [0x26, 0x02, 0x00, 0x80]
    # The base date in BCD, 24-hour; 2024-03-10 is a Sunday (day-of-week 1 = Sunday, DS).
    assert r.time() == (0x24, 0x03, 0x10, 0x12, 0x34, 0x56)
    assert r.rd(WDAY) == 0x01 and r.rd(CENTURY) == 0x20
    assert not r.line.level and r.clock.next_deadline() is None  # nothing enabled, no timer


def test_index_bit7_is_nmi_mask_and_index_ports_read_ff() -> None:
    r = Rig()
    r.bus.write(0x70, 1, 0x8A)
    assert r.rtc.nmi_masked and r.bus.read(0x71, 1) == 0x26  # index is bits 6-0
    r.bus.write(0x70, 1, 0x0D)
    assert not r.rtc.nmi_masked and r.bus.read(0x71, 1) == 0x80
    assert r.bus.read(0x70, 1) == 0xFF and r.bus.read(0x72, 1) == 0xFF  # write-only (QEMU)


def test_second_bank_is_separate_nvram() -> None:
    r = Rig()
    r.bus.write(0x72, 1, 0x0A)
    r.bus.write(0x73, 1, 0x5A)  # bank 1 byte 0x0A is plain RAM, not register A
    assert r.rd(A) == 0x26
    r.bus.write(0x72, 1, 0x8A)  # 7-bit index
    assert r.bus.read(0x73, 1) == 0x5A
    assert r.rtc.cmos_get(0x8A) == 0x5A


def test_c_and_d_are_read_only_and_d_reads_vrt() -> None:
    r = Rig()
    r.wr(C, 0xFF)
    r.wr(D, 0x00)
    assert r.rd(C) == 0 and r.rd(D) == 0x80
    r.wr(A, 0xA6)  # UIP is read-only
    assert r.rd(A) == 0x26


# -- periodic interrupt --------------------------------------------------------------------------
@pytest.mark.parametrize("rs", range(1, 16))
def test_periodic_interrupt_at_every_rate(rs: int) -> None:
    # DS table 5 (32.768 kHz): RS 3-15 -> 2**(RS-1) cycles (122.070 us .. 500 ms); RS 1 and 2
    # give 3.90625 ms and 7.8125 ms like RS 8 and 9. PF sets at each divider tap edge.
    r = Rig()
    r.ack_on_raise()
    r.wr(A, 0x20 | rs)
    r.rd(C)
    r.wr(B, H24 | PIE)
    ticks = {1: 128, 2: 256}.get(rs, 1 << (rs - 1))
    assert period_ticks(rs) == ticks
    span = 32768 // ticks if ticks <= 64 else 32768 * 4 // ticks  # >= 4 periods, <= 0.5 s
    end = edge_ns(span, rs)
    r.at(end)
    assert r.rises == [edge_ns(k, rs) for k in range(1, span + 1)]
    assert len(r.falls) == len(r.rises)  # each acknowledged by reading C


def test_rate_select_1_and_2_equal_8_and_9() -> None:
    assert period_ticks(1) == period_ticks(8) == 128  # 3.90625 ms
    assert period_ticks(2) == period_ticks(9) == 256  # 7.8125 ms
    assert period_ticks(0) == 0


def test_rate_6_gives_1024_interrupts_per_second() -> None:
    # Default rate 0110: 976.5625 us (DS table 5), so 1024 per second with PIE.
    r = Rig()
    r.ack_on_raise()
    r.rd(C)
    r.wr(B, H24 | PIE)
    r.at(NS)
    assert len(r.rises) == 1024 and r.rises[0] == 976_563 and r.rises[-1] == NS


def test_pf_sets_without_pie_and_irq_stays_low() -> None:
    # DS register C: "PF is set ... independent of the state of the PIE bit".
    r = Rig()
    r.rd(C)
    r.at(976_562)
    assert r.rd(C) == 0
    r.at(976_563)
    assert r.rd(C) == PF and not r.rises
    assert r.clock.next_deadline() is None  # no timer for a flag that cannot interrupt


def test_rate_zero_stops_the_periodic_flag() -> None:
    r = Rig()
    r.wr(A, 0x20)
    r.wr(B, H24 | PIE)
    r.rd(C)
    r.at(NS - 1)
    assert r.rd(C) == 0 and not r.rises


def test_only_the_next_edge_is_armed() -> None:
    r = Rig()
    r.rd(C)
    r.wr(B, H24 | PIE)
    assert r.clock.next_deadline() == 976_563
    r.at(976_563)
    assert r.line.level and r.clock.next_deadline() is None  # IRQF high: nothing can rise
    r.rd(C)
    assert r.clock.next_deadline() == 1_953_125


def test_unacknowledged_periodic_interrupt_keeps_irq8_high() -> None:
    # IRQF stays set until C is read (DS register C), so one rise for many edges.
    r = Rig()
    r.rd(C)
    r.wr(B, H24 | PIE)
    r.at(NS // 2)
    assert r.rises == [976_563] and r.line.level
    assert r.rd(C) == IRQF | PF
    assert not r.line.level and r.falls == [NS // 2]


def test_default_lost_tick_policy_is_qemus_discard() -> None:
    # QEMU: DEFINE_PROP_LOSTTICKPOLICY("lost_tick_policy", ..., LOST_TICK_POLICY_DISCARD).
    assert DEFAULT_POLICY == "discard"
    with pytest.raises(ValueError):
        Rtc(ManualClock(), IrqLine(), lost_tick_policy="catchup")


def test_slew_redelivers_lost_ticks_faster_discard_does_not() -> None:
    # Rate 15 (500 ms). The guest ignores IRQ8 for 2 s: 4 edges, 1 delivered, 3 lost.
    results = {}
    for policy in ("discard", "slew"):
        r = Rig(policy=policy)
        r.wr(A, 0x2F)
        r.rd(C)
        r.wr(B, H24 | PIE)
        r.at(2 * NS)
        assert r.rises == [NS // 2]
        r.ack_on_raise()
        r.rd(C)
        r.at(3 * NS)
        results[policy] = r.rises[1:]
    # discard: only the nominal edges at 2.5 s and 3 s.
    assert results["discard"] == [2 * NS + NS // 2, 3 * NS]
    # slew (QEMU rtc_coalesced_timer): each owed tick comes period/(min(owed,7)+1) after the
    # acknowledgement: 3 owed -> 125 ms, then 2 owed -> 166.67 ms, ... interleaved with edges.
    slew = results["slew"]
    assert slew[0] == 2 * NS + 125_000_000
    assert len(slew) == 2 + 3  # both nominal edges plus the three owed ticks


# -- update cycle, UIP, UF ------------------------------------------------------------------------
def test_uip_is_set_for_244us_before_each_update() -> None:
    # DS: UIP goes high 244 us (8 cycles of 32.768 kHz) before the update; the update is at
    # the second boundary of the time base (clock 1 s here, the base has no fraction).
    r = Rig()
    start = NS - 244_140  # 999,755,860 is the first ns at or after 1 s - 244.140625 us
    r.at(start - 1)
    assert r.rd(A) == 0x26
    r.at(start)
    assert r.rd(A) == 0xA6 and r.rd(SEC) == 0x56
    r.at(NS - 1)
    assert r.rd(A) == 0xA6 and r.rd(SEC) == 0x56
    r.at(NS)
    assert r.rd(A) == 0x26 and r.rd(SEC) == 0x57


def test_uip_is_clear_while_set_or_divider_stopped() -> None:
    # DS: setting SET "clears the UIP status bit"; no updates happen in divider reset.
    r = Rig()
    r.wr(B, H24 | SET)
    r.at(NS - 1000)
    assert r.rd(A) & 0x80 == 0
    r.wr(B, H24)
    r.wr(A, 0x66)
    r.at(2 * NS - 1000)
    assert r.rd(A) == 0x66


def test_update_ended_interrupt_at_each_second() -> None:
    # DS: UF is set at the end of every update cycle; with UIE it asserts IRQ8.
    r = Rig()
    r.ack_on_raise()
    r.rd(C)
    r.wr(B, H24 | UIE)
    assert r.clock.next_deadline() == NS
    r.at(3 * NS + 5)
    assert r.rises == [NS, 2 * NS, 3 * NS]


def test_update_boundary_follows_a_fractional_time_base() -> None:
    # Updates happen at the RTC's own second boundaries, not the clock's.
    r = Rig()
    r.wr(B, H24 | SET)
    r.at(300_000_000)  # SET cleared 0.3 s into the divider's second: phase is kept
    r.wr(SEC, 0x00)
    r.ack_on_raise()
    r.wr(B, H24 | UIE)
    r.rd(C)
    r.at(3 * NS)
    assert r.rises == [NS, 2 * NS, 3 * NS]
    r2 = Rig()
    r2.wr(A, 0x66)
    r2.at(100_000_000)
    r2.wr(A, 0x26)  # out of reset at 0.1 s: first update half a second later (DS)
    r2.ack_on_raise()
    r2.rd(C)
    r2.wr(B, H24 | UIE)
    r2.at(2 * NS)
    assert r2.rises == [600_000_000, 1_600_000_000]
    r3 = Rig(start=300_000_000)  # the base date is the time at creation, 0.3 s on the clock
    r3.ack_on_raise()
    r3.wr(B, H24 | UIE)
    r3.at(3 * NS)
    assert r3.rises == [1_300_000_000, 2_300_000_000]


def test_uf_sets_without_uie() -> None:
    r = Rig()
    r.at(NS)
    assert r.rd(C) == UF | PF and not r.rises


def test_enabling_an_interrupt_with_its_flag_set_raises_irq8_at_once() -> None:
    # DS register C: IRQF = PF.PIE + AF.AIE + UF.UIE.
    r = Rig()
    r.at(NS + 5)
    r.wr(B, H24 | UIE)
    assert r.rises == [NS + 5]
    r.wr(B, H24)  # disabling it drops IRQF again
    assert r.falls == [NS + 5] and r.rd(C) == UF | PF


def test_reading_c_clears_flags_and_lowers_irq8() -> None:
    r = Rig()
    r.wr(B, H24 | UIE)
    r.at(NS)
    assert r.line.level
    assert r.rd(C) == IRQF | UF | PF
    assert not r.line.level and r.rd(C) == 0


# -- SET, divider, guest time ----------------------------------------------------------------------
def test_set_stops_updates_and_clears_uie() -> None:
    # DS register B: SET=1 inhibits update transfers; "the UIE bit is cleared ... by the SET
    # bit going high".
    r = Rig()
    r.wr(B, H24 | UIE | SET)
    assert r.rd(B) == H24 | SET
    r.rd(C)
    r.at(5 * NS)
    assert r.time() == (0x24, 0x03, 0x10, 0x12, 0x34, 0x56)
    assert r.rd(C) & UF == 0 and not r.rises
    assert r.clock.next_deadline() is None


def test_guest_set_time_resumes_and_is_kept_as_offset() -> None:
    r = Rig()
    r.at(250_000_000)
    r.set_time({YEAR: 0x99, MON: 0x12, MDAY: 0x31, HOUR: 0x23, MIN: 0x59, SEC: 0x59})
    assert r.time() == (0x99, 0x12, 0x31, 0x23, 0x59, 0x59)
    r.at(NS)  # the divider kept its phase through SET: next update at 1 s
    assert r.time() == (0x00, 0x01, 0x01, 0x00, 0x00, 0x00)
    assert r.rd(CENTURY) == 0x21  # the PC century byte carries (2099 -> 2100)
    base = calendar.timegm((2024, 3, 10, 12, 34, 56))
    target = calendar.timegm((2099, 12, 31, 23, 59, 59))
    assert r.rtc.offset_ns == (target - base) * NS
    # The offset survives a reset of the chip and a save/restore into a new one.
    r.rtc.reset()
    assert r.time()[-1] == 0x00
    r2 = Rig()
    r2.at(NS)
    r2.rtc.restore(r.rtc.save())
    assert r2.rtc.offset_ns == r.rtc.offset_ns
    r2.at(2 * NS)
    assert r2.time() == (0x00, 0x01, 0x01, 0x00, 0x00, 0x01)


def test_writing_a_time_byte_while_running_keeps_counting_from_it() -> None:
    r = Rig()
    r.at(NS // 2)
    r.wr(MIN, 0x00)
    assert r.rd(MIN) == 0x00 and r.rd(SEC) == 0x56
    r.at(5 * NS)
    assert r.rd(SEC) == 0x01 and r.rd(MIN) == 0x01


@pytest.mark.parametrize("dv", [0x60, 0x70])
def test_divider_reset_holds_time_and_restarts_half_a_second_later(dv: int) -> None:
    # DS: DV=11x holds the divider in reset; "the first update cycle begins one-half second
    # later" after it is released with 010.
    r = Rig()
    r.at(200_000_000)
    r.wr(A, dv | 6)
    r.at(10 * NS)
    assert r.rd(SEC) == 0x56
    r.rd(C)
    r.wr(B, H24 | PIE | UIE)
    r.at(11 * NS)
    assert r.rd(C) == 0 and not r.rises  # a held divider gives no interrupts at all
    r.wr(A, 0x26)
    r.wr(B, H24 | UIE)
    r.at(11 * NS + NS // 2 - 1)
    assert r.rd(SEC) == 0x56 and not r.rises
    r.at(11 * NS + NS // 2)
    assert r.rd(SEC) == 0x57 and r.rises == [11 * NS + NS // 2]


@pytest.mark.parametrize("dv", [0x30, 0x40, 0x50])
def test_test_mode_dividers_hold_time(dv: int) -> None:
    # DS table 3: 011-101 are test settings that do not keep time on a 32.768 kHz base.
    r = Rig()
    r.wr(A, dv | 6)
    r.at(5 * NS)
    assert r.rd(SEC) == 0x56 and r.rd(C) == 0


@pytest.mark.parametrize("dv", [0x00, 0x10])
def test_dividers_000_and_001_run_like_qemu(dv: int) -> None:
    # QEMU rtc_running(): (A & 0x70) <= 0x20 runs; its rtc-test programs A=0x0D and expects
    # periodic interrupts, so guests written for QEMU must see the clock run.
    r = Rig()
    r.wr(A, dv | 6)
    r.wr(B, H24 | PIE)
    r.at(NS)
    assert r.rd(SEC) == 0x57 and r.rd(C) & 0xC0 == 0xC0


# -- formats ---------------------------------------------------------------------------------------
def test_binary_and_bcd_modes() -> None:
    # DS register B, DM: 1 = binary, 0 = BCD.
    r = Rig()
    r.wr(B, H24 | DM)
    assert r.time() == (24, 3, 10, 12, 34, 56)
    assert r.rd(CENTURY) == 20
    r.set_time({SEC: 59, MIN: 59, HOUR: 23})
    r.at(NS)
    assert r.time() == (24, 3, 11, 0, 0, 0)
    r.wr(B, H24)
    assert r.time() == (0x24, 0x03, 0x11, 0x00, 0x00, 0x00)


@pytest.mark.parametrize(
    ("hour24", "bcd12", "bin12"),
    [
        (0, 0x12, 12),
        (1, 0x01, 1),
        (11, 0x11, 11),
        (12, 0x92, 0x8C),
        (13, 0x81, 0x81),
        (23, 0x91, 0x8B),
    ],
)
def test_12_hour_mode_with_pm_bit(hour24: int, bcd12: int, bin12: int) -> None:
    # DS: in 12-hour mode hours are 1-12 and bit 7 set means PM.
    for dm, want in ((0, bcd12), (DM, bin12)):
        r = Rig()
        r.wr(B, H24 | dm)
        r.set_time({HOUR: hour24 if dm else rt.to_bcd(hour24)})
        r.wr(B, dm)
        assert r.rd(HOUR) == want
        r.wr(B, SET | dm)  # write it back in 12-hour form: the same time
        r.wr(HOUR, want)
        r.wr(B, dm)  # SET cleared in 12-hour mode: the byte is read as 12-hour
        r.wr(B, H24 | dm)
        assert r.rd(HOUR) == (hour24 if dm else rt.to_bcd(hour24))


def test_12_hour_noon_rollover() -> None:
    r = Rig()
    r.wr(B, 0)
    r.set_time({HOUR: 0x11, MIN: 0x59, SEC: 0x59})  # 11:59:59 AM
    r.at(NS)
    assert r.rd(HOUR) == 0x92 and r.rd(MIN) == 0x00  # 12:00:00 PM


def test_leap_years_and_month_ends() -> None:
    r = Rig()
    for (y, m, d), nxt in (
        ((0x24, 0x02, 0x28), (0x24, 0x02, 0x29)),
        ((0x24, 0x02, 0x29), (0x24, 0x03, 0x01)),
        ((0x23, 0x02, 0x28), (0x23, 0x03, 0x01)),
        ((0x24, 0x04, 0x30), (0x24, 0x05, 0x01)),
    ):
        r.set_time({YEAR: y, MON: m, MDAY: d, HOUR: 0x23, MIN: 0x59, SEC: 0x59})
        r.at(r.clock.now() + NS)
        assert r.time()[:3] == nxt
    r.set_time({CENTURY: 0x21, YEAR: 0x00, MON: 0x02, MDAY: 0x28, HOUR: 0x23, MIN: 0x59, SEC: 0x59})
    r.at(r.clock.now() + NS)
    assert r.time()[:3] == (0x00, 0x03, 0x01)  # 2100 is not a leap year


def test_day_of_week_counts_on_its_own() -> None:
    # DS: day of week 1-7 is a counter incremented at midnight; the guest sets it.
    r = Rig()
    r.set_time({WDAY: 0x05, HOUR: 0x23, MIN: 0x59, SEC: 0x59})
    r.at(r.clock.now() + NS)
    assert r.rd(WDAY) == 0x06
    r.set_time({WDAY: 0x07, HOUR: 0x23, MIN: 0x59, SEC: 0x59})
    r.at(r.clock.now() + NS)
    assert r.rd(WDAY) == 0x01


def test_out_of_range_time_is_accepted_carries_and_is_logged_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Guest-writable values never raise; an impossible time carries like timegm() and is
    # logged, at most a burst of messages however often the guest does it.
    r = Rig()
    with caplog.at_level(logging.WARNING, logger="southbridge.rtc"):
        for _ in range(50):
            r.set_time({SEC: 0x7A, MIN: 0xFF, HOUR: 0xFF, MDAY: 0x00, MON: 0x13, YEAR: 0xFF})
    assert 1 <= len(caplog.records) <= r.rtc.log.burst
    assert all(0 <= v <= 0xFF for v in r.time())
    r.set_time({SEC: 0x30, MIN: 0x00, HOUR: 0x24, MDAY: 0x01, MON: 0x01, YEAR: 0x25})
    assert r.time() == (0x25, 0x01, 0x02, 0x00, 0x00, 0x30)  # hour 24 carried into the 2nd
    r.at(3 * NS)
    assert r.rd(D) == 0x80


# -- alarm -----------------------------------------------------------------------------------------
def test_alarm_fires_at_the_matching_second() -> None:
    # DS: AF is set when the time bytes equal the alarm bytes at an update.
    r = Rig()
    r.ack_on_raise()
    r.wr(SEC_AL, 0x10)
    r.wr(MIN_AL, 0x35)
    r.wr(HOUR_AL, 0x12)
    r.rd(C)
    r.wr(B, H24 | AIE)
    assert r.clock.next_deadline() == 14 * NS  # 12:34:56 -> 12:35:10
    r.at(14 * NS - 1)
    assert not r.rises
    r.at(14 * NS)
    assert r.rises == [14 * NS]
    r.at(14 * NS + 86_400 * NS)  # once a day
    assert r.rises == [14 * NS, 14 * NS + 86_400 * NS]


def test_alarm_flag_and_update_flag_together() -> None:
    r = Rig()
    r.wr(SEC_AL, 0x57)
    r.wr(MIN_AL, 0x34)
    r.wr(HOUR_AL, 0x12)
    r.rd(C)
    r.wr(B, H24 | AIE | UIE)
    r.at(NS)
    assert r.rd(C) == IRQF | AF | UF | PF


@pytest.mark.parametrize(
    ("alarm", "expect_s"),
    [
        ((0xFF, 0xFF, 0xFF), [1, 2, 3]),  # every second
        ((0x00, 0xC0, 0xC0), [4, 64, 124]),  # every minute at :00
        ((0x30, 0x35, 0xC5), [34, 3634]),  # every hour at 35:30
        ((0xC0, 0x36, 0xFF), [64, 65, 66]),  # every second of minute 36
    ],
)
def test_dont_care_alarm_bytes(alarm: tuple[int, int, int], expect_s: list[int]) -> None:
    # DS: an alarm byte with its two top bits set (0xC0-0xFF) matches any value.
    r = Rig()
    r.ack_on_raise()
    r.wr(SEC_AL, alarm[0])
    r.wr(MIN_AL, alarm[1])
    r.wr(HOUR_AL, alarm[2])
    r.rd(C)
    r.wr(B, H24 | AIE)
    r.at(expect_s[-1] * NS)
    assert r.rises[: len(expect_s)] == [s * NS for s in expect_s]


def test_alarm_in_12_hour_mode_compares_the_pm_byte() -> None:
    r = Rig()
    r.ack_on_raise()
    r.wr(B, 0)  # 12-hour BCD: 12:34:56 shows as 0x92
    r.wr(SEC_AL, 0x00)
    r.wr(MIN_AL, 0x35)
    r.wr(HOUR_AL, 0x12)  # 12 AM = midnight: does not match 12 PM
    r.rd(C)
    r.wr(B, AIE)
    r.at(200 * NS)
    assert not r.rises
    r.wr(HOUR_AL, 0x92)  # 12 PM
    r.rd(C)
    r.at(200 * NS + 86_400 * NS)
    assert r.rises == [4 * NS + 86_400 * NS]


def test_impossible_alarm_never_fires() -> None:
    r = Rig()
    r.wr(SEC_AL, 0x60)  # BCD 60: no second shows it
    r.wr(B, H24 | AIE)
    r.rd(C)
    assert r.clock.next_deadline() is None
    r.at(100 * NS)
    assert r.rd(C) & AF == 0


# -- daylight saving -------------------------------------------------------------------------------
def test_dse_spring_forward_last_sunday_in_april() -> None:
    # DS, DSE: "On the last Sunday in April the time increments from 1:59:59 AM to 3:00:00
    # AM." 2024-04-28 is the last Sunday in April 2024.
    r = Rig()
    r.wr(B, H24 | DSE)
    r.set_time({YEAR: 0x24, MON: 0x04, MDAY: 0x28, WDAY: 0x01, HOUR: 0x01, MIN: 0x59, SEC: 0x59})
    t0 = r.clock.now()
    r.at(t0 + NS)
    assert r.time()[3:] == (0x03, 0x00, 0x00)
    # The week before is not the last Sunday: no jump.
    r.set_time({MDAY: 0x21, WDAY: 0x01, HOUR: 0x01, MIN: 0x59, SEC: 0x59})
    r.at(r.clock.now() + NS)
    assert r.time()[3:] == (0x02, 0x00, 0x00)


def test_dse_knows_sunday_only_from_the_day_of_week_register() -> None:
    # The chip has no calendar of weekdays: with Saturday 2024-04-27 set as day 1 (Sunday),
    # the 27th is the last "Sunday" in April (no day 1 follows in the month) and springs.
    r = Rig()
    r.wr(B, H24 | DSE)
    r.set_time({YEAR: 0x24, MON: 0x04, MDAY: 0x27, WDAY: 0x01, HOUR: 0x01, MIN: 0x59, SEC: 0x59})
    r.at(r.clock.now() + NS)
    assert r.time()[2:] == (0x27, 0x03, 0x00, 0x00)
    r.set_time({MDAY: 0x28, WDAY: 0x02, HOUR: 0x01, MIN: 0x59, SEC: 0x59})
    r.at(r.clock.now() + NS)
    assert r.time()[2:] == (0x28, 0x02, 0x00, 0x00)  # the real Sunday is day 2 here


def test_dse_fall_back_once_on_last_sunday_in_october() -> None:
    # DS: "On the last Sunday in October when the time first reaches 1:59:59 AM it changes
    # to 1:00:00 AM." 2024-10-27 is the last Sunday in October.
    r = Rig()
    r.wr(B, H24 | DSE)
    r.set_time({YEAR: 0x24, MON: 0x10, MDAY: 0x27, WDAY: 0x01, HOUR: 0x01, MIN: 0x59, SEC: 0x59})
    t0 = r.clock.now()
    r.at(t0 + NS)
    assert r.time()[3:] == (0x01, 0x00, 0x00)
    r.at(t0 + 3600 * NS)  # the second time 1:59:59 is reached it carries on normally
    assert r.time()[3:] == (0x01, 0x59, 0x59)
    r.at(t0 + 3601 * NS)
    assert r.time()[3:] == (0x02, 0x00, 0x00)


def test_dse_alarm_in_repeated_hour_fires_twice() -> None:
    r = Rig()
    r.ack_on_raise()
    r.wr(B, H24 | DSE)
    r.set_time({YEAR: 0x24, MON: 0x10, MDAY: 0x27, WDAY: 0x01, HOUR: 0x01, MIN: 0x29, SEC: 0x59})
    t0 = r.clock.now()
    r.wr(SEC_AL, 0x00)
    r.wr(MIN_AL, 0x30)
    r.wr(HOUR_AL, 0x01)
    r.rd(C)
    r.wr(B, H24 | DSE | AIE)
    r.at(t0 + 2 * 3600 * NS)
    assert [t - t0 for t in r.rises] == [NS, NS + 3600 * NS]


# -- time bases ------------------------------------------------------------------------------------
def test_time_base_utc_localtime_and_date() -> None:
    wall = calendar.timegm((2023, 7, 1, 8, 0, 0)) * NS + 123
    clock = ManualClock(5 * NS)
    utc = Rtc(clock, IrqLine(), base="utc", wall_ns=lambda: wall)
    assert utc.guest_ns() == wall
    local = Rtc(clock, IrqLine(), base="localtime", wall_ns=lambda: wall)
    assert local.guest_ns() == wall + time.localtime(wall // NS).tm_gmtoff * NS
    fixed = Rtc(clock, IrqLine(), base="2001-02-03T04:05:06")
    assert fixed.guest_ns() == calendar.timegm((2001, 2, 3, 4, 5, 6)) * NS
    with pytest.raises(ValueError):
        Rtc(clock, IrqLine(), base="yesterday")


def test_real_utc_base_tracks_host_time() -> None:
    r = Rtc(ManualClock(), IrqLine())
    host = datetime.utcnow().replace(microsecond=0)  # naive UTC, like the RTC
    shown = datetime(
        2000 + rt.from_bcd(r.cmos_get(YEAR)),
        rt.from_bcd(r.cmos_get(MON)),
        rt.from_bcd(r.cmos_get(MDAY)),
        rt.from_bcd(r.cmos_get(HOUR)),
        rt.from_bcd(r.cmos_get(MIN)),
        rt.from_bcd(r.cmos_get(SEC)),
    )
    assert abs(shown - host) <= timedelta(seconds=2)


# -- NVRAM, reset, state ---------------------------------------------------------------------------
def test_nvram_preset_save_and_load() -> None:
    r = Rig()
    r.rtc.cmos_set(0x34, 0x12)  # e.g. the memory-size bytes the machine fills
    r.rtc.cmos_set(0xB0, 0x77)
    assert r.rd(0x34) == 0x12 and r.rtc.cmos_get(0x34) == 0x12
    image = r.rtc.nvram_bytes()
    assert len(image) == 256 and image[0x34] == 0x12 and image[0xB0] == 0x77
    assert image[A] == 0x26 and image[D] == 0x80 and image[SEC] == 0x56
    other = Rig(base="2000-01-01T00:00:00")
    other.rtc.load_nvram(image)
    assert other.rd(0x34) == 0x12 and other.rtc.cmos_get(0xB0) == 0x77
    assert other.rd(YEAR) == 0x00  # clock bytes come from its own time base
    with pytest.raises(ValueError):
        r.rtc.cmos_set(SEC, 1)
    with pytest.raises(ValueError):
        r.rtc.cmos_set(256, 1)
    with pytest.raises(ValueError):
        r.rtc.load_nvram(b"\0" * 10)


def test_cmos_get_does_not_acknowledge_c() -> None:
    r = Rig()
    r.wr(B, H24 | UIE)
    r.at(NS)
    assert r.rtc.cmos_get(C) == IRQF | PF | UF and r.line.level
    assert r.rd(C) == IRQF | PF | UF and not r.line.level


def test_reset_pin_clears_enables_and_flags_not_time() -> None:
    # DS, RESET: clears PIE, AIE, UIE, SQWE, IRQF, PF, AF, UF; time and format are kept.
    r = Rig()
    r.wr(B, H24 | DM | PIE | AIE | UIE | 0x08)
    r.at(NS)
    assert r.line.level
    r.wr(0x0F, 0x05)
    r.rtc.reset()
    assert not r.line.level and r.rd(B) == H24 | DM and r.rd(C) == 0
    assert r.rd(SEC) == 57 and r.rd(A) == 0x26
    assert r.rd(0x0F) == 0  # QEMU rtc_reset_enter: shutdown byte cleared unless 0xfe
    r.wr(0x0F, 0xFE)
    r.rtc.reset()
    assert r.rd(0x0F) == 0xFE


def test_save_restore_round_trip_mid_period() -> None:
    r = Rig(policy="slew")
    r.wr(A, 0x2F)
    r.wr(B, H24 | PIE | AIE)
    r.wr(SEC_AL, 0xFF)
    r.at(2 * NS + 7)
    r.rd(C)
    r.bus.write(0x70, 1, 0x85)
    state = r.rtc.save()
    r2 = Rig(policy="slew")
    r2.at(2 * NS + 7)
    r2.rtc.restore(state)
    assert r2.rtc.save() == state and r2.rtc.nmi_masked
    r.at(5 * NS)
    r2.at(5 * NS)
    assert r.rtc.save() == r2.rtc.save()
    after = [t for t in r.rises if t > 2 * NS + 7]
    assert after and after == r2.rises


def _bad(state: dict[str, Any], **change: Any) -> dict[str, Any]:
    s = dict(state)
    s.update(change)
    return s


def test_restore_rejects_states_the_chip_cannot_be_in() -> None:
    r = Rig()
    good = r.rtc.save()
    bank = bytearray.fromhex(good["bank0"])
    for key, mutate in (("A", 0xA6), ("B", SET | UIE)):
        b = bytearray(bank)
        b[A if key == "A" else B] = mutate
        with pytest.raises(StateError):
            r.rtc.restore(_bad(good, bank0=b.hex()))
    for change in (
        {"kind": "pit"},
        {"version": 2},
        {"bank0": "00"},
        {"bank1": "zz"},
        {"flags": 0x80},
        {"flags": 0x01},
        {"index": 0x80},
        {"wday_adj": 7},
        {"nmi_masked": 1},
        {"lost": 3},  # owed ticks only exist under slew with PIE on
        {"catchup_in": 5},
        {"policy": "slew"},
        {"guest_ns": "now"},
    ):
        with pytest.raises(StateError):
            r.rtc.restore(_bad(good, **change))
    assert r.rtc.save() == good  # a rejected restore leaves the chip as it was


# -- Hypothesis ------------------------------------------------------------------------------------
OPS = st.one_of(
    st.tuples(st.just("out"), st.integers(0, 3), st.integers(0, 255)),
    st.tuples(st.just("in"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("reg"), st.sampled_from([A, B, C, *range(10), CENTURY]), st.integers(0, 255)),
    st.tuples(st.just("wait"), st.integers(0, 3 * NS), st.just(0)),
    st.tuples(st.just("reset"), st.just(0), st.just(0)),
    st.tuples(st.just("migrate"), st.just(0), st.just(0)),
)


def check_invariants(r: Rig) -> None:
    c = r.rtc.cmos_get(C)
    b = r.rd(B)
    assert r.line.level == bool(c & IRQF) == bool(c & b & (PF | AF | UF))
    assert c & 0x0F == 0 and r.rd(D) == 0x80
    assert not (b & SET and b & UIE)
    deadline = r.clock.next_deadline()
    assert deadline is None or deadline > r.clock.now() or not r.line.level
    if r.rd(A) & 0x70 != 0x20 or b & SET:
        assert r.rd(A) & 0x80 == 0  # no UIP without updates
    running = r.rd(A) & 0x70 == 0x20
    if not r.line.level and running and r.rd(A) & 0x0F and b & PIE:
        assert deadline is not None  # the next periodic edge is armed
    if not r.line.level and running and not b & SET and b & UIE:
        # The next update is armed at (or something before) the next second boundary.
        boundary = r.clock.now() + NS - r.rtc.guest_ns() % NS
        assert deadline is not None and r.clock.now() < deadline <= boundary


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(OPS, max_size=40),
    policy=st.sampled_from(["discard", "slew"]),
    base=st.sampled_from([BASE, "1999-12-31T23:59:58", "2024-10-27T01:59:50"]),
)
def test_any_access_sequence_keeps_invariants_and_round_trips(
    ops: list[tuple[str, int, int]], policy: str, base: str
) -> None:
    r = Rig(base=base, policy=policy)
    for op, a, v in ops:
        if op == "out":
            r.bus.write(0x70 + a, 1, v)
        elif op == "in":
            assert 0 <= r.bus.read(0x70 + a, 1) <= 0xFF
        elif op == "reg":
            r.wr(a, v)
        elif op == "wait":
            r.at(r.clock.now() + a)
        elif op == "reset":
            r.rtc.reset()
        else:
            state = r.rtc.save()
            twin = Rtc(r.clock, IrqLine(), base="2000-01-01T00:00:00", lost_tick_policy=policy)
            twin.restore(state)
            assert twin.save() == state
            assert twin.nvram_bytes() == r.rtc.nvram_bytes()
            r.rtc.restore(state)
            assert r.rtc.save() == state
        check_invariants(r)


@settings(max_examples=40, deadline=None)
@given(
    rs=st.integers(1, 15),
    waits=st.lists(st.integers(1, NS // 4), min_size=1, max_size=8),
    phase=st.integers(0, NS - 1),
)
def test_acknowledged_periodic_interrupts_are_exactly_the_divider_edges(
    rs: int, waits: list[int], phase: int
) -> None:
    # Whatever the guest's sub-second phase and however time is stepped, a guest that reads
    # C on every IRQ8 sees one rise per edge of the rate's divider tap (DS table 5).
    r = Rig()
    r.wr(B, H24 | SET)
    r.at(phase)
    r.wr(B, H24)  # divider phase is unchanged: clock 0 is still a second boundary
    r.wr(A, 0x20 | rs)
    r.ack_on_raise()
    r.rd(C)
    start = r.clock.now()
    r.wr(B, H24 | PIE)
    for w in waits:
        r.at(r.clock.now() + w)
    p = period_ticks(rs)
    k0 = start * 32768 // NS // p + 1
    k1 = r.clock.now() * 32768 // NS // p
    assert r.rises == [edge_ns(k, rs) for k in range(k0, k1 + 1)]


@settings(max_examples=40, deadline=None)
@given(
    s=st.integers(-62_135_596_800, 253_402_300_799),  # years 1..9999
    binary=st.booleans(),
    h24=st.booleans(),
    adj=st.integers(0, 6),
)
def test_render_parse_round_trip(s: int, binary: bool, h24: bool, adj: int) -> None:
    fmt = rt.Format(binary, h24)
    regs = rt.render(s, fmt, False, adj)
    p = rt.parse(regs, fmt, False)
    assert p.valid and p.seconds == s and p.wday_adj == adj
    when = datetime(1970, 1, 1) + timedelta(seconds=s)
    assert rt.decode(regs[MDAY], fmt) == when.day and rt.decode(regs[MON], fmt) == when.month


@settings(max_examples=30, deadline=None)
@given(
    start=st.integers(0, 4_000_000_000),
    alarm=st.tuples(
        st.sampled_from([0, 7, 0x30, 0x59, 0x60, 0xC0, 0xFF]),
        st.sampled_from([0, 0x15, 0x59, 0xC0, 0xEE]),
        st.sampled_from([0, 0x05, 0x12, 0x23, 0x92, 0xC0, 0xFF]),
    ),
    binary=st.booleans(),
    h24=st.booleans(),
)
def test_next_alarm_is_the_first_matching_second(
    start: int, alarm: tuple[int, int, int], binary: bool, h24: bool
) -> None:
    # DS: the alarm compares bytes; check the search against a second-by-second scan.
    fmt = rt.Format(binary, h24)
    cands = rt.alarm_candidates(alarm, fmt)
    enc = [rt.encode(v, fmt) for v in range(60)]
    enc_h = [rt.encode_hour(h, fmt) for h in range(24)]

    def ok(a: int, byte: int) -> bool:
        return a >= 0xC0 or a == byte

    def matches(t: int) -> bool:
        sod = t % 86_400
        return (
            ok(alarm[2], enc_h[sod // 3600])
            and ok(alarm[1], enc[sod // 60 % 60])
            and ok(alarm[0], enc[sod % 60])
        )

    if cands is None:
        assert not any(matches(start + k) for k in range(0, 86_400, 7))
        return
    found = rt.next_alarm(start, cands, False, 0)
    assert start <= found <= start + 86_400 and matches(found)
    t = start  # scan every second before it, skipping whole hours/minutes that cannot match
    while t < found:
        sod = t % 86_400
        if not ok(alarm[2], enc_h[sod // 3600]):
            t += 3600 - sod % 3600
        elif not ok(alarm[1], enc[sod // 60 % 60]):
            t += 60 - sod % 60
        else:
            assert not ok(alarm[0], enc[sod % 60])
            t += 1


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(OPS.filter(lambda op: op[0] != "migrate"), max_size=25),
    policy=st.sampled_from(["discard", "slew"]),
    looks=st.integers(1, 7),
)
def test_looking_more_often_changes_nothing(
    ops: list[tuple[str, int, int]], policy: str, looks: int
) -> None:
    # Flags are computed lazily for (last look, now]; the chip has no notion of being looked
    # at, so extra side-effect-free reads (register D) in the middle of every wait must leave
    # the IRQ8 history and the final state unchanged.
    plain, watched = Rig(policy=policy), Rig(policy=policy)
    for r, split in ((plain, 1), (watched, looks)):
        for op, a, v in ops:
            if op == "out":
                r.bus.write(0x70 + a, 1, v)
            elif op == "in":
                r.bus.read(0x70 + a, 1)
            elif op == "reg":
                r.wr(a, v)
            elif op == "reset":
                r.rtc.reset()
            else:
                for i in range(1, split + 1):
                    r.rtc.cmos_get(D)
                    r.at(r.clock.now() + a * i // split - a * (i - 1) // split)
    assert plain.rises == watched.rises and plain.falls == watched.falls
    assert plain.rtc.save() == watched.rtc.save()


class StallingClock(ManualClock):
    """A manual clock whose timer callbacks run `late` ns after their deadline, like a
    HostClock whose timer thread was held up (the case a lost-tick policy is for)."""

    late = 0

    def set(self, target: int) -> int:
        while True:
            due = self._pop_due(target - self.late)
            if due is None:
                break
            deadline, t = due
            self._now = max(self._now, deadline + self.late)
            self._fire(t)
        self._now = max(self._now, target)
        return self._now


@pytest.mark.parametrize("policy", ["discard", "slew"])
def test_lost_ticks_after_a_stalled_timer(policy: str) -> None:
    # Rate 6 (1024 Hz); the timer thread runs 50 ms late until 100 ms. "discard" (QEMU's
    # default) lets the missed edges go; "slew" owes them and delivers them faster than
    # the nominal rate until the guest has seen every edge (QEMU's LOST_TICK_POLICY_SLEW).
    clock = StallingClock()
    line = IrqLine("irq8")
    rtc = Rtc(clock, line, base=BASE, lost_tick_policy=policy)
    bus = PortBus()
    bus.register(0x70, 4, rtc, "rtc")
    rises: list[int] = []

    def isr(level: bool) -> None:
        if level:
            rises.append(clock.now())
            bus.write(0x70, 1, C)
            bus.read(0x71, 1)

    line.connect(isr)
    bus.write(0x70, 1, C)
    bus.read(0x71, 1)
    bus.write(0x70, 1, B)
    bus.write(0x71, 1, H24 | PIE)
    clock.late = 50_000_000
    clock.set(100_000_000)
    clock.late = 0
    clock.set(NS)
    if policy == "discard":
        # Callbacks ran at 50.98 ms and 100 ms only: 2 of the 102 edges up to 100 ms reached
        # the guest, then all 922 after it.
        assert rises[:2] == [50_976_563, 100_000_000]
        assert len(rises) == 2 + 922
    else:
        assert len(rises) == 1024
    assert rises == sorted(rises) and rises[-1] == NS


@settings(max_examples=60, deadline=None)
@given(
    year=st.integers(1970, 2199),
    day=st.sampled_from([(4, 20), (4, 24), (4, 30), (10, 24), (10, 31), (7, 1), (1, 1)]),
    sod=st.integers(0, 86_399),
    adj=st.integers(0, 6),
)
def test_dse_render_parse_round_trip_except_the_repeated_hour(
    year: int, day: tuple[int, int], sod: int, adj: int
) -> None:
    # With DSE the shown time is standard time + 1 h inside [last Sunday in April 02:00,
    # last Sunday in October 01:00 standard). Reading the bytes back gives the same instant,
    # except in the repeated autumn hour, where the first (daylight) reading is taken.
    s = rt.days_from_civil(year, *day) * rt.DAY + sod
    fmt = rt.Format(False, True)
    shown = rt.render(s, fmt, True, adj)
    back = rt.parse(shown, fmt, True)
    assert back.valid and back.wday_adj == adj
    if back.seconds != s:
        assert back.seconds == s - 3600
        assert rt.dst_shift(s, True, adj) == 0 and rt.dst_shift(s - 3600, True, adj) == 3600
    start, end = rt.dst_window(year, adj)
    assert rt.dst_shift(s, True, adj) == (3600 if start <= s < end else 0)
    for edge in (start, end):  # both fall on the chip's Sunday (day-of-week register 1)
        assert (rt.weekday(edge // rt.DAY) + adj) % 7 == 0
    assert rt.civil_from_days(start // rt.DAY)[1:] >= (4, 24)
    assert rt.civil_from_days(end // rt.DAY)[1:] >= (10, 25)
