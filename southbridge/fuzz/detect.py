"""What counts as a finding, and the instruments that notice one.

* `exception`: an exception escaping a bus access, the clock, or a timer callback; or one a
  bus caught from a device (its `faults` counter) or a device logged with a traceback.
* `slow`: one access or clock step over `Bounds.op_s` of host time (plus
  `Bounds.callback_s` per timer callback the step fired: those are bounded by the rate).
* `memory`: the clock's timer heap over `Bounds.heap_entries`, or (with tracemalloc on)
  the Python heap grown by more than `Bounds.memory_bytes` over one input.
* `rate`: a timer firing more often than once per `Bounds.min_fire_ns` of virtual time
  within one clock step (the clamped rates are far slower: 200 us for the PIT and LAPIC,
  122 us for the RTC at 8192 Hz, 87 us per UART character at 115200 baud).
* `isolation`: an access by one domain reaching a device assigned to another, or changing
  another domain's machine state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from southbridge.core.clock import ManualClock, Timer

KINDS = ("exception", "slow", "memory", "rate", "isolation")


@dataclass(frozen=True)
class Bounds:
    op_s: float = 1.0
    callback_s: float = 0.0002  # and this much more per timer callback a step fires
    heap_entries: int = 1024  # the heap holds at most 2 * live + 64 (core/clock.py)
    memory_bytes: int = 64 << 20
    min_fire_ns: int = 50_000


@dataclass(frozen=True)
class Finding:
    kind: str
    detail: str
    index: int  # the operation (0-based, after the prelude) that showed it

    def signature(self) -> str:
        """What a minimized input must still show: the kind and the first words."""
        return f"{self.kind}: {' '.join(self.detail.split()[:3])}"


class FuzzClock(ManualClock):
    """The manual clock, counting each timer's callbacks (for the rate check) and keeping
    the callbacks' exceptions instead of only logging them."""

    def __init__(self, start: int = 0) -> None:
        super().__init__(start)
        self.counts: dict[Timer, int] = {}
        self.errors: list[str] = []

    def _fire(self, t: Timer) -> None:
        self.fired += 1
        self.counts[t] = self.counts.get(t, 0) + 1
        try:
            t.callback()
        except Exception as e:
            self.errors.append(f"timer {t.name or t.callback!r} raised {type(e).__name__}: {e}")


class TracebackCatcher(logging.Handler):
    """Collects southbridge log records carrying an exception (a device that caught one
    and logged it is as much a finding as one that escaped)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[0] is not None:
            exc = record.exc_info[1]
            self.records.append(f"{record.name} logged {type(exc).__name__}: {exc}")

    def __enter__(self) -> TracebackCatcher:
        logging.getLogger("southbridge").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("southbridge").removeHandler(self)
