"""The port I/O bus: 65,536 ports, O(1) dispatch through a table indexed by port."""

from __future__ import annotations

import logging
from collections.abc import Callable

from southbridge.core.device import BusDevice, BusError
from southbridge.core.dispatch import MASKS, Dispatcher, Route
from southbridge.core.hostports import HostPortBackend
from southbridge.core.permissions import NPORTS, PortPermissions

logger = logging.getLogger("southbridge.io")

Tracer = Callable[[str, int, int, int], None]


class _HostPassthrough(BusDevice):
    """Adapter that forwards a permitted port's access to the host backend at the same port."""

    io_sizes = frozenset({1, 2, 4})
    name = "host-passthrough"

    def __init__(self, backend: HostPortBackend) -> None:
        self.backend = backend

    def read(self, offset: int, size: int) -> int:
        return self.backend.read(offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.backend.write(offset, size, value)


class PortBus(Dispatcher):
    """Dispatches IN/OUT by port.

    Each port maps to a route: the host passthrough when the domain's permission bitmap allows
    the port, else the emulated device registered there, else nothing (all-ones / dropped).
    The route table is rebuilt only on register, unregister and permission changes, so an
    access is one list index plus one identity check for the last byte of the access.
    """

    kind = "io"
    addr_limit = NPORTS

    def __init__(
        self,
        permissions: PortPermissions | None = None,
        host: HostPortBackend | None = None,
    ) -> None:
        super().__init__(logger)
        self.permissions = permissions if permissions is not None else PortPermissions()
        self.host = host if host is not None else HostPortBackend()
        self._host_route = Route(0, NPORTS, _HostPassthrough(self.host), "host", True)
        # Three spare slots so an access starting at 0xffff indexes safely.
        self._dev: list[Route | None] = [None] * (NPORTS + 8)
        self._route: list[Route | None] = [None] * (NPORTS + 8)
        self.permissions.add_listener(self._refresh)
        self._refresh(0, NPORTS)

    # -- registration --------------------------------------------------------------------
    def register(self, base: int, length: int, device: BusDevice, name: str | None = None) -> None:
        """Decode ports base..base+length-1 to `device`; overlaps are refused."""
        label = name or device.device_name()
        if length <= 0 or base < 0 or base + length > NPORTS:
            raise BusError(f"{label}: port range 0x{base:x}+{length} is outside 0x0-0xffff")
        for port in range(base, base + length):
            other = self._dev[port]
            if other is not None:
                raise BusError(
                    f"{label}: ports 0x{base:x}-0x{base + length - 1:x} overlap {other.name} "
                    f"at 0x{other.base:x}-0x{other.end - 1:x}"
                )
        route = Route(base, length, device, label)
        for port in range(base, base + length):
            self._dev[port] = route
        self._refresh(base, length)

    def unregister(self, base: int) -> BusDevice:
        """Remove the region starting at `base` and return its device."""
        route = self._dev[base] if 0 <= base < NPORTS else None
        if route is None or route.base != base:
            raise BusError(f"no port region starts at 0x{base:x}")
        for port in range(route.base, route.end):
            self._dev[port] = None
        self._refresh(route.base, route.end - route.base)
        return route.device

    def find(self, port: int) -> Route | None:
        """The emulated region decoding `port` (ignoring permissions)."""
        return self._dev[port] if 0 <= port < NPORTS else None

    def regions(self) -> list[Route]:
        seen: list[Route] = []
        for r in self._dev:
            if r is not None and (not seen or seen[-1] is not r):
                seen.append(r)
        return seen

    def _refresh(self, base: int, length: int) -> None:
        end = base + length
        # Start from the emulated devices, then overlay the permitted ports; a bitmap byte of
        # zero (the common case) skips eight ports at once, so a fresh bus costs little.
        self._route[base:end] = self._dev[base:end]
        bits = self.permissions.to_bytes()
        host = self._host_route
        for i in range(base >> 3, ((end - 1) >> 3) + 1):
            byte = bits[i]
            if byte:
                for b in range(8):
                    port = (i << 3) | b
                    if byte & (1 << b) and base <= port < end:
                        self._route[port] = host

    # -- dispatch ------------------------------------------------------------------------
    def lookup(self, addr: int) -> Route | None:
        return self._route[addr] if 0 <= addr < NPORTS else None

    def _read(self, port: int, size: int) -> int:
        route = self._route[port & 0xFFFF]
        if (
            route is not None
            and route is self._route[(port & 0xFFFF) + size - 1]
            and size in route.sizes
        ):
            try:
                return route.device.read(port - route.base, size) & MASKS[size]
            except Exception:
                self._fault(route, "read", port, size)
                return MASKS[size]
        return self._read_slow(port & 0xFFFF, size)

    def _write(self, port: int, size: int, value: int) -> None:
        route = self._route[port & 0xFFFF]
        if (
            route is not None
            and route is self._route[(port & 0xFFFF) + size - 1]
            and size in route.sizes
        ):
            try:
                route.device.write(port - route.base, size, value & MASKS[size])
            except Exception:
                self._fault(route, "write", port, size)
            return
        self._write_slow(port & 0xFFFF, size, value)

    # The public entry points; `set_tracer` shadows them per instance so tracing costs
    # nothing when off.
    read = _read
    write = _write

    def set_tracer(self, tracer: Tracer | None) -> None:
        """Call `tracer(op, port, size, value)` after every guest-visible access."""
        if tracer is None:
            self.__dict__.pop("read", None)
            self.__dict__.pop("write", None)
            return
        raw_read, raw_write = self._read, self._write

        def traced_read(port: int, size: int) -> int:
            value = raw_read(port, size)
            tracer("in", port, size, value)
            return value

        def traced_write(port: int, size: int, value: int) -> None:
            tracer("out", port, size, value)
            raw_write(port, size, value)

        self.read = traced_read  # type: ignore[method-assign]
        self.write = traced_write  # type: ignore[method-assign]
