"""Access tracing in qtest text form, so any run can be replayed by `southbridge qtest`."""

from __future__ import annotations

import threading
from typing import TextIO

from southbridge.core.clock import Clock

_PORT_OPS = {
    ("out", 1): "outb",
    ("out", 2): "outw",
    ("out", 4): "outl",
    ("in", 1): "inb",
    ("in", 2): "inw",
    ("in", 4): "inl",
}
_MEM_OPS = {
    ("write", 1): "writeb",
    ("write", 2): "writew",
    ("write", 4): "writel",
    ("write", 8): "writeq",
    ("read", 1): "readb",
    ("read", 2): "readw",
    ("read", 4): "readl",
    ("read", 8): "readq",
}


class QtestTracer:
    """Writes one qtest command per access; a `clock_set` precedes any access made at a new
    instant so a replay on the manual clock sees the same timing. Reads carry the value the
    guest saw as a trailing word, which qtest ignores and diff tools can compare."""

    def __init__(self, out: TextIO, clock: Clock) -> None:
        self.out = out
        self.clock = clock
        self._last_ns = -1
        self._lock = threading.Lock()
        self.count = 0

    def _emit(self, line: str) -> None:
        with self._lock:
            now = self.clock.now()
            if now != self._last_ns:
                self.out.write(f"clock_set {now}\n")
                self._last_ns = now
            self.out.write(line)
            self.count += 1

    def port(self, op: str, port: int, size: int, value: int) -> None:
        name = _PORT_OPS[(op, size)]
        if op == "out":
            self._emit(f"{name} 0x{port:x} 0x{value:x}\n")
        else:
            self._emit(f"{name} 0x{port:x} # 0x{value:x}\n")

    def mmio(self, op: str, addr: int, size: int, value: int) -> None:
        name = _MEM_OPS[(op, size)]
        if op == "write":
            self._emit(f"{name} 0x{addr:x} 0x{value:x}\n")
        else:
            self._emit(f"{name} 0x{addr:x} # 0x{value:x}\n")

    def flush(self) -> None:
        with self._lock:
            self.out.flush()
