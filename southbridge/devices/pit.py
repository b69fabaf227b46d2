"""Intel 8254 programmable interval timer at ports 0x40-0x43 (channel 0 drives IRQ0).

Nothing ticks. Each channel keeps the instant its counting element (CE) was loaded and how
many CLK pulses had elapsed then; count and OUT at any instant are closed-form functions of
the pulses elapsed since, at exactly 1,193,182 Hz with integer arithmetic. Only channel 0's
next OUT transition is armed as a timer, so IRQ0 changes at the instant OUT does. Channel 2's
OUT is computed when port 0x61 is read.

Datasheet references are to the Intel 82C54 CHMOS Programmable Interval Timer (order number
231244). Simplification shared with QEMU: a count is loaded into CE at the instant it is
written rather than on the next CLK pulse, so pulse 0 of a sequence is the write itself.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

from southbridge.core.bcd import from_bcd, to_bcd
from southbridge.core.clock import Clock
from southbridge.core.device import BusDevice
from southbridge.core.irq import IrqLine, TickOrder
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.state import StateError, brief, check_header, get_bool, get_int, header
from southbridge.devices.port61 import Port61

PIT_HZ = 1_193_182
NS_PER_SEC = 1_000_000_000

# What channel 0 does with IRQ0 edges a late callback (HostClock fires late) or a slow guest
# would otherwise lose:
#   discard  deliver one edge now, drop the rest, next edge on the original grid;
#   delay    reinject, paced by the acknowledge: an edge is delivered only once the
#            interrupt controller acknowledged the one before (the 8259's INTA of IRQ0, or
#            a local APIC's EOI of the IOAPIC pin's vector, heard through the IRQ line's
#            `on_ack`); edges due meanwhile are owed and each acknowledge delivers one. So no
#            edge lands on a request still in IRR and merges with it, and none is lost to
#            a late host timer. This is KVM's in-kernel PIT in reinject mode
#            (arch/x86/kvm/i8254.c: pit_timer_fn counts `pending`, kvm_pit_ack_irq lets
#            pit_do_work inject the next);
#   catchup  deliver the missed edges at four per period alongside the regular ones (QEMU's
#            "slew"), then the grid alone.
# Counter reads are real time under every policy; only IRQ0 delivery differs.
LostTickPolicy = Literal["discard", "delay", "catchup"]
LOST_TICK_POLICIES: tuple[LostTickPolicy, ...] = ("discard", "delay", "catchup")
# QEMU's default: hw/i386/kvm/i8254.c defines the kvm-pit property "lost_tick_policy" with
# default LOST_TICK_POLICY_DELAY, i.e. KVM's reinject mode.
DEFAULT_POLICY: LostTickPolicy = "delay"
# Bound on owed (missed, not yet delivered) IRQ0 edges: a long host stall or a guest that
# never acknowledges must not queue unbounded work. 1000 is one second of ticks at HZ=1000;
# edges beyond it are dropped (counted in `dropped_ticks`).
MAX_OWED = 1000

# KVM's create_pit_timer limits a periodic PIT to min_timer_period_us (200 us by default):
# counts 1-238 in modes 2/3 would ask for up to 1.2 MHz of IRQ0 edges, each a host callback.
# Counter, OUT and port 0x61 reads stay exact; only IRQ0's edges come at most this often
# (on a grid from the programming instant), counted in `clamped_ticks`.
MIN_PERIOD_NS = 200_000

RW_LATCH, RW_LSB, RW_MSB, RW_WORD = 0, 1, 2, 3
_MAX_ABS = 1 << 62  # bound for restored times and pulse counts

_log = RateLimitedLog(logging.getLogger("southbridge.pit"))


def ticks_to_ns(ticks: int) -> int:
    """The first whole nanosecond at which `ticks` CLK pulses have elapsed (ceiling)."""
    return -((-ticks * NS_PER_SEC) // PIT_HZ)


BCD_DIGITS = 4  # the 8254's BCD mode counts four decades (0-9999, 0 meaning 10000)


def ns_to_ticks(ns: int) -> int:
    """CLK pulses elapsed in `ns` nanoseconds: exact floor, no float."""
    return (ns * PIT_HZ) // NS_PER_SEC


class Channel:
    """One counter: control word, count register (CR), output latch (OL) and counting element.

    All methods take the current time `now` (ns, never decreasing between calls).
    """

    def __init__(self, index: int, now: int) -> None:
        self.index = index
        self.reset(now)

    def reset(self, now: int) -> None:
        """QEMU's reset state (pit_reset_common): mode 3, count 0x10000, gate high but on
        channel 2, which port 0x61 gates; counting from now. Power-on contents are undefined
        on the real part; firmware reprograms them."""
        self.mode = 3  # the M2-M0 bits as programmed (6 and 7 alias modes 2 and 3)
        self.bcd = False
        self.rw = RW_WORD
        self.cr = 0  # count register as written (raw 16 bits)
        self.cr_valid = True  # a complete count was written since the last control word
        self.null_count = False
        self.write_msb_next = False  # write flip-flop (LSB-then-MSB access)
        self.write_lsb = 0
        self.read_msb_next = False  # read flip-flop, separate from the write one (datasheet)
        self.latch_value: int | None = None  # output latch after a latch command
        self.latch_state = 0  # bytes still to read from it: 1 LSB, 2 MSB, 3 LSB+MSB, 4 MSB
        self.status_latch: int | None = None
        self.gate = self.index != 2
        self.active = True  # CE holds a count and runs its sequence (modes 1/5: triggered)
        self.frozen = 0  # what CE reads while not active
        self.n = 0x10000  # count in CE, 1..65536 (0 programmed = 65536, or 10000 in BCD)
        self.base_ns = now  # elapsed pulses = base_d + pulses in (now - base_ns) if counting
        self.base_d = 0
        self.switch_d: int | None = None  # modes 2/3: CR -> CE when elapsed reaches this
        self.rises_acc = 0  # OUT rising edges of sequences already finished (for IRQ0)

    # -- derived -------------------------------------------------------------------------
    @property
    def eff_mode(self) -> int:
        return self.mode - 4 if self.mode >= 6 else self.mode

    @property
    def running(self) -> bool:
        """Whether CLK pulses decrement CE. Gate low stops counting in modes 0, 2, 3 and 4;
        in modes 1 and 5 the gate only triggers (datasheet, Gate Pin Operations Summary)."""
        return self.gate or self.eff_mode in (1, 5)

    def cr_count(self) -> int:
        """The count CR holds as CE would load it: 0 is the maximum (2^16, or 10^4 in BCD)."""
        if self.bcd:
            return from_bcd(self.cr, BCD_DIGITS) or 10000
        return self.cr or 0x10000

    def elapsed(self, now: int) -> int:
        if self.running:
            return self.base_d + ns_to_ticks(now - self.base_ns)
        return self.base_d

    def sync(self, now: int) -> None:
        """Apply a pending CR -> CE transfer (modes 2/3) whose instant has passed."""
        if self.switch_d is None or not self.active or self.elapsed(now) < self.switch_d:
            return
        s = self.switch_d
        self.rises_acc += self._local_rises(s)
        old_n, new_n = self.n, self.cr_count()
        # Mode 3 loads a new count at the end of a half-cycle: the next half is low if the
        # one that ended was high (datasheet, mode 3 "new count ... end of current half-cycle").
        phase0 = (new_n + 1) // 2 if self.eff_mode == 3 and s % old_n else 0
        self.base_d += phase0 - s  # keeps base_ns: the pulse grid stays exact
        self.n = new_n
        self.switch_d = None
        self.null_count = False

    def _local_rises(self, d: int) -> int:
        """OUT rising edges in the current sequence after `d` pulses."""
        m, n = self.eff_mode, self.n
        if m in (0, 1):
            return int(d >= n)
        if m in (2, 3):
            return d // n if n >= 2 else 0
        return int(d >= n + 1)

    def rises(self, now: int) -> int:
        """A monotone count of OUT rising edges caused by counting (not by programming)."""
        if not self.active:
            return self.rises_acc
        return self.rises_acc + self._local_rises(self.elapsed(now))

    def out(self, now: int) -> bool:
        m = self.eff_mode
        if not self.active:
            # Initial OUT after a control word: low in mode 0, high in all others.
            return m != 0
        d, n = self.elapsed(now), self.n
        if m in (0, 1):
            return d >= n
        if m == 2:  # low for one pulse when the count reaches 1; gate low forces it high
            return not self.gate or d % n != n - 1
        if m == 3:  # high for ceil(N/2) pulses, low for floor(N/2)
            return not self.gate or d % n < (n + 1) // 2
        return d != n  # modes 4/5: a one-pulse low strobe when the count reaches 0

    def value(self, now: int) -> int:
        """CE contents (an integer, 65536 allowed for a just-reloaded maximum count)."""
        if not self.active:
            return self.frozen
        m, d, n = self.eff_mode, self.elapsed(now), self.n
        if m == 2:
            return n - d % n
        if m == 3:
            # Even N: N, N-2, ... 2 per half. Odd N: N, N-1, N-3 ... 2 in the high half and
            # N, N-3, N-5 ... 2 in the low half (datasheet, mode 3 "odd counts").
            h, p = (n + 1) // 2, d % n
            if p < h:
                return n if p == 0 else n - 2 * p + (n & 1)
            q = p - h
            return n if q == 0 else n - 2 * q - (n & 1)
        # Modes 0, 1, 4, 5 wrap to FFFF (or 9999) and keep counting after terminal count.
        return (n - d) % (10000 if self.bcd else 0x10000)

    def encode(self, v: int) -> int:
        return to_bcd(v, BCD_DIGITS) if self.bcd else v & 0xFFFF

    def next_edge_ns(self, now: int) -> int | None:
        """Absolute instant of OUT's next change after `now`, or None if it stays put."""
        if not self.active or not self.running:
            return None
        m, d, n = self.eff_mode, self.elapsed(now), self.n
        k: int
        if m in (0, 1):
            if d >= n:
                return None
            k = n
        elif m in (2, 3):
            if n < 2:
                return None
            r = d % n
            h = n - 1 if m == 2 else (n + 1) // 2
            k = d + (h - r if r < h else n - r)
        else:
            if d > n:
                return None
            k = n if d < n else n + 1
        return self.base_ns + ticks_to_ns(k - self.base_d)

    def status(self, now: int) -> int:
        """Read-back status byte: OUT, NULL COUNT, RW1 RW0, M2 M1 M0, BCD (datasheet fig. 11)."""
        return (
            int(self.out(now)) << 7
            | int(self.null_count) << 6
            | self.rw << 4
            | self.mode << 1
            | int(self.bcd)
        )

    # -- sequencing ----------------------------------------------------------------------
    def _stop(self, now: int) -> None:
        """CE stops and holds its value (control word written, or mode 0 first count byte)."""
        if self.active:
            self.frozen = self.value(now)
            self.rises_acc = self.rises(now)
        self.active = False
        self.switch_d = None

    def _start(self, now: int) -> None:
        """Load CR into CE at `now` and begin a counting sequence."""
        self.rises_acc = self.rises(now)
        self.active = True
        self.n = self.cr_count()
        self.base_ns = now
        self.base_d = 0
        self.switch_d = None
        self.null_count = False

    def write_control(self, now: int, mode: int, rw: int, bcd: bool) -> None:
        self.sync(now)
        self._stop(now)
        self.mode, self.rw, self.bcd = mode, rw, bcd
        self.cr_valid = False
        self.null_count = True
        self.write_msb_next = False
        self.read_msb_next = False

    def write_data(self, now: int, byte: int) -> None:
        self.sync(now)
        if self.rw == RW_LSB:
            self.cr = byte
        elif self.rw == RW_MSB:
            self.cr = byte << 8
        elif not self.write_msb_next:
            self.write_lsb = byte
            self.write_msb_next = True
            if self.eff_mode == 0:
                # Mode 0: "writing the first byte disables counting; OUT is set low
                # immediately" (datasheet, mode 0).
                self._stop(now)
                self.null_count = True
            return
        else:
            self.cr = self.write_lsb | byte << 8
            self.write_msb_next = False
        self._load(now)

    def _load(self, now: int) -> None:
        """A complete count reached CR; when CE takes it depends on the mode."""
        self.cr_valid = True
        self.null_count = True
        m = self.eff_mode
        if m in (2, 3) and self.cr_count() == 1:
            _log.warning(
                "pit-count1", "pit: count 1 is illegal in mode %d (channel %d)", m, self.index
            )
        if self.bcd and any(((self.cr >> s) & 15) > 9 for s in (0, 4, 8, 12)):
            _log.warning("pit-bcd", "pit: non-BCD count %#06x (channel %d)", self.cr, self.index)
        if m in (0, 4) or (m in (2, 3) and not self.active):
            self._start(now)
        elif m in (2, 3):
            # Counting continues; the new count is loaded at the end of the current period
            # (mode 2) or half-cycle (mode 3) (datasheet, modes 2 and 3).
            d, n = self.elapsed(now), self.n
            if m == 2:
                self.switch_d = (d // n + 1) * n
            else:
                h, r = (n + 1) // 2, d % n
                self.switch_d = d - r + (h if r < h else n)
        # Modes 1 and 5 wait for a gate trigger to load CR.

    def set_gate(self, now: int, level: bool) -> None:
        self.sync(now)
        if level == self.gate:
            return
        m = self.eff_mode
        if self.active and m in (0, 2, 3, 4):
            # Freeze or resume the pulse count at `now`.
            self.base_d = self.elapsed(now)
            self.base_ns = now
        self.gate = level
        if level and self.cr_valid and m in (1, 2, 3, 5):
            # Rising edge: triggers modes 1/5 and reloads modes 2/3 (datasheet, gate table).
            self._start(now)

    def latch_count(self, now: int) -> None:
        """Counter latch: a second latch before the first is read is ignored (datasheet)."""
        self.sync(now)
        if self.latch_value is None:
            self.latch_value = self.encode(self.value(now))
            self.latch_state = self.rw

    def latch_status(self, now: int) -> None:
        self.sync(now)
        if self.status_latch is None:
            self.status_latch = self.status(now)

    def read_data(self, now: int) -> int:
        self.sync(now)
        if self.status_latch is not None:  # status first if both are latched (datasheet)
            v = self.status_latch
            self.status_latch = None
            return v
        if self.latch_value is not None:
            lv, st = self.latch_value, self.latch_state
            if st == 3:
                self.latch_state = 4
                return lv & 0xFF
            self.latch_value = None
            self.latch_state = 0
            return lv & 0xFF if st == 1 else lv >> 8
        v = self.encode(self.value(now))
        if self.rw == RW_LSB:
            return v & 0xFF
        if self.rw == RW_MSB:
            return v >> 8
        self.read_msb_next = not self.read_msb_next
        return v & 0xFF if self.read_msb_next else v >> 8

    # -- state ---------------------------------------------------------------------------
    def save(self, now: int) -> dict[str, Any]:
        self.sync(now)
        return {
            "mode": self.mode,
            "bcd": self.bcd,
            "rw": self.rw,
            "cr": self.cr,
            "cr_valid": self.cr_valid,
            "null_count": self.null_count,
            "write_msb_next": self.write_msb_next,
            "write_lsb": self.write_lsb,
            "read_msb_next": self.read_msb_next,
            "latch_value": self.latch_value,
            "latch_state": self.latch_state,
            "status_latch": self.status_latch,
            "gate": self.gate,
            "active": self.active,
            "frozen": self.frozen,
            "n": self.n,
            # Times relative to the clock at save, so a restored clock may start anywhere.
            "base_rel_ns": self.base_ns - now,
            "base_d": self.base_d,
            "switch_d": self.switch_d,
        }

    def restore(self, st: dict[str, Any], now: int) -> None:
        if not isinstance(st, dict):
            raise StateError("pit channel: state must be a mapping")
        mode = get_int(st, "mode", 0, 7)
        rw = get_int(st, "rw", 1, 3)
        latch_value = st.get("latch_value")
        if latch_value is not None:
            latch_value = get_int(st, "latch_value", 0, 0xFFFF)
            latch_state = get_int(st, "latch_state", 1, 4)
        else:
            latch_state = get_int(st, "latch_state", 0, 0)
        status_latch = (
            None if st.get("status_latch") is None else get_int(st, "status_latch", 0, 0xFF)
        )
        switch_d = (
            None if st.get("switch_d") is None else get_int(st, "switch_d", -_MAX_ABS, _MAX_ABS)
        )
        new = {
            "mode": mode,
            "bcd": get_bool(st, "bcd"),
            "rw": rw,
            "cr": get_int(st, "cr", 0, 0xFFFF),
            "cr_valid": get_bool(st, "cr_valid"),
            "null_count": get_bool(st, "null_count"),
            "write_msb_next": get_bool(st, "write_msb_next"),
            "write_lsb": get_int(st, "write_lsb", 0, 0xFF),
            "read_msb_next": get_bool(st, "read_msb_next"),
            "latch_value": latch_value,
            "latch_state": latch_state,
            "status_latch": status_latch,
            "gate": get_bool(st, "gate"),
            "active": get_bool(st, "active"),
            "frozen": get_int(st, "frozen", 0, 0x10000),
            "n": get_int(st, "n", 1, 0x10000),
            "base_ns": now + get_int(st, "base_rel_ns", -_MAX_ABS, 0),
            "base_d": get_int(st, "base_d", -_MAX_ABS, _MAX_ABS),
            "switch_d": switch_d,
        }
        em = mode - 4 if mode >= 6 else mode
        if new["write_msb_next"] and rw != RW_WORD:
            raise StateError("pit channel: write flip-flop set outside LSB-then-MSB access")
        if new["read_msb_next"] and rw != RW_WORD:
            raise StateError("pit channel: read flip-flop set outside LSB-then-MSB access")
        if not new["cr_valid"] and not new["null_count"]:
            raise StateError("pit channel: CR never loaded but null count is clear")
        if new["active"] and em in (1, 5) and not new["cr_valid"]:
            raise StateError("pit channel: one-shot triggered without a count")
        if switch_d is not None and not (em in (2, 3) and new["active"] and new["null_count"]):
            raise StateError("pit channel: pending reload outside a running mode 2/3 count")
        # Called on a fresh Channel only (Pit.restore), so a rejected state leaves the live
        # device untouched.
        for k, v in new.items():
            setattr(self, k, v)
        d = self.elapsed(now)
        if d < 0 or (switch_d is not None and not d < switch_d <= d + self.n):
            raise StateError("pit channel: elapsed count out of range")
        self.rises_acc = 0


class Pit(BusDevice):
    """The 8254 at 0x40-0x43 (register with length 4) plus its port 0x61 companion."""

    STATE_KIND: ClassVar[str] = "i8254"
    STATE_VERSION: ClassVar[int] = 1

    io_sizes = frozenset({1})
    name = "pit"

    def __init__(
        self,
        clock: Clock,
        out0: IrqLine | None = None,
        policy: LostTickPolicy = DEFAULT_POLICY,
        min_period_ns: int = MIN_PERIOD_NS,
        order: TickOrder | None = None,
    ) -> None:
        if policy not in LOST_TICK_POLICIES:
            raise ValueError(f"lost tick policy must be one of {', '.join(LOST_TICK_POLICIES)}")
        if min_period_ns < 0:
            raise ValueError("min_period_ns must not be negative")
        self.min_period_ns = min_period_ns
        self.clamped_ticks = 0  # IRQ0 edges of a too-fast mode 2/3 count, on the clamped grid
        self._clamp_base = 0
        self._clamp_seen = 0
        self.clock = clock
        self.policy: LostTickPolicy = policy
        self.out0 = out0
        now = clock.now()
        self.channels = [Channel(i, now) for i in range(3)]
        self.port61 = Port61(self)
        self._timer = clock.timer(self._on_timer, "pit-ch0")
        self._rises_seen = 0
        self._owed = 0  # missed IRQ0 edges still to deliver (policies delay/catchup)
        self._owed_at: int | None = None
        self._awaiting_ack = False  # delay: an edge went out and was not acknowledged yet
        self._pumping = False
        self.dropped_ticks = 0  # edges discarded (policy discard, or over MAX_OWED)
        self.late_ticks = 0  # edges delivered after their instant
        if out0 is not None:
            out0.on_ack(self._on_ack)
        # The machine's reinjecting timers deliver owed ticks oldest first (core/irq.py).
        self._order = order
        self._order_token = -1 if order is None else order.join(self._retry)
        self._acks = self._acked_at = 0  # acknowledges since channel 0 was programmed, last
        self.irq_enabled = True  # False while the HPET's legacy route owns IRQ0
        self._resync(now)

    def reset(self) -> None:
        now = self.clock.now()
        for ch in self.channels:
            ch.reset(now)
        self.port61.reset()
        self._owed = 0
        self._awaiting_ack = False
        self._acks = 0
        self._resync(now)

    # -- channel 0 output -> IRQ0 ------------------------------------------------------------
    def _resync(self, now: int) -> None:
        """After programming: the line takes OUT0's level now and the timer its next edge."""
        ch = self.channels[0]
        ch.sync(now)
        self._rises_seen = ch.rises(now)
        self._clamp_base, self._clamp_seen = now, 0
        line = self.out0
        if line is not None:
            level = ch.out(now) and not self._clamped()
            if self.policy == "delay" and level and not line.level:
                if self._awaiting_ack:
                    level = False  # no edge onto a request still unacknowledged
                else:
                    self._awaiting_ack = True  # programming OUT high is a request too
            line.set(level)
        self._arm(now)

    def set_irq_enabled(self, enabled: bool) -> None:
        """The HPET's legacy replacement route takes IRQ0 (QEMU's pit_irq_control, KVM's
        KVM_PIT_FLAGS_HPET_LEGACY): channel 0 then arms no timer and owes no ticks, so none
        pour in when IRQ0 comes back; from then on IRQ0 follows OUT0 again. Counting, OUT0
        and port 0x61 are unaffected."""
        enabled = bool(enabled)
        if enabled == self.irq_enabled:
            return
        self.irq_enabled = enabled
        now = self.clock.now()
        self._owed = 0
        self._awaiting_ack = False
        self._tell_order(now)
        self._resync(now)

    def _arm(self, now: int) -> None:
        if self.out0 is None or not self.irq_enabled:
            self._timer.cancel()
            return
        ch = self.channels[0]
        deadline = ch.next_edge_ns(now)
        if deadline is not None and self._clamped():
            deadline = self._clamp_base + (self._clamp_seen + 1) * self.min_period_ns
        self._owed_at = None
        if self._owed and self.policy == "catchup":
            # Four owed edges per period until caught up (QEMU "slew"); delay's owed edges
            # wait for acknowledges instead of a timer.
            self._owed_at = now + max(1, ticks_to_ns(ch.n) // 4)
            deadline = self._owed_at if deadline is None else min(deadline, self._owed_at)
        if deadline is None:
            self._timer.cancel()
        else:
            self._timer.arm(deadline)

    def _deliver(self, line: IrqLine, level: bool) -> None:
        """One rising edge (the PIC latches IRQ0 on edges), ending at OUT's level."""
        line.set(False)
        line.set(True)
        line.set(level)

    def _owe(self, edges: int) -> None:
        room = MAX_OWED - self._owed
        self._owed += min(edges, room)
        self.dropped_ticks += max(0, edges - room)

    def _on_timer(self) -> None:
        line = self.out0
        if line is None or not self.irq_enabled:
            return
        now = self.clock.now()
        ch = self.channels[0]
        ch.sync(now)
        total = ch.rises(now)
        new = total - self._rises_seen
        self._rises_seen = total
        level = ch.out(now)
        if self._clamped():
            # Too fast to follow: one edge per minimum period, the line resting low.
            index = (now - self._clamp_base) // self.min_period_ns
            new, self._clamp_seen = index - self._clamp_seen, index
            self.clamped_ticks += new
            level = False
        if self.policy == "delay":
            if new > 0:
                self.late_ticks += new - 1
                self._owe(new)
            if self._awaiting_ack and self._owed >= MAX_OWED:
                # A full second owed and still no acknowledge: the request was lost (the
                # guest re-initialised its controllers, reset its APIC, masks IRQ0
                # everywhere). Drop the debt and start afresh, so IRQ0 never stays dead.
                self.dropped_ticks += self._owed - 1
                self._owed = 1
                self._awaiting_ack = False
            if self._owed and not self._awaiting_ack:
                self._pump(line, level)
            else:
                self._tell_order(now)
            # An edge waiting for its acknowledge must not rise the line: it would merge
            # with the request still pending. Falling is always let through.
            line.set(level and line.level)
        elif new > 0:
            # Late callbacks find several edges due: deliver one now, then per policy.
            self._deliver(line, level)
            missed = new - 1
            if missed:
                if self.policy == "discard":
                    self.dropped_ticks += missed
                else:
                    self.late_ticks += missed
                    self._owe(missed)
        elif self._owed and self._owed_at is not None and now >= self._owed_at:
            self._owed -= 1
            self._deliver(line, level)
        else:
            line.set(level)
        self._arm(now)

    def _clamped(self) -> bool:
        """Whether channel 0 runs a periodic count shorter than the minimum period."""
        ch = self.channels[0]
        return (
            ch.active
            and ch.running
            and ch.eff_mode in (2, 3)
            and ticks_to_ns(ch.n) < self.min_period_ns
        )

    def _on_ack(self) -> None:
        """The interrupt controller acknowledged IRQ0: under "delay", the next owed edge."""
        line = self.out0
        if self.policy != "delay" or line is None:
            return
        self._awaiting_ack = False
        self._acked_at = self.clock.now()
        self._acks += 1
        if self._owed and not self._pumping:
            now = self.clock.now()
            ch = self.channels[0]
            ch.sync(now)
            self._pump(line, ch.out(now) and not self._clamped())

    def _pump(self, line: IrqLine, level: bool) -> None:
        """Deliver owed edges, each once the one before was acknowledged (and no other timer
        owes an older tick). A controller that acknowledges inside the delivery (at once) is
        looped here, not recursed into."""
        self._pumping = True
        now = self.clock.now()
        try:
            while self._owed and not self._awaiting_ack:
                if self._order is not None and not self._order.first(
                    self._order_token, self._oldest_due(now)
                ):
                    break  # another timer's older tick first; its progress retries us
                self._owed -= 1
                self._awaiting_ack = True
                self._deliver(line, level)
        finally:
            self._pumping = False
            self._tell_order(now)

    def _oldest_due(self, now: int) -> int:
        """When the oldest owed edge was due: owed edges are the last ones before now, one
        period apart (periodic modes; a one-shot's single edge is taken as due now)."""
        ch = self.channels[0]
        behind = max(0, self._owed - 1)
        if self._clamped():
            return now - behind * self.min_period_ns
        if not (ch.active and ch.eff_mode in (2, 3)):
            return now
        d = ch.elapsed(now)  # a periodic OUT rises as the count reloads: d a multiple of n
        last = ch.base_ns + ticks_to_ns(d // ch.n * ch.n - ch.base_d)
        return min(last, now) - behind * ticks_to_ns(ch.n)

    def _tell_order(self, now: int) -> None:
        if self._order is not None:
            serviced = TickOrder.serviced(self._acks, self._acked_at, now)
            due = self._oldest_due(now) if self._owed and serviced else None
            self._order.owe(self._order_token, due)

    def _retry(self) -> None:
        """Another timer delivered its older tick: look again soon (from our own timer)."""
        if self._owed and not self._awaiting_ack:
            self._timer.arm(self.clock.now())

    @property
    def owed_ticks(self) -> int:
        """IRQ0 edges due but not delivered yet (bounded by MAX_OWED)."""
        return self._owed

    def _service(self, now: int) -> None:
        """Run an overdue channel 0 callback before an access (a late host timer thread)."""
        d = self._timer.deadline
        if d is not None and d <= now:
            self._timer.cancel()
            self._on_timer()

    # -- bus -----------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        now = self.clock.now()
        self._service(now)
        if offset >= 3:
            # The control word register is write-only; a read is a no-op with the data bus
            # in 3-state (datasheet, read/write operations summary), i.e. 0xFF on ISA.
            # (QEMU's pit_ioport_read answers 0; no guest depends on either.)
            _log.debug("pit-read43", "pit: read of the write-only control port")
            return 0xFF
        return self.channels[offset].read_data(now)

    def write(self, offset: int, size: int, value: int) -> None:
        now = self.clock.now()
        self._service(now)
        value &= 0xFF
        touches0 = offset == 0
        if offset >= 3:
            sc = value >> 6
            if sc == 3:
                self._read_back(now, value)
                return
            ch = self.channels[sc]
            rw = (value >> 4) & 3
            if rw == RW_LATCH:
                ch.latch_count(now)
                return
            ch.write_control(now, (value >> 1) & 7, rw, bool(value & 1))
            touches0 = sc == 0
            if touches0:
                # A new programming discards the old schedule's debt and forgets the wait
                # for an acknowledge, as KVM's kvm_pit_reset_reinject does.
                self._owed = 0
                self._awaiting_ack = False
                self._acks = 0
                self._tell_order(now)
        else:
            self.channels[offset].write_data(now, value)
        if touches0:
            self._resync(now)

    def _read_back(self, now: int, value: int) -> None:
        """Read-back command: bit 5 low latches counts, bit 4 low latches status, for every
        counter whose select bit (1-3) is set (datasheet, read-back command)."""
        for i, ch in enumerate(self.channels):
            if value & (2 << i):
                if not value & 0x20:
                    ch.latch_count(now)
                if not value & 0x10:
                    ch.latch_status(now)

    # -- gates and outputs (port 0x61, tests) --------------------------------------------
    def set_gate(self, channel: int, level: bool) -> None:
        now = self.clock.now()
        self._service(now)
        self.channels[channel].set_gate(now, bool(level))
        if channel == 0:
            self._resync(now)

    def out(self, channel: int) -> bool:
        now = self.clock.now()
        ch = self.channels[channel]
        ch.sync(now)
        return ch.out(now)

    # -- state ---------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        now = self.clock.now()
        self._service(now)
        return header(self) | {
            "channels": [ch.save(now) for ch in self.channels],
            "owed": self._owed,
            "awaiting_ack": self._awaiting_ack,
            "port61": self.port61.save(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        # The lost-tick policy is host configuration, not guest-visible state: not restored.
        state = check_header(state, self)
        chans = state.get("channels")
        if not isinstance(chans, list) or len(chans) != 3:
            raise StateError("i8254: need exactly three channels")
        owed = get_int(state, "owed", 0, MAX_OWED)
        awaiting = state.get("awaiting_ack", False)  # absent in states saved before it
        if not isinstance(awaiting, bool):
            raise StateError(f"i8254: field 'awaiting_ack'={brief(awaiting)} is not a boolean")
        now = self.clock.now()
        fresh = [Channel(i, now) for i in range(3)]
        for ch, st in zip(fresh, chans, strict=True):
            ch.restore(st, now)
        self.port61.restore(state.get("port61"))  # validates before anything else changes
        self.channels = fresh
        self._owed = owed
        self._awaiting_ack = awaiting
        self._resync(now)
