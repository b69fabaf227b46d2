"""What a serial-port frontend (the UART) needs from a character backend.

The backends themselves do host I/O with threads and live in `southbridge.host.chardev`;
the device side sees only this protocol. A backend never blocks its caller: `write` takes
what fits and says how much, `read` returns what is queued. Its two callbacks (`attach`)
may arrive on backend threads: whoever attaches a threaded backend wraps them in the
machine's device lock (`Machine.locked`), so the frontend itself takes no lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Callback = Callable[[], None]


class CharBackend(Protocol):
    def attach(self, on_input: Callback, on_ready: Callback) -> None:
        """Connect (or re-connect) the frontend: `on_input` when host bytes are queued,
        `on_ready` when output that was refused can be retried. Replaces earlier ones."""

    def write(self, data: bytes) -> int:
        """Queue guest output without blocking; returns how many leading bytes were taken."""

    def read(self, n: int) -> bytes:
        """Take up to `n` queued host-input bytes (never blocks)."""

    def pending_input(self) -> int:
        """How many host-input bytes are queued."""

    def close(self) -> None:
        """Stop; output still buffered gets a bounded time to drain. Idempotent."""


class NullBackend:
    """Output discarded, no input (a port with nothing plugged in)."""

    def attach(self, on_input: Callback, on_ready: Callback) -> None:
        return None

    def write(self, data: bytes) -> int:
        return len(data)

    def read(self, n: int) -> bytes:
        return b""

    def pending_input(self) -> int:
        return 0

    def close(self) -> None:
        return None
