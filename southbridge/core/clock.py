"""Clocks and timers, in nanoseconds.

Devices never sleep or tick: they compute state from `clock.now()` and arm a `Timer` for the
next instant something visible happens. Two clocks share the interface: `ManualClock` (tests
and CPU-less runs; time moves only when told, fully deterministic) and `HostClock` (real
guests; CLOCK_MONOTONIC, timers fired by a thread).

The guest programs the timers, so nothing here may trust their rate: the heap is compacted
so re-arming never grows memory, and the host timer thread fires a bounded slice of
callbacks per pass and then lets go of the machine lock (a guest timer storm slows the guest,
never freezes its VMM).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("southbridge.clock")

NS_PER_SEC = 1_000_000_000

# Compaction: once stale heap entries (left by re-arms and cancels) outnumber live ones and
# there are more than this many, the heap is rebuilt from its live entries. The heap then
# holds at most 2 * live + COMPACT_MIN entries, and each rebuild drops at least half of it
# (amortised O(1) per arm).
COMPACT_MIN = 64

# HostClock: the most callbacks one `run_due` pass fires, and the longest it may hold the
# machine lock; after a pass that hit either bound the timer thread stays off the lock for
# at least as long as it held it (and at least PAUSE_MIN_S), so vCPU threads get it.
MAX_CALLBACKS_PER_PASS = 256
MAX_PASS_NS = 2_000_000
PAUSE_MIN_S = 0.001


class Timer:
    """A one-shot timer on a clock; re-arm it from its own callback for periodic behaviour."""

    __slots__ = ("_clock", "_gen", "callback", "deadline", "name")

    def __init__(self, clock: Clock, callback: Callable[[], None], name: str = "") -> None:
        self._clock = clock
        self.callback = callback
        self.name = name
        self.deadline: int | None = None
        self._gen = 0

    @property
    def armed(self) -> bool:
        return self.deadline is not None

    def arm(self, deadline: int) -> None:
        """Fire at absolute time `deadline` ns (immediately on the next run if in the past)."""
        self._clock._arm(self, int(deadline))

    def arm_in(self, delay: int) -> None:
        self.arm(self._clock.now() + delay)

    def cancel(self) -> None:
        self._clock._cancel(self)


class Clock:
    """Timer queue in deadline order (ties in arming order), with lazy deletion.

    A re-armed or cancelled timer leaves its old entry behind (stale: its generation no
    longer matches); `_stale` counts them so the heap can be compacted before they pile up.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, Timer]] = []
        self._stale = 0
        self._seq = itertools.count()
        self._qlock = threading.Lock()
        self.late_callbacks = 0
        self.fired = 0  # callbacks run since creation (the fuzzer's rate check reads it)

    def now(self) -> int:
        raise NotImplementedError

    def timer(self, callback: Callable[[], None], name: str = "") -> Timer:
        return Timer(self, callback, name)

    def _arm(self, t: Timer, deadline: int) -> None:
        with self._qlock:
            if t.deadline is not None:
                self._stale += 1  # its previous entry is still in the heap
            t._gen += 1
            t.deadline = deadline
            heapq.heappush(self._heap, (deadline, next(self._seq), t._gen, t))
            self._maybe_compact()
            self._notify()

    def _cancel(self, t: Timer) -> None:
        with self._qlock:
            if t.deadline is not None:
                self._stale += 1
            t._gen += 1
            t.deadline = None

    def _maybe_compact(self) -> None:
        """With _qlock held: rebuild the heap from live entries once stale ones dominate."""
        heap = self._heap
        if self._stale <= COMPACT_MIN or 2 * self._stale <= len(heap):
            return
        live = [e for e in heap if e[3]._gen == e[2]]
        heapq.heapify(live)
        self._heap = live
        self._stale = 0

    def _notify(self) -> None:
        """Hook: a new timer was queued (HostClock wakes its thread)."""

    def _drop_stale_top(self) -> None:
        heap = self._heap
        while heap and heap[0][3]._gen != heap[0][2]:
            heapq.heappop(heap)
            self._stale -= 1

    def next_deadline(self) -> int | None:
        with self._qlock:
            self._drop_stale_top()
            return self._heap[0][0] if self._heap else None

    def _pop_due(self, limit: int) -> tuple[int, Timer] | None:
        """Dequeue the earliest live timer due at or before `limit`, with its deadline."""
        with self._qlock:
            self._drop_stale_top()
            heap = self._heap
            if not heap or heap[0][0] > limit:
                return None
            deadline, _, _, t = heapq.heappop(heap)
            t.deadline = None
            return deadline, t

    def _fire(self, t: Timer) -> None:
        self.fired += 1
        try:
            t.callback()
        except Exception:
            logger.exception("timer %s callback raised", t.name or t.callback)


