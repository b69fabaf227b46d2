"""QEMU's debugcon (isa-debugcon): a byte written to the port goes to an output stream.

Firmware (SeaBIOS, OVMF) and test kernels print to it because it needs no set-up at all: no
baud rate, no FIFO, no interrupts. QEMU's default port is 0x402; Bochs and many hobby
kernels use 0xE9. Reading the port returns the "readback" byte (0xE9), which is how a guest
detects that the console is there (QEMU hw/char/debugcon.c).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from southbridge.core.device import BusDevice
from southbridge.core.state import check_header, get_int, header

Output = Callable[[bytes], object]

DEFAULT_PORT = 0x402
READBACK = 0xE9


class ByteSink(Protocol):
    """Where the debugcon's bytes go (`southbridge.host.chardev.open_debugcon` opens one)."""

    def write(self, data: bytes) -> object: ...

    def close(self) -> None: ...


class DebugCon(BusDevice):
    """One write-only byte port: every byte written goes to `output`; reads return 0xE9.

    QEMU implements only byte accesses, so a wider OUT sends its first byte here and the
    others to the neighbouring (usually unassigned) ports; the bus's byte splitting does the
    same.
    """

    STATE_KIND: ClassVar[str] = "debugcon"
    STATE_VERSION: ClassVar[int] = 1

    io_sizes = frozenset({1})
    name = "debugcon"

    def __init__(self, output: Output | None = None, readback: int = READBACK) -> None:
        self.output = output
        self.readback = readback & 0xFF
        self.bytes_written = 0

    def read(self, offset: int, size: int) -> int:
        return self.readback

    def write(self, offset: int, size: int, value: int) -> None:
        self.bytes_written += 1
        if self.output is not None:
            try:
                self.output(bytes((value & 0xFF,)))
            except (OSError, ValueError):
                # A closed or full output must not stop the guest; the byte is dropped,
                # as a disconnected chardev drops it in QEMU.
                self.output = None

    def save(self) -> dict[str, Any]:
        return header(self) | {"readback": self.readback}

    def restore(self, state: dict[str, Any]) -> None:
        state = check_header(state, self)
        self.readback = get_int(state, "readback", 0, 0xFF)
