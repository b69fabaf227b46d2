"""The POST code port 0x80: firmware writes a progress byte, a POST card shows it.

Port 0x80 is also the traditional "I/O delay" port (Linux's io_delay writes it), so the
write path stays cheap: keep the code, append to a bounded history, call any hooks. The last
code is latched and reads back like a POST card's display latch; before the first write the
port reads 0xFF, what QEMU's port 0x80 always reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from southbridge.core.clock import Clock
from southbridge.core.device import BusDevice
from southbridge.core.state import StateError, check_header, get_int, header

PORT = 0x80

Hook = Callable[[int], None]


class PostCodePort(BusDevice):
    """Latches the last byte written; `history` holds (time ns, code) of recent writes."""

    STATE_KIND: ClassVar[str] = "post-code"
    STATE_VERSION: ClassVar[int] = 1

    io_sizes = frozenset({1})
    name = "post-code"

    def __init__(self, clock: Clock | None = None, history_len: int = 256) -> None:
        self.clock = clock
        self.last: int | None = None
        self.count = 0
        self.history: deque[tuple[int, int]] = deque(maxlen=max(1, history_len))
        self._hooks: list[Hook] = []

    def on_code(self, hook: Hook) -> None:
        """Call `hook(code)` on every write (a trace of POST progress)."""
        self._hooks.append(hook)

    def read(self, offset: int, size: int) -> int:
        return 0xFF if self.last is None else self.last

    def write(self, offset: int, size: int, value: int) -> None:
        code = value & 0xFF
        self.last = code
        self.count += 1
        self.history.append((self.clock.now() if self.clock is not None else 0, code))
        for hook in self._hooks:
            hook(code)

    def save(self) -> dict[str, Any]:
        return header(self) | {"last": self.last}

    def restore(self, state: dict[str, Any]) -> None:
        state = check_header(state, self)
        if "last" not in state:
            raise StateError("post-code: field 'last' missing")
        self.last = None if state["last"] is None else get_int(state, "last", 0, 0xFF)
