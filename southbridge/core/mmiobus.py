"""The MMIO bus: 64-bit guest physical addresses, sorted ranges, binary search."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable

from southbridge.core.device import BusDevice, BusError
from southbridge.core.dispatch import MASKS, Dispatcher, Route

logger = logging.getLogger("southbridge.mmio")

ADDR_LIMIT = 1 << 64

Tracer = Callable[[str, int, int, int], None]


class MmioBus(Dispatcher):
    """Dispatches guest physical accesses of 1, 2, 4 or 8 bytes to registered regions."""

    kind = "mmio"
    addr_limit = ADDR_LIMIT

    def __init__(self) -> None:
        super().__init__(logger)
        self._bases: list[int] = []
        self._routes: list[Route] = []

    def register(self, base: int, length: int, device: BusDevice, name: str | None = None) -> None:
        label = name or device.device_name()
        if length <= 0 or base < 0 or base + length > ADDR_LIMIT:
            raise BusError(f"{label}: MMIO range 0x{base:x}+0x{length:x} is out of range")
        i = bisect.bisect_right(self._bases, base)
        for j in (i - 1, i):
            if 0 <= j < len(self._routes):
                other = self._routes[j]
                if other.base < base + length and base < other.end:
                    raise BusError(
                        f"{label}: MMIO 0x{base:x}-0x{base + length - 1:x} overlaps {other.name} "
                        f"at 0x{other.base:x}-0x{other.end - 1:x}"
                    )
        self._bases.insert(i, base)
        self._routes.insert(i, Route(base, length, device, label))

    def unregister(self, base: int) -> BusDevice:
        i = bisect.bisect_left(self._bases, base)
        if i >= len(self._bases) or self._bases[i] != base:
            raise BusError(f"no MMIO region starts at 0x{base:x}")
        del self._bases[i]
        return self._routes.pop(i).device

    def regions(self) -> list[Route]:
        return list(self._routes)

    def overlaps(self, base: int, length: int) -> Route | None:
        """The first region overlapping [base, base+length), if any."""
        i = bisect.bisect_right(self._bases, base)
        for j in (i - 1, i):
            if 0 <= j < len(self._routes):
                r = self._routes[j]
                if r.base < base + length and base < r.end:
                    return r
        return None

    def lookup(self, addr: int) -> Route | None:
        i = bisect.bisect_right(self._bases, addr) - 1
        if i >= 0:
            r = self._routes[i]
            if addr < r.end:
                return r
        return None

    find = lookup

    def _read(self, addr: int, size: int) -> int:
        i = bisect.bisect_right(self._bases, addr) - 1
        if i >= 0:
            r = self._routes[i]
            if addr + size <= r.end and size in r.sizes:
                try:
                    return r.device.read(addr - r.base, size) & MASKS[size]
                except Exception:
                    self._fault(r, "read", addr, size)
                    return MASKS[size]
        return self._read_slow(addr, size)

    def _write(self, addr: int, size: int, value: int) -> None:
        i = bisect.bisect_right(self._bases, addr) - 1
        if i >= 0:
            r = self._routes[i]
            if addr + size <= r.end and size in r.sizes:
                try:
                    r.device.write(addr - r.base, size, value & MASKS[size])
                except Exception:
                    self._fault(r, "write", addr, size)
                return
        self._write_slow(addr, size, value)

    read = _read
    write = _write

    def set_tracer(self, tracer: Tracer | None) -> None:
        """Call `tracer(op, addr, size, value)` after every access (op "read"/"write")."""
        if tracer is None:
            self.__dict__.pop("read", None)
            self.__dict__.pop("write", None)
            return
        raw_read, raw_write = self._read, self._write

        def traced_read(addr: int, size: int) -> int:
            value = raw_read(addr, size)
            tracer("read", addr, size, value)
            return value

        def traced_write(addr: int, size: int, value: int) -> None:
            tracer("write", addr, size, value)
            raw_write(addr, size, value)

        self.read = traced_read  # type: ignore[method-assign]
        self.write = traced_write  # type: ignore[method-assign]
