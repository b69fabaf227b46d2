"""Motorola MC146818A real-time clock and CMOS RAM, as a PC decodes it at 0x70-0x73.

Ports (offsets from 0x70): 0 index for bank 0 (bit 7 is the chipset's NMI mask, kept in
`nmi_masked`), 1 data for bank 0, 2 index for the second 128-byte bank, 3 its data.

Time is never ticked. The guest's clock is a linear count of nanoseconds,
`guest_ns = base_ns + offset_ns + clock.now()`: `base_ns` comes from the time-base setting
(host UTC, host local time or a fixed date), `offset_ns` is whatever the guest did to it
(setting the time under SET, restarting the divider). Second boundaries of `guest_ns` are the
update cycles; the divider chain's 32.768 kHz taps, aligned to them, give the periodic
interrupt. Flags are computed for the interval since the last look (`_sync`), and a timer is
armed only for the next instant at which IRQ8 would rise.

Behaviour follows the MC146818A datasheet; QEMU's hw/rtc/mc146818rtc.c is the peer (same
reset values, SET clearing UIE, the first update 500 ms after the divider leaves reset, the
"discard" lost-tick default).

Choices where the datasheet leaves room, or where we differ from QEMU:
* DV=000, 001 and 010 run the chain, as QEMU's rtc_running() has it: guests written for QEMU
  (its own rtc-test among them) program A=0x0D and expect periodic interrupts. A PC's crystal
  is 32.768 kHz, so 010 is the documented setting; 011-101 (test modes) hold time, 11x holds
  the divider in reset, and neither gives flags.
* Periodic edges sit on the divider's grid: multiples of the period counted from the second
  boundary, so they survive SET and keep their phase with the updates.
* While updates run, the clock bytes are rendered from the time in the current DM/24-hour
  format (as QEMU); under SET or a stopped divider they hold exactly what was written.
* The day-of-week register counts on its own (kept as `_wday_adj` from the true weekday), and
  DSE finds "the last Sunday" from it, as the chip must. The century byte 0x32 is a PC
  convention, encoded like the other bytes (BCD unless DM) and carried with the year.
* Out-of-range times the guest writes carry like timegm() and are logged (rate-limited).
* Lost ticks: "discard" coalesces edges missed by a late timer or an unacknowledged IRQ8;
  "slew" owes them (up to SLEW_MAX_OWED_S seconds' worth) and is acknowledge-paced: an
  owed tick is delivered as soon as the guest has read C and the interrupt controller has
  acknowledged the IRQ8 before it (INTA, or the EOI of the IOAPIC pin's vector, heard through
  the line's `on_ack`), like the PIT's reinjection. Without such an acknowledge (IRQ8 masked,
  a polling guest) it falls back to QEMU's coalesced timer spacing: each owed tick
  period/(min(owed, 7) + 1) after the read of C. An update-ended flag due while ticks from
  before it are still owed waits for them, so a guest counting ticks between two update
  interrupts counts them in the second they belong to.
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from southbridge.core.clock import Clock
from southbridge.core.device import BusDevice
from southbridge.core.irq import IrqLine, TickOrder
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.state import StateError, brief, check_header, get_bool, get_int, header
from southbridge.devices import rtc_time as rt
from southbridge.devices.rtc_time import NS

logger = logging.getLogger("southbridge.rtc")

REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
SHUTDOWN_STATUS = 0x0F

# Register A
UIP = 0x80
DV_MASK = 0x70
DV_32K = 0x20  # 010: the only divider setting that keeps time with a 32.768 kHz crystal
DV_RESET = 0x60  # 11x: divider chain held in reset
RS_MASK = 0x0F
# Register B
SET, PIE, AIE, UIE, SQWE, DM, H24, DSE = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01
# Register C
IRQF, PF, AF, UF = 0x80, 0x40, 0x20, 0x10
FLAGS = PF | AF | UF  # each flag sits on the same bit as its enable in register B
# Register D
VRT = 0x80

TICK_HZ = 32_768
UIP_TICKS = 8  # UIP rises 244 us (8 time-base cycles) before the update cycle
RESTART_PHASE_NS = NS // 2  # "the first update cycle begins one-half second later"

POLICIES = ("discard", "slew")
# QEMU's mc146818rtc has lost_tick_policy default LOST_TICK_POLICY_DISCARD
# (DEFINE_PROP_LOSTTICKPOLICY in hw/rtc/mc146818rtc.c); -rtc driftfix=slew selects slew.
DEFAULT_POLICY = "discard"
SLEW_MAX_OWED_S = 10  # a guest stalled longer than this gets the excess discarded
SLEW_MAX_DIVIDE = 8  # slew delivers a lost tick within period/2 .. period/8, as QEMU does

_TIME_SET = frozenset(rt.TIME_INDEXES)
_ALARMS = (rt.SECONDS_ALARM, rt.MINUTES_ALARM, rt.HOURS_ALARM)
_BOUND = 1 << 96  # generous limit for restored nanosecond values


def period_ticks(rs: int) -> int:
    """Periodic interval in 32.768 kHz cycles for rate select `rs` (0 = none).

    MC146818A table 5 for a 32.768 kHz time base: RS 3-15 give 2**(RS-1) cycles
    (122.070 us .. 500 ms); RS 1 and 2 give 3.90625 ms and 7.8125 ms, the same as RS 8 and 9.
    """
    if rs == 0:
        return 0
    return 1 << (rs + 6 if rs <= 2 else rs - 1)


def parse_base(base: str, wall_ns: Callable[[], int]) -> int:
    """The guest's time (ns since 1970, in the RTC's own zone) for a time-base setting."""
    if base == "utc":
        return wall_ns()
    if base == "localtime":
        now = wall_ns()
        return now + time.localtime(now // NS).tm_gmtoff * NS
    try:
        when = datetime.fromisoformat(base)
    except ValueError:
        raise ValueError(
            f"rtc base {base!r}: expected 'utc', 'localtime' or YYYY-MM-DDTHH:MM:SS"
        ) from None
    return calendar.timegm(when.replace(tzinfo=None).timetuple()) * NS


class Rtc(BusDevice):
    """The RTC/CMOS: bus device at 0x70-0x73, IRQ8 driven from IRQF, NVRAM for the machine."""

    io_sizes: ClassVar[frozenset[int]] = frozenset({1})
    name = "rtc"
    STATE_KIND: ClassVar[str] = "mc146818"
    STATE_VERSION: ClassVar[int] = 1

    def __init__(
        self,
        clock: Clock,
        irq: IrqLine,
        base: str = "utc",
        lost_tick_policy: str = DEFAULT_POLICY,
        wall_ns: Callable[[], int] = time.time_ns,
        order: TickOrder | None = None,
    ) -> None:
        if lost_tick_policy not in POLICIES:
            raise ValueError(f"rtc lost_tick_policy {lost_tick_policy!r}: one of {POLICIES}")
        self.clock = clock
        self.irq = irq
        self.policy = lost_tick_policy
        self.log = RateLimitedLog(logger)
        self.bank0 = bytearray(128)
        self.bank1 = bytearray(128)
        self.index = 0
        self.index1 = 0
        self.nmi_masked = False
        self._flags = 0  # PF/AF/UF of register C
        now = clock.now()
        self._base_ns = parse_base(base, wall_ns) - now
        self.offset_ns = 0
        self._wday_adj = 0
        self._synced = now
        self._lost = 0  # slew: periodic ticks owed to the guest
        self._catchup_at: int | None = None
        self._uf_hold = 0  # slew: owed ticks to deliver before a held update-ended flag
        self._irq_unacked = False  # IRQ8 rose and no controller acknowledged it yet
        irq.on_ack(self._on_irq_ack)
        # The machine's reinjecting timers deliver owed ticks oldest first (core/irq.py).
        self._order = order
        self._order_token = -1 if order is None else order.join(self._retry)
        self._acks = self._acked_at = 0  # the controller's acknowledges of IRQ8, the last
        self._timer = clock.timer(self._on_timer, "rtc")
        # Power-on values (QEMU rtc_realizefn): 32.768 kHz divider running, 976.5625 us
        # rate, BCD, 24-hour; D shows the battery good.
        self.bank0[REG_A] = 0x26
        self.bank0[REG_B] = H24
        self._arm()

    # -- derived state ------------------------------------------------------------------------
    @property
    def reg_a(self) -> int:
        return self.bank0[REG_A]

    @property
    def reg_b(self) -> int:
        return self.bank0[REG_B]

    def _running(self) -> bool:
        return self.reg_a & DV_MASK <= DV_32K

    def _updating(self) -> bool:
        """Update cycles happen: divider running and SET clear (else the bytes are frozen)."""
        return self._running() and not self.reg_b & SET

    def _fmt(self) -> rt.Format:
        b = self.reg_b
        return rt.Format(binary=bool(b & DM), h24=bool(b & H24))

    def _dse(self) -> bool:
        return bool(self.reg_b & DSE)

    def guest_ns(self, now: int | None = None) -> int:
        """The linear guest time (standard time, ns since 1970) the divider chain is at."""
        return self._base_ns + self.offset_ns + (self.clock.now() if now is None else now)

    def _period(self) -> int:
        return period_ticks(self.reg_a & RS_MASK)

    @property
    def irqf(self) -> bool:
        """IRQF = PF.PIE + AF.AIE + UF.UIE (MC146818A register C)."""
        return bool(self._flags & self.reg_b & FLAGS)

    def _alarm_cands(self) -> tuple[list[int], list[int], list[int]] | None:
        b = self.bank0
        return rt.alarm_candidates(
            (b[rt.SECONDS_ALARM], b[rt.MINUTES_ALARM], b[rt.HOURS_ALARM]), self._fmt()
        )

    def _next_alarm_second(self, first: int) -> int | None:
        cands = self._alarm_cands()
        if cands is None:
            return None
        return rt.next_alarm(first, cands, self._dse(), self._wday_adj)

    # -- time <-> registers -------------------------------------------------------------------
    def _clock_bytes(self, now: int) -> dict[int, int]:
        if self._updating():
            return rt.render(self.guest_ns(now) // NS, self._fmt(), self._dse(), self._wday_adj)
        return self._held_bytes()

    def _held_bytes(self) -> dict[int, int]:
        return {i: self.bank0[i] for i in rt.TIME_INDEXES}

    def _freeze(self, now: int) -> None:
        """Updates stop: the clock bytes keep the time they show now."""
        for i, v in self._clock_bytes(now).items():
            self.bank0[i] = v

    def _load_time(self, regs: dict[int, int], now: int, subsecond: int) -> None:
        """Take the time the clock bytes hold; the divider is `subsecond` ns into its second."""
        p = rt.parse(regs, self._fmt(), self._dse())
        if not p.valid:
            self.log.warning("rtc-bad-time", "rtc: guest set an out-of-range time %s", regs)
        self._wday_adj = p.wday_adj
        self.offset_ns = p.seconds * NS + subsecond - self._base_ns - now

    # -- event bookkeeping --------------------------------------------------------------------
    def _sync(self) -> int:
        """Latch the flags of every event in (last sync, now] under the current settings."""
        now = self.clock.now()
        last = self._synced
        if now <= last and (self._catchup_at is None or self._catchup_at > now):
            return last  # nothing new (an owed tick due at this very instant still counts)
        now = max(now, last)
        self._synced = now
        if not self._running():
            return now
        g0, g1 = self.guest_ns(last), self.guest_ns(now)
        period = self._period()
        edges = delivered = 0
        lost_before = self._lost
        if period:
            edges = g1 * TICK_HZ // NS // period - g0 * TICK_HZ // NS // period
            catchup = self._catchup_at is not None and self._catchup_at <= now
            if catchup:
                self._catchup_at = None
            if self.policy == "slew" and self.reg_b & PIE:
                pending = bool(self._flags & PF)
                offered = edges + (1 if catchup and self._lost else 0)
                delivered = 1 if offered and not pending else 0
                if delivered and self._order is not None:
                    due = self._tick_due(g1, period, self._lost + edges)
                    if not self._order.first(self._order_token, due):
                        delivered = 0  # another timer's older tick goes first
                limit = SLEW_MAX_OWED_S * TICK_HZ // period
                self._lost = min(limit, max(0, self._lost + edges - delivered))
                if delivered:
                    self._flags |= PF
                    if self._uf_hold:  # each delivery is the oldest owed tick
                        self._uf_hold -= 1
                        if not self._uf_hold:
                            self._flags |= UF  # the ticks before the update are all out
            elif edges:
                self._flags |= PF
        if not self.reg_b & SET and g1 // NS > g0 // NS:
            hold = 0
            if self.policy == "slew" and self.reg_b & PIE and period:
                # Ticks due up to this update and still owed: the flag follows them. The
                # owed ones are the oldest, so those due after the update come last.
                after = g1 * TICK_HZ // NS // period - (g1 // NS) * TICK_HZ // period
                hold = min(self._lost, max(0, lost_before + edges - after - delivered))
            if hold:
                self._uf_hold = hold
            else:
                self._flags |= UF
            first = g0 // NS + 1
            alarm = self._next_alarm_second(first)
            if alarm is not None and alarm <= g1 // NS:
                self._flags |= AF
        return now

    def _next_event(self, now: int) -> int | None:
        """Clock time of the next instant IRQ8 would rise, if any (None while it is high)."""
        if self.irqf or not self._running():
            return None
        b = self.reg_b
        g = self.guest_ns(now)
        to_clock = self._base_ns + self.offset_ns
        times: list[int] = []
        period = self._period()
        if b & PIE and period:
            k = g * TICK_HZ // NS // period + 1
            times.append(-(-k * period * NS // TICK_HZ) - to_clock)
            if self._catchup_at is not None:
                times.append(max(self._catchup_at, now))
        if not b & SET:
            nxt = g // NS + 1
            if b & UIE:
                times.append(nxt * NS - to_clock)
            if b & AIE:
                alarm = self._next_alarm_second(nxt)
                if alarm is not None:
                    times.append(alarm * NS - to_clock)
        return min(times) if times else None

    def _tick_due(self, g: int, period: int, outstanding: int) -> int:
        """Clock time the oldest of `outstanding` undelivered ticks up to guest time `g`
        was due (periodic ticks sit on the divider grid, one period apart)."""
        k = g * TICK_HZ // NS // period - max(0, outstanding - 1)
        return -(-k * period * NS // TICK_HZ) - self._base_ns - self.offset_ns

    def _tell_order(self) -> None:
        if self._order is None:
            return
        period = self._period()
        due = None
        serviced = TickOrder.serviced(self._acks, self._acked_at, self.clock.now())
        if self._lost and period and self._running() and serviced:
            due = min(self._tick_due(self.guest_ns(self._synced), period, self._lost), self._synced)
        self._order.owe(self._order_token, due)

    def _retry(self) -> None:
        """Another timer delivered its older tick: offer an owed one again (own timer)."""
        if self._lost and not self._flags & PF:
            now = self.clock.now()
            self._catchup_at = now
            self._timer.arm(now)

    def _arm(self) -> None:
        """Drive IRQ8 from IRQF and arm the timer for the next rising instant only."""
        self._tell_order()
        if self._uf_hold and not self._lost:
            self._release_uf()  # the owed ticks went (or were dropped) another way
        if self.irqf and not self.irq.level:
            self._irq_unacked = True
        self.irq.set(self.irqf)
        when = self._next_event(self.clock.now())
        if when is None:
            if self._timer.armed:
                self._timer.cancel()
        elif self._timer.deadline != when:
            self._timer.arm(when)

    def _on_timer(self) -> None:
        self._sync()
        self._arm()

    # -- register file ------------------------------------------------------------------------
    def _uip(self, now: int) -> bool:
        """UIP: set during the 244 us before each update cycle, never while SET or stopped."""
        if not self._updating():
            return False
        sub = self.guest_ns(now) % NS
        return sub * TICK_HZ >= (TICK_HZ - UIP_TICKS) * NS

    def _read0(self, idx: int, ack: bool) -> int:
        before = self._flags
        now = self._sync()
        if self._flags != before:
            self._arm()  # a late timer: raise IRQ8 now rather than when it fires
        if idx in _TIME_SET:
            return self._clock_bytes(now)[idx]
        if idx == REG_A:
            return self.reg_a | (UIP if self._uip(now) else 0)
        if idx == REG_C:
            value = self._flags | (IRQF if self.irqf else 0)
            if ack:
                self._ack_c(now)
            return value
        if idx == REG_D:
            return VRT  # the battery never runs down
        return self.bank0[idx]

    def _ack_c(self, now: int) -> None:
        """Reading C clears every flag and releases IRQ8; slew schedules an owed tick: at
        once when the controller acknowledged the last IRQ8, else QEMU's spacing."""
        self._flags = 0
        period = self._period()
        if self._lost and period and self.reg_b & PIE:
            if self._irq_unacked:
                divide = min(self._lost, SLEW_MAX_DIVIDE - 1) + 1
                self._catchup_at = now + period * NS // TICK_HZ // divide
            else:
                self._catchup_at = now
        self._arm()

    def _on_irq_ack(self) -> None:
        """The interrupt controller took IRQ8: an owed tick waiting for it goes out now."""
        self._irq_unacked = False
        self._acked_at = self.clock.now()
        self._acks += 1
        if self._catchup_at is not None and not self._flags & PF:
            now = self.clock.now()
            if self._catchup_at > now:
                self._catchup_at = now
                self._arm()

    def _release_uf(self) -> None:
        if self._uf_hold:
            self._uf_hold = 0
            self._flags |= UF

    def _write0(self, idx: int, value: int) -> None:
        now = self._sync()
        if idx in _TIME_SET:
            if self._updating():
                regs = self._clock_bytes(now)
                regs[idx] = value
                self._load_time(regs, now, self.guest_ns(now) % NS)
            else:
                self.bank0[idx] = value
        elif idx == REG_A:
            self._write_a(value, now)
        elif idx == REG_B:
            self._write_b(value, now)
        elif idx in (REG_C, REG_D):
            self.log.debug("rtc-ro", "rtc: write 0x%02x to read-only register 0x%x", value, idx)
        else:
            self.bank0[idx] = value  # alarm bytes and NVRAM
        self._arm()

    def _write_a(self, value: int, now: int) -> None:
        was_running = self._running()
        old_period = self._period()
        if was_running and value & DV_MASK > DV_32K and not self.reg_b & SET:
            self._freeze(now)
        self.bank0[REG_A] = value & ~UIP  # UIP is read-only
        if value & DV_MASK not in (0x00, 0x10, DV_32K, DV_RESET, DV_RESET | 0x10):
            self.log.debug(
                "rtc-dv", "rtc: divider 0x%x does not run on a 32.768 kHz crystal", value & DV_MASK
            )
        if self._running() and not was_running:
            # Out of reset: the chain restarts half a second before its first update.
            if self.reg_b & SET:
                g = self.guest_ns(now) // NS * NS + RESTART_PHASE_NS  # bytes read at SET=0
                self.offset_ns = g - self._base_ns - now
            else:
                self._load_time(self._held_bytes(), now, RESTART_PHASE_NS)
        new_period = self._period()
        if new_period != old_period:
            # Owed ticks keep their time, counted in the new period (QEMU scales them too).
            self._lost = self._lost * old_period // new_period if new_period else 0
            if not self._lost:
                self._catchup_at = None
            elif self._catchup_at is not None:
                self._catchup_at = min(self._catchup_at, now + new_period * NS // TICK_HZ)

    def _write_b(self, value: int, now: int) -> None:
        old = self.reg_b
        if value & SET:
            # "The UIE bit is cleared to 0 by the SET bit going high" (MC146818A register B).
            value &= ~UIE
            if not old & SET and self._running():
                self._freeze(now)
        if old & SET and not value & SET and self._running():
            # Updates resume from the bytes the guest wrote; the chain kept its phase.
            self.bank0[REG_B] = value
            self._load_time(self._held_bytes(), now, self.guest_ns(now) % NS)
        elif self._updating() and (old ^ value) & DSE:
            # Switching DSE re-reads the shown time, so the registers do not jump.
            regs = self._clock_bytes(now)
            self.bank0[REG_B] = value
            self._load_time(regs, now, self.guest_ns(now) % NS)
        self.bank0[REG_B] = value
        if not value & PIE:
            self._lost = 0
            self._catchup_at = None
            self._release_uf()

    # -- bus ------------------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if offset == 1:
            return self._read0(self.index, ack=True)
        if offset == 3:
            return self.bank1[self.index1]
        return 0xFF  # the index registers are write-only (QEMU answers 0xff too)

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if offset == 0:
            self.index = value & 0x7F
            self.nmi_masked = bool(value & 0x80)
        elif offset == 1:
            self._write0(self.index, value)
        elif offset == 2:
            self.index1 = value & 0x7F
        elif offset == 3:
            self.bank1[self.index1] = value

    # -- host side ------------------------------------------------------------------------------
    @staticmethod
    def _check_index(index: int) -> None:
        if not 0 <= index < 256:
            raise ValueError(f"CMOS index {index} outside 0-255 (0x80-0xff is the second bank)")

    def cmos_get(self, index: int) -> int:
        """What the guest would read at `index` (0x80-0xff: second bank), without acking C."""
        self._check_index(index)
        if index >= 128:
            return self.bank1[index - 128]
        return self._read0(index, ack=False)

    def cmos_set(self, index: int, value: int) -> None:
        """Preset an NVRAM byte (memory size, CPU count, boot order...)."""
        self._check_index(index)
        if not 0 <= value <= 0xFF:
            raise ValueError(f"CMOS value {value} is not a byte")
        if index >= 128:
            self.bank1[index - 128] = value
        elif index <= REG_D or index == rt.CENTURY:
            raise ValueError(f"CMOS index 0x{index:x} is a clock register, not NVRAM")
        else:
            self.bank0[index] = value

    def nvram_bytes(self) -> bytes:
        """Both banks (256 bytes), clock bytes as the guest would read them now."""
        return bytes(self.cmos_get(i) for i in range(256))

    def load_nvram(self, data: bytes) -> None:
        """Load saved NVRAM (128 or 256 bytes); clock and status bytes are left alone."""
        if len(data) not in (128, 256):
            raise ValueError(f"NVRAM image is {len(data)} bytes, expected 128 or 256")
        for i, v in enumerate(data):
            if i > REG_D and i != rt.CENTURY:
                self.cmos_set(i, v)

    def reset(self) -> None:
        """The RESET pin: clears PIE, AIE, UIE, SQWE and every flag; the clock keeps going."""
        self._sync()
        # QEMU (rtc_reset_enter) also clears the shutdown status byte unless it says S3
        # resume (0xfe), so firmware does not take a stale warm-boot path.
        if self.bank0[SHUTDOWN_STATUS] != 0xFE:
            self.bank0[SHUTDOWN_STATUS] = 0
        self.bank0[REG_B] &= ~(PIE | AIE | UIE | SQWE)
        self._flags = 0
        self._lost = 0
        self._catchup_at = None
        self._uf_hold = 0
        self._arm()

    # -- state ----------------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        """Versioned plain data; times relative to the clock so a restore resumes unshifted."""
        now = self._sync()
        bank0 = bytearray(self.bank0)
        if self._updating():
            for i, v in self._clock_bytes(now).items():
                bank0[i] = v
        return {
            **header(self),
            "bank0": bank0.hex(),
            "bank1": self.bank1.hex(),
            "index": self.index,
            "index1": self.index1,
            "nmi_masked": self.nmi_masked,
            "flags": self._flags,
            "guest_ns": self.guest_ns(now),
            "offset_ns": self.offset_ns,
            "wday_adj": self._wday_adj,
            "policy": self.policy,
            "lost": self._lost,
            "catchup_in": None if self._catchup_at is None else max(0, self._catchup_at - now),
            "uf_hold": self._uf_hold,
        }

    def restore(self, state: dict[str, Any]) -> None:
        state = check_header(state, self)
        banks = []
        for key in ("bank0", "bank1"):
            try:
                raw = bytes.fromhex(state.get(key, ""))
            except (TypeError, ValueError):
                raise StateError(f"field {key!r} is not hex") from None
            if len(raw) != 128:
                raise StateError(f"field {key!r} must hold 128 bytes")
            banks.append(bytearray(raw))
        bank0, bank1 = banks
        if bank0[REG_A] & UIP:
            raise StateError("register A: UIP is a status bit, not state")
        if bank0[REG_B] & SET and bank0[REG_B] & UIE:
            raise StateError("register B: SET clears UIE, both cannot be set")
        if bank0[REG_C] or bank0[REG_D]:
            raise StateError("registers C and D are not stored in the bank")
        flags = get_int(state, "flags", 0, 0xFF)
        if flags & ~FLAGS:
            raise StateError(f"flags 0x{flags:x}: only PF, AF and UF are latched")
        if state.get("policy") != self.policy:
            raise StateError(
                f"lost-tick policy {brief(state.get('policy'))} is not {self.policy!r}"
            )
        period = period_ticks(bank0[REG_A] & RS_MASK)
        slewing = self.policy == "slew" and bool(bank0[REG_B] & PIE) and period > 0
        lost = get_int(state, "lost", 0, SLEW_MAX_OWED_S * TICK_HZ // period if slewing else 0)
        catchup = state.get("catchup_in")
        if catchup is not None:
            catchup = get_int(state, "catchup_in", 0, period * NS // TICK_HZ if lost else -1)
        uf_hold = get_int(state, "uf_hold", 0, lost) if "uf_hold" in state else 0
        guest = get_int(state, "guest_ns", -_BOUND, _BOUND)
        offset = get_int(state, "offset_ns", -_BOUND, _BOUND)
        index = get_int(state, "index", 0, 0x7F)
        index1 = get_int(state, "index1", 0, 0x7F)
        nmi_masked = get_bool(state, "nmi_masked")
        wday_adj = get_int(state, "wday_adj", 0, 6)
        # Everything validated: only now replace the live state.
        now = self.clock.now()
        self.bank0, self.bank1 = bank0, bank1
        self.index, self.index1, self.nmi_masked = index, index1, nmi_masked
        self._flags = flags
        self._wday_adj = wday_adj
        self.offset_ns = offset
        self._base_ns = guest - offset - now
        self._lost = lost
        self._uf_hold = uf_hold
        self._catchup_at = None if catchup is None else now + catchup
        self._synced = now
        self._arm()
