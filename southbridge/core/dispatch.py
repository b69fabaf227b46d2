"""Shared dispatch logic of the port and MMIO buses: routes, size splitting and widening.

A bus resolves an address to a `Route` (a registered device region, or host passthrough for
permitted ports). The hot path — one route covering the whole access at an implemented size —
is inlined in each bus; everything else lands here and is resolved like hardware would:

* an access spanning several routes, or partly unassigned, is split into byte accesses, each
  decoded on its own (what an ISA bus does with a 16-bit cycle to 8-bit devices);
* a size the device does not implement is split into the largest smaller size it does
  implement, or, when it only implements wider sizes, widened to an aligned wider access
  (reads extract the bytes, writes shift the value in with zeroes elsewhere, as QEMU does);
* unassigned bytes read as all-ones and drop writes, counted and logged rate-limited;
* a device that raises is answered like an unassigned access: the guest never kills the VMM.
"""

from __future__ import annotations

import logging

from southbridge.core.device import BusDevice, ones
from southbridge.core.ratelog import RateLimitedLog

MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: 0xFFFFFFFFFFFFFFFF}


class Route:
    """A decoded range: addresses [base, end) answered by `device` at its own offsets."""

    __slots__ = ("base", "device", "end", "name", "passthrough", "sizes")

    def __init__(
        self, base: int, length: int, device: BusDevice, name: str, passthrough: bool = False
    ) -> None:
        self.base = base
        self.end = base + length
        self.device = device
        self.sizes = device.io_sizes
        self.name = name
        self.passthrough = passthrough

    def __repr__(self) -> str:
        return f"Route({self.name}, 0x{self.base:x}-0x{self.end - 1:x})"


class Dispatcher:
    """Slow-path logic shared by buses; subclasses provide `lookup` and the `_read`/`_write`."""

    kind = "bus"
    addr_limit = 0

    def __init__(self, logger: logging.Logger) -> None:
        self.log = RateLimitedLog(logger)
        self.unhandled_reads = 0
        self.unhandled_writes = 0
        self.faults = 0

    # Provided by the concrete bus.
    def lookup(self, addr: int) -> Route | None:
        raise NotImplementedError

    def _read(self, addr: int, size: int) -> int:
        raise NotImplementedError

    def _write(self, addr: int, size: int, value: int) -> None:
        raise NotImplementedError

    def _fault(self, route: Route, op: str, addr: int, size: int) -> None:
        self.faults += 1
        if self.log.warning(
            f"fault:{route.name}",
            "%s: device %s raised on %s of size %d at 0x%x; answered as unassigned",
            self.kind,
            route.name,
            op,
            size,
            addr,
        ):
            self.log.logger.debug("device fault traceback", exc_info=True)

    def _call_read(self, route: Route, addr: int, size: int) -> int:
        try:
            return int(route.device.read(addr - route.base, size)) & MASKS[size]
        except Exception:
            self._fault(route, "read", addr, size)
            return ones(size)

    def _call_write(self, route: Route, addr: int, size: int, value: int) -> None:
        try:
            route.device.write(addr - route.base, size, value & MASKS[size])
        except Exception:
            self._fault(route, "write", addr, size)

    def _covers(self, route: Route, addr: int, last: int) -> bool:
        """Whether every byte addr..last decodes to `route` (a permission bitmap can carve
        holes into the host passthrough route, so the range check alone is not enough)."""
        if last >= route.end:
            return False
        return all(self.lookup(a) is route for a in range(addr + 1, last + 1))

    def _any_decoded(self, addr: int, last: int) -> bool:
        return any(
            self.lookup(a) is not None for a in range(addr, min(last, self.addr_limit - 1) + 1)
        )

    def _read_slow(self, addr: int, size: int) -> int:
        if size not in MASKS:
            raise ValueError(f"invalid access size {size}")
        last = addr + size - 1
        first = self.lookup(addr)
        if first is not None and self._covers(first, addr, last):
            return self._adjusted_read(first, addr, size)
        if first is None and not self._any_decoded(addr, last):
            self.unhandled_reads += 1
            self.log.debug("unassigned", "%s: unassigned read %d@0x%x", self.kind, size, addr)
            return ones(size)
        value = 0
        for i in range(size):
            b = self._read(addr + i, 1) if addr + i < self.addr_limit else 0xFF
            value |= b << (8 * i)
        return value

    def _adjusted_read(self, route: Route, addr: int, size: int) -> int:
        if size in route.sizes:
            return self._call_read(route, addr, size)
        smaller = [s for s in route.sizes if s < size]
        if smaller:
            step = max(smaller)
            value = 0
            for i in range(0, size, step):
                value |= self._call_read(route, addr + i, step) << (8 * i)
            return value
        wide = min(route.sizes)
        start = addr - ((addr - route.base) % wide)
        if start + wide > route.end or addr + size > start + wide:
            self.unhandled_reads += 1
            self.log.debug(
                f"unaligned:{addr:x}", "%s: unanswerable read %d@0x%x", self.kind, size, addr
            )
            return ones(size)
        return (self._call_read(route, start, wide) >> (8 * (addr - start))) & MASKS[size]

    def _write_slow(self, addr: int, size: int, value: int) -> None:
        if size not in MASKS:
            raise ValueError(f"invalid access size {size}")
        value &= MASKS[size]
        last = addr + size - 1
        first = self.lookup(addr)
        if first is not None and self._covers(first, addr, last):
            self._adjusted_write(first, addr, size, value)
            return
        if first is None and not self._any_decoded(addr, last):
            self.unhandled_writes += 1
            self.log.debug(
                "unassigned", "%s: unassigned write %d@0x%x=0x%x", self.kind, size, addr, value
            )
            return
        for i in range(size):
            if addr + i < self.addr_limit:
                self._write(addr + i, 1, (value >> (8 * i)) & 0xFF)

    def _adjusted_write(self, route: Route, addr: int, size: int, value: int) -> None:
        if size in route.sizes:
            self._call_write(route, addr, size, value)
            return
        smaller = [s for s in route.sizes if s < size]
        if smaller:
            step = max(smaller)
            for i in range(0, size, step):
                self._call_write(route, addr + i, step, (value >> (8 * i)) & MASKS[step])
            return
        wide = min(route.sizes)
        start = addr - ((addr - route.base) % wide)
        if start + wide > route.end or addr + size > start + wide:
            self.unhandled_writes += 1
            self.log.debug(
                f"unaligned:{addr:x}", "%s: unanswerable write %d@0x%x", self.kind, size, addr
            )
            return
        self._call_write(route, start, wide, value << (8 * (addr - start)))
