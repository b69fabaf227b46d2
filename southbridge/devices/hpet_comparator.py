"""One HPET timer (comparator): its registers and, while the main counter runs, the closed-form
schedule of its matches. Pure arithmetic on main-counter ticks; the device (devices/hpet.py)
owns the clock, converts ticks to instants and arms one host timer per comparator.

Ticks here are *unbounded*: the device counts from the value the counter held when it was
enabled, so a counter the guest set near 2^64 keeps growing past it; the register value is the
low 64 bits. A comparator matches when the counter's low 64 bits (32 in Tn_32MODE) equal it.

Schedule, as QEMU's hw/timer/hpet.c hpet_set_timer arms it (on every Tn_CONF or Tn_COMPARATOR
write while the counter runs, and when the counter is enabled):
* 32-bit mode: the next counter value whose low 32 bits equal the comparator (now included);
* 64-bit mode: the comparator itself, or, when the counter has already passed it, an
  interrupt at once (QEMU arms a deadline in the past) and a periodic timer then continues on
  its grid (comparator + k * period) after now;
* periodic with a non-zero period (the hidden accumulator increment): every period after the
  first match; the register then reads the next match, computed exactly from the counter;
* a 32-bit one-shot whose match lies beyond the next 2^32 wrap also interrupts at the wrap
  (QEMU's wrap_flag, after the IA-PC HPET spec's 32-bit one-shot rule), then at the match;
* a late host timer that finds several periods gone delivers one interrupt (QEMU's behaviour:
  the comparator moves to the next match ahead), counted in `missed_ticks`.
"""

from __future__ import annotations

from collections.abc import Callable

MASK32 = 0xFFFF_FFFF
MASK64 = 0xFFFF_FFFF_FFFF_FFFF

# Tn_CONF_CAP bits (IA-PC HPET 1.0a, table 8).
TN_INT_TYPE = 1 << 1  # 1: level-triggered
TN_INT_ENB = 1 << 2
TN_TYPE_PERIODIC = 1 << 3
TN_PER_INT_CAP = 1 << 4
TN_SIZE_CAP = 1 << 5  # 64-bit comparator
TN_VAL_SET = 1 << 6
TN_32MODE = 1 << 8
TN_INT_ROUTE_SHIFT = 9
TN_INT_ROUTE_MASK = 0x1F << TN_INT_ROUTE_SHIFT
TN_FSB_EN = 1 << 14
TN_FSB_CAP = 1 << 15
# Writable bits: QEMU's HPET_TN_CFG_WRITE_MASK without Tn_FSB_EN_CNF, which the spec makes
# read-only 0 when Tn_FSB_INT_DEL_CAP is 0 (no FSB delivery here, as QEMU's pc without msi=on).
TN_WRITABLE = TN_INT_TYPE | TN_INT_ENB | TN_TYPE_PERIODIC | TN_VAL_SET | TN_32MODE
TN_WRITABLE |= TN_INT_ROUTE_MASK
# Read-only ones: every timer periodic- and 64-bit-capable, as QEMU's hpet_reset sets them.
TN_FIXED = TN_PER_INT_CAP | TN_SIZE_CAP

PENDING = ("none", "match", "wrap")


