"""The DMA interface a PCI function masters guest memory through.

Reads and writes go to the machine's `AddressSpace` (RAM, then MMIO: peer-to-peer works the
way the CPU-less address space resolves it). A function may master the bus only while its
command register's bus-master bit is set (PCI 3.0, 6.2.2); otherwise the cycle never starts
and the device sees `DmaError`, as it would see a master abort.
"""

from __future__ import annotations

from collections.abc import Callable

from southbridge.core.memory import AddressSpace

ADDR_LIMIT = 1 << 64


class DmaError(Exception):
    """The transfer could not be started (bus mastering off, address out of range)."""


class Dma:
    """A function's view of memory as a bus master."""

    def __init__(self, space: AddressSpace, master_enabled: Callable[[], bool]) -> None:
        self.space = space
        self.master_enabled = master_enabled

    def _check(self, addr: int, length: int) -> None:
        if not self.master_enabled():
            raise DmaError("bus mastering is disabled")
        if addr < 0 or length < 0 or addr + length > ADDR_LIMIT:
            raise DmaError(f"DMA range 0x{addr:x}+0x{length:x} is outside the address space")

    def read(self, addr: int, length: int) -> bytes:
        self._check(addr, length)
        return self.space.read_bytes(addr, length)

    def write(self, addr: int, data: bytes) -> None:
        self._check(addr, len(data))
        self.space.write_bytes(addr, data)