class ManualClock(Clock):
    """Virtual time that moves only through `advance`/`set`; timers fire at their instants."""

    def __init__(self, start: int = 0) -> None:
        super().__init__()
        self._now = start

    def now(self) -> int:
        return self._now

    def set(self, target: int) -> int:
        """Move to `target` ns, firing every timer due on the way with now = its deadline.

        Time never goes backwards: a target in the past leaves the clock where it is.
        """
        while True:
            due = self._pop_due(target)
            if due is None:
                break
            deadline, t = due
            self._now = max(self._now, deadline)
            self._fire(t)
        self._now = max(self._now, target)
        return self._now

    def set_bounded(self, target: int, max_callbacks: int) -> tuple[int, bool]:
        """`set` with at most `max_callbacks` callbacks: (new now, whether target was reached).

        When the budget runs out first, time stops at the deadline of the last timer fired,
        so every timer still fires at its own instant, in order (exact, just not finished):
        the CPU-less runs' answer to a guest timer storm (qtest `clock_step`, the fuzzer).
        """
        for _ in range(max_callbacks):
            due = self._pop_due(target)
            if due is None:
                break
            deadline, t = due
            self._now = max(self._now, deadline)
            self._fire(t)
        else:
            pending = self.next_deadline()
            if pending is not None and pending <= target:
                return self._now, False
        self._now = max(self._now, target)
        return self._now, True

    def advance(self, ns: int) -> int:
        return self.set(self._now + max(0, ns))

    def step_next(self) -> int | None:
        """Advance to the next pending deadline (qtest `clock_step` with no argument)."""
        d = self.next_deadline()
        if d is None:
            return None
        return self.set(max(d, self._now))


class HostClock(Clock):
    """CLOCK_MONOTONIC since creation; `run` fires timers from a thread under a given lock."""

    def __init__(self) -> None:
        super().__init__()
        self._origin = time.monotonic_ns()
        self._cond = threading.Condition(threading.Lock())
        self._dirty = False
        self.pauses = 0  # passes that ended with timers still due (a storm, or a slow host)
        self._stopped_at: int | None = None  # machine time while stopped (QMP stop)

    def now(self) -> int:
        stopped = self._stopped_at
        if stopped is not None:
            return stopped
        return time.monotonic_ns() - self._origin

    @property
    def stopped(self) -> bool:
        return self._stopped_at is not None

    def pause(self) -> None:
        """Stop machine time (as QEMU's vm clock stops with the VM): `now` stays put and no
        timer comes due until `resume`, which goes on from the same instant."""
        if self._stopped_at is None:
            self._stopped_at = self.now()

    def resume(self) -> None:
        stopped = self._stopped_at
        if stopped is not None:
            self._origin = time.monotonic_ns() - stopped
            self._stopped_at = None
            self._notify_unlocked()

    def _notify_unlocked(self) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def _notify(self) -> None:
        # Called with _qlock held; the condition has its own lock so this cannot deadlock.
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def run_due(
        self, max_callbacks: int = MAX_CALLBACKS_PER_PASS, max_ns: int = MAX_PASS_NS
    ) -> int:
        """Fire timers whose deadline has passed, at most `max_callbacks` of them and for at
        most about `max_ns` of host time (a timer that re-arms itself in the past would
        otherwise keep this loop, and the caller's lock, forever); returns how many fired."""
        fired = 0
        start = time.monotonic_ns()
        while fired < max_callbacks:
            due = self._pop_due(self.now())
            if due is None:
                break
            self._fire(due[1])
            fired += 1
            if time.monotonic_ns() - start >= max_ns:
                break
        return fired

    def _backlog(self) -> bool:
        d = self.next_deadline()
        return d is not None and d <= self.now()

    def run(self, stop: threading.Event, lock: threading.RLock | None = None) -> None:
        """Timer thread body: sleep until the next deadline or a new timer, then fire a
        bounded pass under `lock`; after a pass that left timers due, stay off the lock for
        at least as long as the pass held it so every vCPU thread waiting for it gets it."""
        while not stop.is_set():
            deadline = self.next_deadline()
            with self._cond:
                if not self._dirty:
                    # Bounded wait: a missed notify can delay a timer, never lose it.
                    timeout = 0.5 if deadline is None else max(0, deadline - self.now()) / 1e9
                    self._cond.wait(min(timeout, 0.5))
                self._dirty = False
            if stop.is_set():
                return
            start = time.monotonic()
            if lock is not None:
                with lock:
                    self.run_due()
            else:
                self.run_due()
            if self._backlog():
                self.pauses += 1
                stop.wait(max(time.monotonic() - start, PAUSE_MIN_S))

    def wake(self) -> None:
        self._notify()