class Comparator:
    """Registers (config low 32 bits, comparator, period, FSB route) and the armed schedule."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.clamped_ticks = 0  # interrupts of a too-fast period, on the clamped grid
        self.missed_ticks = 0  # periods a late callback found gone (one interrupt for all)
        self.reset()

    def reset(self) -> None:
        """QEMU's hpet_reset: comparator all-ones, edge, disabled, one-shot, 64-bit."""
        self.config = TN_FIXED
        self.cmp = MASK64
        self.period = 0
        self.fsb = 0
        self.disarm()

    # -- register views ------------------------------------------------------------------
    @property
    def level(self) -> bool:
        return bool(self.config & TN_INT_TYPE)

    @property
    def enabled(self) -> bool:
        return bool(self.config & TN_INT_ENB)

    @property
    def mode32(self) -> bool:
        return bool(self.config & TN_32MODE)

    @property
    def route(self) -> int:
        return (self.config & TN_INT_ROUTE_MASK) >> TN_INT_ROUTE_SHIFT

    # -- schedule ------------------------------------------------------------------------
    def disarm(self) -> None:
        self.armed = False
        self.next: int | None = None  # first match of the armed schedule (unbounded ticks)
        self.step = 0  # its period (0: a single match)
        self.width_mask = MASK64
        self.seen = 0  # matches (or clamped-grid slots) already handled
        self.wrap_at: int | None = None  # 32-bit one-shot: the wrap interrupt before the match
        self.fire_now = False  # a 64-bit comparator the counter had passed (QEMU)
        self.arm_ns = 0
        self.clamped = False
        self.clamp_base_ns = 0

    def arm(self, c: int, now: int, ns_of: Callable[[int], int], min_period_ns: int) -> None:
        """Schedule from the registers at tick `c` (instant `now`)."""
        self.disarm()
        self.armed = True
        self.arm_ns = now
        periodic_bit = bool(self.config & TN_TYPE_PERIODIC)
        self.step = self.period if periodic_bit else 0
        self.width_mask = MASK32 if self.mode32 else MASK64
        cur = c & MASK64
        nxt: int | None
        if self.mode32:
            nxt = c + ((self.cmp - cur) & MASK32)
        elif self.cmp >= cur:
            nxt = c + (self.cmp - cur)
        else:
            self.fire_now = True
            nxt = None
            if self.step:
                behind = cur - self.cmp
                nxt = c - behind + (behind // self.step + 1) * self.step
        if self.mode32 and not periodic_bit and nxt is not None:
            wrap = (c | MASK32) + 1
            if nxt > wrap:
                self.wrap_at = wrap
        self.next = nxt
        # The storm guard: a period shorter than the minimum interrupts on a grid of the
        # minimum from its first match; the comparator register still reads exactly.
        self.clamped = bool(self.step) and self.step * 10 < min_period_ns and nxt is not None
        if self.clamped and nxt is not None:
            self.clamp_base_ns = ns_of(nxt)

    def matches(self, c: int) -> int:
        """Matches of the armed schedule up to tick `c`."""
        if self.next is None or c < self.next:
            return 0
        if self.step:
            return (c - self.next) // self.step + 1
        return 1

    def value(self, c: int) -> int:
        """The comparator register at tick `c`: a running periodic timer reads its next match."""
        if self.armed and self.step and self.next is not None:
            return (self.next + self.matches(c) * self.step) & self.width_mask
        return self.cmp

    def materialize(self, c: int) -> None:
        """Fold the schedule's progress into the register before the schedule changes."""
        self.cmp = self.value(c)

    def pending(self) -> str:
        """What the armed schedule still waits for: "wrap", "match" or "none" (a one-shot
        that matched, or a disarmed timer); only meaningful once due callbacks have run."""
        if not self.armed:
            return "none"
        if self.wrap_at is not None:
            return "wrap"
        if self.next is not None and (self.step or self.seen == 0):
            return "match"
        return "none"

    def next_deadline(self, ns_of: Callable[[int], int], min_period_ns: int) -> int | None:
        if not self.armed:
            return None
        out: list[int] = []
        if self.fire_now:
            out.append(self.arm_ns)
        if self.wrap_at is not None:
            out.append(ns_of(self.wrap_at))
        if self.next is not None:
            if self.clamped:
                out.append(self.clamp_base_ns + self.seen * min_period_ns)
            elif self.step:
                out.append(ns_of(self.next + self.seen * self.step))
            elif self.seen == 0:
                out.append(ns_of(self.next))
        return min(out) if out else None

    def on_deadline(self, c: int, now: int, min_period_ns: int) -> bool:
        """The host timer fired at tick `c` / instant `now`: whether to interrupt."""
        fire = False
        if self.fire_now:
            self.fire_now = False
            fire = True
        if self.wrap_at is not None and c >= self.wrap_at:
            self.wrap_at = None
            fire = True
        if self.next is not None:
            if self.clamped:
                slot = (
                    (now - self.clamp_base_ns) // min_period_ns + 1
                    if now >= self.clamp_base_ns
                    else 0
                )
                if slot > self.seen:
                    self.clamped_ticks += slot - self.seen
                    self.seen = slot
                    fire = True
            else:
                total = self.matches(c)
                if total > self.seen:
                    self.missed_ticks += total - self.seen - 1
                    self.seen = total
                    fire = True
        return fire

    def finish(self) -> None:
        """Restore of a one-shot that had already matched: nothing more until re-armed."""
        self.wrap_at = None
        self.fire_now = False
        self.seen = 1
