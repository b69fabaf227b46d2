"""The interface every device on a port or MMIO bus implements."""

from __future__ import annotations

from typing import ClassVar

ALL_SIZES = frozenset({1, 2, 4, 8})


def ones(size: int) -> int:
    """All-ones of an access size in bytes: what an undriven bus reads as."""
    return (1 << (8 * size)) - 1


class BusDevice:
    """A device region on a bus.

    `read`/`write` receive the offset inside the registered range and an access size that is
    one of `io_sizes`; the bus splits or widens any other size before calling them, so a
    device only implements what its hardware decodes. Values are little-endian integers.
    """

    io_sizes: ClassVar[frozenset[int]] = frozenset({1, 2, 4})
    name: str = ""

    def read(self, offset: int, size: int) -> int:
        return ones(size)

    def write(self, offset: int, size: int, value: int) -> None:
        return None

    def device_name(self) -> str:
        return self.name or type(self).__name__


class BusError(ValueError):
    """A registration the bus refuses (overlap, out of range); a host-side programming error."""
