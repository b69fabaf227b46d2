"""IA-PC HPET 1.0a event timer block at 0xFED00000 (1 KiB), as QEMU's pc has it.

Registers (offsets): 0x000 General Capabilities and ID (vendor 8086, revision 1, three
timers, 64-bit counter, legacy replacement capable; period 10 ns = 100 MHz in the high half),
0x010 General Configuration (ENABLE_CNF, LEG_RT_CNF), 0x020 General Interrupt Status (level
timers' status, write 1 to clear), 0x0F0 the main counter, and per timer n at 0x100 + 0x20 n:
Tn_CONF_CAP (routing capability in the high half), Tn_COMPARATOR, Tn_FSB_INT_ROUTE (kept,
unused: no FSB delivery). 4- and 8-byte aligned accesses; other sizes or alignments read 0 and
are dropped, as QEMU's memory core treats an access outside the region's valid sizes.

Nothing ticks: the counter is computed from the clock (exactly 100 MHz, ticks = elapsed ns /
10 from the instant it was enabled), and each comparator arms one host timer for its next
interrupt only (devices/hpet_comparator.py has the schedule rules).

Interrupts: `lines` maps I/O APIC inputs to the device's lines. A level-triggered timer sets
its status bit at a match and holds its line while the bit is set, the timer's Tn_INT_ENB and
the counter's ENABLE_CNF are on (IA-PC HPET 1.0a 2.3.6: a disabled timer still sets status);
an edge timer pulses its line. Routes outside the capability mask (QEMU's pc: 0x4, IRQ2 only)
deliver nothing (logged). With ENABLE_CNF and LEG_RT_CNF both set (spec 2.3.7: the legacy
route applies when both are) timer 0 goes to I/O APIC input 2 (the 8259's IRQ0) and timer 1 to
input 8, and the `legacy_listeners` hear True: the machine disconnects the PIT's and the RTC's
outputs then (QEMU gates them on LEG_RT_CNF alone; Linux sets ENABLE first either way).

Timer storms: a periodic comparator faster than MIN_PERIOD_NS (KVM's 200 us, as the PIT and
the LAPIC clamp) interrupts on a grid of that period from its first match, counted in
`clamped_ticks`; the counter and the comparator register still read exactly. A late host
callback delivers one interrupt for all the periods it missed (QEMU's policy). A restored
state keeps the counter's phase to the ns; a clamped grid restarts at the next match.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, ClassVar

from southbridge.core.clock import Clock
from southbridge.core.device import BusDevice
from southbridge.core.irq import IrqLine
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.state import StateError, brief, check_header, get_int, header
from southbridge.devices import hpet_comparator as hc
from southbridge.devices.hpet_comparator import MASK32, MASK64, Comparator

BASE = 0xFED00000
WINDOW_SIZE = 0x400
TIMERS = 3
PERIOD_FS = 10_000_000  # 10 ns: QEMU's HPET_CLK_PERIOD
TICK_NS = 10
# General Capabilities and ID, low half: vendor 8086, LEG_RT_CAP, COUNT_SIZE_CAP, NUM_TIM_CAP
# = timers - 1, REV_ID 1 (QEMU's 0x8086a001 | 2 << 8).
CAP_ID = 0x8086 << 16 | 1 << 15 | 1 << 13 | (TIMERS - 1) << 8 | 0x01
CAPABILITIES = PERIOD_FS << 32 | CAP_ID
# QEMU's pc (pc_piix.c passes 0x4 to pc_basic_device_init): only I/O APIC input 2.
PC_INTCAP = 0x4
# Legacy replacement: timer 0 -> I/O APIC input 2 (8259 IRQ0), timer 1 -> input 8 (IRQ8).
LEGACY_PINS = (2, 8)

CFG_ENABLE = 1 << 0
CFG_LEGACY = 1 << 1

REG_ID, REG_CONFIG, REG_STATUS, REG_COUNTER = 0x000, 0x010, 0x020, 0x0F0
TIMER_BASE, TIMER_STRIDE = 0x100, 0x20
TN_CONFIG, TN_COMPARATOR, TN_FSB = 0x00, 0x08, 0x10

# KVM's min_timer_period_us, as the PIT and the LAPIC clamp periodic timers (pit.py).
MIN_PERIOD_NS = 200_000

_log = RateLimitedLog(logging.getLogger("southbridge.hpet"))


def _deposit(old: int, shift: int, length: int, value: int) -> int:
    mask = ((1 << length) - 1) << shift
    return (old & ~mask) | ((value << shift) & mask)


class Hpet(BusDevice):
    STATE_KIND: ClassVar[str] = "hpet"
    STATE_VERSION: ClassVar[int] = 1

    io_sizes = frozenset({1, 2, 4, 8})
    name = "hpet"

    def __init__(
        self,
        clock: Clock,
        lines: Mapping[int, IrqLine],
        intcap: int = PC_INTCAP,
        min_period_ns: int = MIN_PERIOD_NS,
    ) -> None:
        if not 0 <= intcap <= MASK32:
            raise ValueError("intcap is a 32-bit mask")
        if min_period_ns < 0:
            raise ValueError("min_period_ns must not be negative")
        self.clock = clock
        self.lines = dict(lines)
        self.intcap = intcap
        self.min_period_ns = min_period_ns
        self.legacy_listeners: list[Callable[[bool], None]] = []
        self.comparators = [Comparator(i) for i in range(TIMERS)]
        self._timers = [clock.timer(partial(self._on_timer, i), f"hpet-t{i}") for i in range(3)]
        self.config = 0
        self.isr = 0
        self._counter = 0  # the counter when disabled; its value at `_base_ns` when enabled
        self._base_ns = clock.now()
        self._legacy_seen = False

    def reset(self) -> None:
        self.config = 0
        self.isr = 0
        self._counter = 0
        self._base_ns = self.clock.now()
        for comp, timer in zip(self.comparators, self._timers, strict=True):
            comp.reset()
            timer.cancel()
        self._update_lines()

    # -- counter -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return bool(self.config & CFG_ENABLE)

    @property
    def legacy(self) -> bool:
        """Whether the legacy replacement route is in force (ENABLE_CNF and LEG_RT_CNF)."""
        return self.config & (CFG_ENABLE | CFG_LEGACY) == CFG_ENABLE | CFG_LEGACY

    def _ticks(self, now: int) -> int:
        """Unbounded main-counter ticks at `now` (the register is the low 64 bits)."""
        if self.running:
            return self._counter + (now - self._base_ns) // TICK_NS
        return self._counter

    def _ns_of(self, tick: int) -> int:
        """The instant the running counter reaches `tick`."""
        return self._base_ns + (tick - self._counter) * TICK_NS

    def counter(self) -> int:
        """The main counter register now."""
        return self._ticks(self.clock.now()) & MASK64

    @property
    def clamped_ticks(self) -> int:
        return sum(c.clamped_ticks for c in self.comparators)

    # -- timers --------------------------------------------------------------------------
    def _arm(self, i: int, now: int) -> None:
        comp = self.comparators[i]
        comp.arm(self._ticks(now), now, self._ns_of, self.min_period_ns)
        self._schedule()

    def _schedule(self) -> None:
        """Arm every comparator's timer for its next event, in index order: comparators
        matching at the same instant then fire in index order however they were programmed
        (the clock runs same-instant timers in arming order), so a restored HPET interrupts
        exactly like the original."""
        for comp, timer in zip(self.comparators, self._timers, strict=True):
            deadline = comp.next_deadline(self._ns_of, self.min_period_ns)
            if deadline is None:
                timer.cancel()
            else:
                timer.cancel()
                timer.arm(deadline)

    def _on_timer(self, i: int) -> None:
        if not self.running:
            return
        now = self.clock.now()
        comp = self.comparators[i]
        if comp.on_deadline(self._ticks(now), now, self.min_period_ns):
            self._interrupt(i)
        self._schedule()

    def _service(self, now: int) -> None:
        """Run overdue timer callbacks before an access (a late host timer thread)."""
        for i, timer in enumerate(self._timers):
            d = timer.deadline
            if d is not None and d <= now:
                timer.cancel()
                self._on_timer(i)

    # -- interrupts ----------------------------------------------------------------------
    def _pin(self, i: int) -> int:
        if i < len(LEGACY_PINS) and self.legacy:
            return LEGACY_PINS[i]
        return self.comparators[i].route

    def _line(self, i: int) -> IrqLine | None:
        pin = self._pin(i)
        line = self.lines.get(pin)
        if line is None or not ((self.legacy and i < 2) or self.intcap >> pin & 1):
            _log.warning("hpet-route", "hpet: timer %d routed to unconnected input %d", i, pin)
            return None
        return line

    def _asserting(self, i: int) -> bool:
        comp = self.comparators[i]
        return self.running and comp.enabled and comp.level and bool(self.isr >> i & 1)

    def _interrupt(self, i: int) -> None:
        """A match (QEMU's update_irq(timer, 1)): status for level timers, then the line."""
        comp = self.comparators[i]
        if comp.level:
            self.isr |= 1 << i
            self._update_lines()
        elif comp.enabled:
            line = self._line(i)
            if line is not None and not line.level:  # an edge onto a held line merges
                line.pulse()

    def _update_lines(self) -> None:
        """Each line high while a level timer routed to it asserts; the legacy gates."""
        want = {pin: False for pin in self.lines}
        for i in range(TIMERS):
            if self._asserting(i):
                line = self._line(i)
                if line is not None:
                    want[self._pin(i)] = True
        for pin, level in want.items():
            self.lines[pin].set(level)
        legacy = self.legacy
        if legacy != self._legacy_seen:
            self._legacy_seen = legacy
            for fn in list(self.legacy_listeners):
                fn(legacy)

    # -- registers -----------------------------------------------------------------------
    def _timer_reg(self, offset: int) -> tuple[int, int] | None:
        n, reg = divmod(offset - TIMER_BASE, TIMER_STRIDE)
        if n >= TIMERS:
            return None
        return n, reg & ~7

    def _read64(self, reg: int, now: int) -> int:
        if reg >= TIMER_BASE:
            where = self._timer_reg(reg)
            if where is None:
                return 0
            n, treg = where
            comp = self.comparators[n]
            if treg == TN_CONFIG:
                return self.intcap << 32 | comp.config
            if treg == TN_COMPARATOR:
                return comp.value(self._ticks(now))
            if treg == TN_FSB:
                return comp.fsb
            return 0
        if reg == REG_ID:
            return CAPABILITIES
        if reg == REG_CONFIG:
            return self.config
        if reg == REG_STATUS:
            return self.isr
        if reg == REG_COUNTER:
            return self._ticks(now) & MASK64
        return 0

    @staticmethod
    def _valid(offset: int, size: int) -> bool:
        return size in (4, 8) and offset % size == 0 and 0 <= offset < WINDOW_SIZE

    def read(self, offset: int, size: int) -> int:
        if not self._valid(offset, size):
            _log.debug("hpet-size", "hpet: %d-byte read at %#x reads 0", size, offset)
            return 0
        now = self.clock.now()
        self._service(now)
        shift = (offset & 4) * 8
        return (self._read64(offset & ~7, now) >> shift) & ((1 << (8 * size)) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        if not self._valid(offset, size):
            _log.debug("hpet-size", "hpet: %d-byte write at %#x dropped", size, offset)
            return
        now = self.clock.now()
        self._service(now)
        shift = (offset & 4) * 8
        length = min(size * 8, 64 - shift)
        value &= (1 << length) - 1
        reg = offset & ~7
        if reg >= TIMER_BASE:
            where = self._timer_reg(reg)
            if where is not None:
                self._write_timer(where[0], where[1], shift, length, value, now)
        elif reg == REG_CONFIG:
            self._write_config(_deposit(self.config, shift, length, value) & 3, now)
        elif reg == REG_STATUS:
            cleared = (value << shift) & self.isr
            if cleared:
                self.isr &= ~cleared
                self._update_lines()
        elif reg == REG_COUNTER:
            if self.running:
                # QEMU keeps such a write in a field the running counter never reads.
                _log.warning("hpet-counter", "hpet: main counter written while enabled")
            else:
                self._counter = _deposit(self._counter, shift, length, value)

    def _write_config(self, new: int, now: int) -> None:
        old = self.config
        if new & ~old & CFG_ENABLE:
            self._counter &= MASK64
            self._base_ns = now
            self.config = new
            for i in range(TIMERS):
                self._arm(i, now)
        elif old & ~new & CFG_ENABLE:
            c = self._ticks(now)
            for comp, timer in zip(self.comparators, self._timers, strict=True):
                comp.materialize(c)
                comp.disarm()
                timer.cancel()
            self._counter = c & MASK64
            self.config = new
        self.config = new
        self._update_lines()

    def _write_timer(
        self, n: int, treg: int, shift: int, length: int, value: int, now: int
    ) -> None:
        comp = self.comparators[n]
        c = self._ticks(now)
        if treg == TN_CONFIG:
            if shift:
                return  # the routing capability half is read-only
            comp.materialize(c)
            new = (comp.config & ~hc.TN_WRITABLE) | (value & hc.TN_WRITABLE)
            if comp.level and not new & hc.TN_INT_TYPE:
                self.isr &= ~(1 << n)  # leaving level mode drops the status (QEMU)
            comp.config = new
            if new & hc.TN_32MODE:
                comp.cmp &= MASK32
                comp.period &= MASK32
            if self.running:
                self._arm(n, now)
            self._update_lines()
        elif treg == TN_COMPARATOR:
            comp.materialize(c)
            if comp.mode32:
                if shift:
                    return  # the high half of a 32-bit comparator reads 0 and stays so
                length, value = 64, value & MASK32
            periodic = bool(comp.config & hc.TN_TYPE_PERIODIC)
            if not periodic or comp.config & hc.TN_VAL_SET:
                comp.cmp = _deposit(comp.cmp, shift, length, value)
            if periodic:
                comp.period = _deposit(comp.period, shift, length, value)
            comp.config &= ~hc.TN_VAL_SET
            if self.running:
                self._arm(n, now)
        elif treg == TN_FSB:
            comp.fsb = _deposit(comp.fsb, shift, length, value)

    # -- state ---------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        now = self.clock.now()
        self._service(now)
        c = self._ticks(now)
        return header(self) | {
            "config": self.config,
            "isr": self.isr,
            "counter": c & MASK64,
            # ns into the current tick, so a restored counter keeps its phase to the clock
            "phase_ns": (now - self._base_ns) % TICK_NS if self.running else 0,
            "timers": [
                {
                    "config": comp.config,
                    "cmp": comp.value(c),
                    "period": comp.period,
                    "fsb": comp.fsb,
                    "pending": comp.pending(),
                }
                for comp in self.comparators
            ],
        }

    def restore(self, state: dict[str, Any]) -> None:
        state = check_header(state, self)
        config = get_int(state, "config", 0, CFG_ENABLE | CFG_LEGACY)
        isr = get_int(state, "isr", 0, (1 << TIMERS) - 1)
        counter = get_int(state, "counter", 0, MASK64)
        phase = get_int(state, "phase_ns", 0, TICK_NS - 1 if config & CFG_ENABLE else 0)
        timers = state.get("timers")
        if not isinstance(timers, list) or len(timers) != TIMERS:
            raise StateError(f"hpet: timers={brief(timers)} is not a list of {TIMERS}")
        now = self.clock.now()
        running = bool(config & CFG_ENABLE)
        base_ns = now - phase

        def ns_of(tick: int) -> int:
            return base_ns + (tick - counter) * TICK_NS

        fresh: list[Comparator] = []
        for n, st in enumerate(timers):
            if not isinstance(st, dict):
                raise StateError(f"hpet: timer {n} state is not a mapping")
            comp = Comparator(n)
            tconf = get_int(st, "config", 0, MASK32)
            if tconf & ~(hc.TN_WRITABLE | hc.TN_FIXED) or tconf & hc.TN_FIXED != hc.TN_FIXED:
                raise StateError(f"hpet: timer {n} config {tconf:#x} sets read-only bits")
            limit = MASK32 if tconf & hc.TN_32MODE else MASK64
            comp.config = tconf
            comp.cmp = get_int(st, "cmp", 0, limit)
            comp.period = get_int(st, "period", 0, limit)
            comp.fsb = get_int(st, "fsb", 0, MASK64)
            pending = st.get("pending")
            if pending not in hc.PENDING:
                raise StateError(f"hpet: timer {n} pending={brief(pending)} is unknown")
            if isr >> n & 1 and not tconf & hc.TN_INT_TYPE:
                raise StateError(f"hpet: status set for edge-triggered timer {n}")
            if running:
                comp.arm(counter, now, ns_of, self.min_period_ns)
                self._check_pending(comp, str(pending))
            elif pending != "none":
                raise StateError(f"hpet: timer {n} pending a match with the counter stopped")
            fresh.append(comp)
        for comp, timer in zip(self.comparators, self._timers, strict=True):
            timer.cancel()
            fresh[comp.index].clamped_ticks = comp.clamped_ticks
            fresh[comp.index].missed_ticks = comp.missed_ticks
        self.comparators = fresh
        self.config, self.isr, self._counter, self._base_ns = config, isr, counter, base_ns
        self._schedule()
        self._legacy_seen = not self.legacy  # tell the gates whatever they held before
        self._update_lines()

    @staticmethod
    def _check_pending(comp: Comparator, pending: str) -> None:
        """A saved schedule must be one the registers lead to (due callbacks ran first)."""
        if pending == "none":
            if comp.step:
                raise StateError(f"hpet: periodic timer {comp.index} has no pending match")
            comp.finish()  # a one-shot that matched: nothing until it is re-armed
            return
        if comp.fire_now or comp.pending() != pending:
            raise StateError(f"hpet: timer {comp.index} cannot be pending {pending!r}")
