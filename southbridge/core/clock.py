"""Clocks and timers, in nanoseconds.

Devices never sleep or tick: they compute state from `clock.now()` and arm a `Timer` for the
next instant something visible happens. Two clocks share the interface: `ManualClock` (tests
and CPU-less runs; time moves only when told, fully deterministic) and `HostClock` (real
guests; CLOCK_MONOTONIC, timers fired by a thread).
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
        self._gen += 1
        self.deadline = int(deadline)
        self._clock._push(self)

    def arm_in(self, delay: int) -> None:
        self.arm(self._clock.now() + delay)

    def cancel(self) -> None:
        self._gen += 1
        self.deadline = None


class Clock:
    """Timer queue in deadline order (ties in arming order), with lazy deletion."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, Timer]] = []
        self._seq = itertools.count()
        self._qlock = threading.Lock()
        self.late_callbacks = 0

    def now(self) -> int:
        raise NotImplementedError

    def timer(self, callback: Callable[[], None], name: str = "") -> Timer:
        return Timer(self, callback, name)

    def _push(self, t: Timer) -> None:
        assert t.deadline is not None
        with self._qlock:
            heapq.heappush(self._heap, (t.deadline, next(self._seq), t._gen, t))
            self._notify()

    def _notify(self) -> None:
        """Hook: a new timer was queued (HostClock wakes its thread)."""

    def next_deadline(self) -> int | None:
        with self._qlock:
            heap = self._heap
            while heap and heap[0][3]._gen != heap[0][2]:
                heapq.heappop(heap)
            return heap[0][0] if heap else None

    def _pop_due(self, limit: int) -> tuple[int, Timer] | None:
        """Dequeue the earliest live timer due at or before `limit`, with its deadline."""
        with self._qlock:
            heap = self._heap
            while heap:
                deadline, _, gen, t = heap[0]
                if t._gen != gen:
                    heapq.heappop(heap)
                    continue
                if deadline > limit:
                    return None
                heapq.heappop(heap)
                t.deadline = None
                return deadline, t
            return None

    def _fire(self, t: Timer) -> None:
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

    def now(self) -> int:
        return time.monotonic_ns() - self._origin

    def _notify(self) -> None:
        # Called with _qlock held; the condition has its own lock so this cannot deadlock.
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def run_due(self) -> int:
        """Fire every timer whose deadline has passed; returns how many fired."""
        fired = 0
        while True:
            due = self._pop_due(self.now())
            if due is None:
                return fired
            self._fire(due[1])
            fired += 1

    def run(self, stop: threading.Event, lock: threading.RLock | None = None) -> None:
        """Timer thread body: sleep until the next deadline or a new timer, then fire."""
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
            if lock is not None:
                with lock:
                    self.run_due()
            else:
                self.run_due()

    def wake(self) -> None:
        self._notify()
