"""PCI buses: functions by device/function number, config routing, BAR mapping, INTx.

A `PciBus` holds up to 32 devices of 8 functions. The root bus (`PciRoot`) is bus 0 behind
the host bridge; it owns the platform's port and MMIO buses and keeps their PCI
registrations equal to what every BAR, command register and bridge window asks for. Config
cycles for other bus numbers travel down through the bridge whose secondary..subordinate
range contains them, as type 1 cycles do (PCI-to-PCI Bridge Architecture 1.2, 3.2.2.3).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from southbridge.core.device import ones
from southbridge.core.irq import Sink
from southbridge.core.memory import AddressSpace
from southbridge.core.mmiobus import MmioBus
from southbridge.core.portbus import PortBus
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.state import StateError, check_header, header
from southbridge.pci.bar import IO_LIMIT, MEM64_LIMIT, BarMapper, Region
from southbridge.pci.function import PciFunction
from southbridge.pci.msi import MsiRecorder, MsiSink

if TYPE_CHECKING:
    from southbridge.pci.bridge import PciBridge

logger = logging.getLogger("southbridge.pci")

# An INTx router: (slot on the root bus, pin 0-3 as seen there, source) -> the source's input.
IntxRouter = Callable[[int, int, object], Sink]

Window = list[tuple[int, int]]  # [start, end) ranges a bridge forwards


def _inside(r: Region, windows: Window) -> bool:
    return any(lo <= r.base and r.base + r.length <= hi for lo, hi in windows)


def _intersect(a: Window, b: Window) -> Window:
    out = []
    for lo1, hi1 in a:
        for lo2, hi2 in b:
            lo, hi = max(lo1, lo2), min(hi1, hi2)
            if lo < hi:
                out.append((lo, hi))
    return out


class PciBus:
    """One bus segment; `bridge` is the PCI-to-PCI bridge it hangs under (None at the root)."""

    def __init__(self, bridge: PciBridge | None = None) -> None:
        self.bridge = bridge
        self.functions: dict[int, PciFunction] = {}

    @property
    def root(self) -> PciRoot | None:
        bus: PciBus | None = self
        while bus is not None and bus.bridge is not None:
            bus = bus.bridge.bus
        return bus if isinstance(bus, PciRoot) else None

    @property
    def number(self) -> int:
        return self.bridge.secondary_bus if self.bridge is not None else 0

    # -- topology ------------------------------------------------------------------------
    def add(self, fn: PciFunction, slot: int | None = None, function: int = 0) -> int:
        """Put `fn` at slot/function (the first slot with no device when slot is None)."""
        if slot is None:
            slot = next((s for s in range(32) if not self._slot_used(s)), -1)
            if slot < 0:
                raise ValueError("no free slot on the bus")
        if not 0 <= slot < 32 or not 0 <= function < 8:
            raise ValueError(f"no slot {slot} function {function} on a PCI bus")
        devfn = slot << 3 | function
        if devfn in self.functions:
            raise ValueError(f"{slot:02x}.{function} is taken by {self.functions[devfn].name}")
        if fn.bus is not None:
            raise ValueError(f"{fn.name} is already on a bus")
        fn.capture_power_on()
        fn.bus = self
        fn.devfn = devfn
        self.functions[devfn] = fn
        self._update_multifunction(slot)
        fn.update_mappings()
        fn._drive_intx()
        return devfn

    def _slot_used(self, slot: int) -> bool:
        return any(d >> 3 == slot for d in self.functions)

    def _update_multifunction(self, slot: int) -> None:
        # Software finds functions 1-7 only through function 0's header type bit 7.
        fn0 = self.functions.get(slot << 3)
        if fn0 is not None and sum(1 for d in self.functions if d >> 3 == slot) > 1:
            fn0.set_multifunction(True)

    def function_at(self, devfn: int) -> PciFunction | None:
        return self.functions.get(devfn)

    def bridges(self) -> list[PciBridge]:
        from southbridge.pci.bridge import PciBridge

        return [f for _, f in sorted(self.functions.items()) if isinstance(f, PciBridge)]

    def walk(self) -> Iterator[PciFunction]:
        """Every function at and below this bus, in bus/devfn order of the tree."""
        from southbridge.pci.bridge import PciBridge

        for _, fn in sorted(self.functions.items()):
            yield fn
            if isinstance(fn, PciBridge):
                yield from fn.child.walk()

    def find_bus(self, number: int, depth: int = 0) -> PciBus | None:
        """The bus a config cycle for `number` reaches from here (None: master abort)."""
        if number == self.number:
            return self
        if depth > 255:
            return None
        for br in self.bridges():
            sec, sub = br.secondary_bus, br.subordinate_bus
            if sec != 0 and sec <= number <= sub:
                return br.child.find_bus(number, depth + 1)
        return None

    def find(self, bus: int, devfn: int) -> PciFunction | None:
        target = self.find_bus(bus)
        return target.functions.get(devfn) if target is not None else None

    # -- config cycles -------------------------------------------------------------------
    def config_read(self, bus: int, devfn: int, offset: int, size: int) -> int:
        """Absent functions answer all-ones (the host bridge's master abort)."""
        fn = self.find(bus, devfn)
        if fn is None or offset + size > fn.config.size:
            return ones(size)
        return fn.config_read(offset, size) & ones(size)

    def config_write(self, bus: int, devfn: int, offset: int, size: int, value: int) -> None:
        fn = self.find(bus, devfn)
        if fn is not None and offset + size <= fn.config.size:
            fn.config_write(offset, size, value & ones(size))

    # -- INTx ----------------------------------------------------------------------------
    def route_intx(self, fn: PciFunction, pin: int) -> Sink:
        """The input `fn`'s INTx pin (0 = INTA#) drives, after the swizzle of every bridge
        above: a device at slot s behind a bridge asserts the bridge's pin (pin + s) % 4
        (PCI-to-PCI Bridge Architecture 1.2, table 9-1)."""
        bus: PciBus = self
        slot = fn.slot
        while bus.bridge is not None:
            pin = (pin + slot) % 4
            slot = bus.bridge.slot
            nxt = bus.bridge.bus
            if nxt is None:
                return _no_sink
            bus = nxt
        root = bus if isinstance(bus, PciRoot) else None
        if root is None or root.intx_router is None:
            return _no_sink
        return root.intx_router(slot, pin, fn)


def _no_sink(level: bool) -> None:
    return None


class PciRoot(PciBus):
    """Bus 0: owns the mapping of every BAR below it onto the port and MMIO buses."""

    STATE_KIND: ClassVar[str] = "pci-bus"
    STATE_VERSION: ClassVar[int] = 1

    def __init__(
        self,
        ports: PortBus,
        mmio: MmioBus,
        space: AddressSpace | None = None,
        msi_sink: MsiSink | None = None,
        intx_router: IntxRouter | None = None,
    ) -> None:
        super().__init__(None)
        self.ports = ports
        self.mmio = mmio
        self.space = space
        self.msi_sink: MsiSink = msi_sink if msi_sink is not None else MsiRecorder()
        self.intx_router = intx_router
        self.io_mapper = BarMapper(ports, "io")
        self.mem_mapper = BarMapper(mmio, "mem")
        self.log = RateLimitedLog(logger)

    def remap(self) -> None:
        io: list[Region] = []
        mem: list[Region] = []
        self._collect(self, [(0, IO_LIMIT)], [(0, MEM64_LIMIT)], io, mem, 0)
        self.io_mapper.reconcile(io)
        self.mem_mapper.reconcile(mem)

    def _collect(
        self, bus: PciBus, iow: Window, memw: Window, io: list[Region], mem: list[Region], d: int
    ) -> None:
        from southbridge.pci.bridge import PciBridge

        for _, fn in sorted(bus.functions.items()):
            fio, fmem = fn.regions()
            io.extend(r for r in fio if _inside(r, iow))
            mem.extend(r for r in fmem if _inside(r, memw))
            if isinstance(fn, PciBridge) and d < 64:
                cio, cmem = fn.forwarded_windows()
                self._collect(
                    fn.child, _intersect(iow, cio), _intersect(memw, cmem), io, mem, d + 1
                )

    def reset(self) -> None:
        """Platform reset: every function below returns to its power-on state."""
        for fn in list(self.walk()):
            fn.reset()
        self.remap()

    def mapped(self) -> dict[object, Region]:
        """Every BAR currently decoded on either bus, by BAR object."""
        return {**self.io_mapper.current, **self.mem_mapper.current}

    # -- state ---------------------------------------------------------------------------
    def _paths(self) -> list[tuple[str, PciFunction]]:
        from southbridge.pci.bridge import PciBridge

        out: list[tuple[str, PciFunction]] = []

        def visit(bus: PciBus, prefix: str) -> None:
            for devfn, fn in sorted(bus.functions.items()):
                path = f"{prefix}{devfn >> 3:02x}.{devfn & 7}"
                out.append((path, fn))
                if isinstance(fn, PciBridge):
                    visit(fn.child, path + "/")

        visit(self, "")
        return out

    def save(self) -> dict[str, Any]:
        return {
            **header(self),
            "functions": {path: fn.save() for path, fn in self._paths()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        state = check_header(state, self)
        saved = state.get("functions")
        paths = self._paths()
        if not isinstance(saved, dict) or set(saved) != {p for p, _ in paths}:
            raise StateError("pci-bus: saved functions do not match the bus")
        if not all(isinstance(saved[p], dict) for p, _ in paths):
            raise StateError("pci-bus: every function state must be a mapping")
        backup = [(fn, fn.save()) for _, fn in paths]
        try:
            for path, fn in paths:
                fn.restore(saved[path])
        except StateError:
            for fn, st in backup:  # all or nothing
                fn.restore(st)
            raise
        finally:
            self.remap()
