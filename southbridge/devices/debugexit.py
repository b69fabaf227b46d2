"""QEMU's isa-debug-exit: a write of V ends the run with exit status (V << 1) | 1.

The status is always odd, so a test harness can tell a guest's verdict from the VMM's own
exit 0. kvm-unit-tests and many hobby kernels configure it as `iobase=0xf4,iosize=0x4`; any
write of any width at any offset of the range exits with the value written (QEMU
hw/misc/debugexit.c ignores the offset). Reads return 0. The process exit status the OS
keeps is the low 8 bits of the requested status.
"""

from __future__ import annotations

from typing import Any, ClassVar

from southbridge.core.device import BusDevice
from southbridge.core.request import Request
from southbridge.core.state import check_header, header

PORT = 0xF4
IOSIZE = 4


class DebugExit(BusDevice):
    STATE_KIND: ClassVar[str] = "isa-debug-exit"
    STATE_VERSION: ClassVar[int] = 1

    io_sizes = frozenset({1, 2, 4})
    name = "isa-debug-exit"

    def __init__(self, request: Request) -> None:
        self._request = request
        self.last_status: int | None = None

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        status = (value << 1) | 1
        self.last_status = status
        self._request("exit", status)

    def save(self) -> dict[str, Any]:
        return header(self)

    def restore(self, state: dict[str, Any]) -> None:
        check_header(state, self)
