"""Shared fixtures."""

from __future__ import annotations

import pytest

from southbridge.core.clock import ManualClock
from southbridge.core.device import BusDevice


class Reg(BusDevice):
    """A register file recording every access it sees (for bus tests)."""

    def __init__(
        self, length: int, sizes: frozenset[int] = frozenset({1, 2, 4}), name: str = "reg"
    ) -> None:
        self.data = bytearray(length)
        self.accesses: list[tuple[str, int, int, int]] = []
        self.io_sizes = sizes  # type: ignore[misc]
        self.name = name

    def read(self, offset: int, size: int) -> int:
        v = int.from_bytes(self.data[offset : offset + size], "little")
        self.accesses.append(("r", offset, size, v))
        return v

    def write(self, offset: int, size: int, value: int) -> None:
        self.accesses.append(("w", offset, size, value))
        self.data[offset : offset + size] = value.to_bytes(size, "little")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
