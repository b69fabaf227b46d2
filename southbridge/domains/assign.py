"""Attaching a host PCI function to a user domain, and taking it away again.

The function appears on the domain's PCI bus at a slot of its own as a `FilteredFunction`
(virtual BARs, command, interrupt line, emulated MSI/MSI-X; the rest through the write
filter). Its I/O BARs are opened in the domain's port bitmap at the host addresses (so the
ports pass straight to the host backend) and, wherever the guest moves a BAR, the guest's
range forwards to the host range at the same offset. Memory BARs map the simulated device's
memory or the sysfs `resource<N>` file; a device bound to vfio-pci (its source a
`VfioConfigSource`) has its BARs, reset and interrupts from VFIO instead. The device's
interrupt source is forwarded:

* INTx, as VFIO does it: when the source asserts, the guest's INTx is raised and the source
  is masked (its further changes are not followed); the guest's EOI at the controller its
  INTx reaches (PIC IRQ or IOAPIC pin, through the PIIX3 PIRQ routing) lowers the guest's
  line and unmasks, and a source still asserted (or an edge seen meanwhile) raises it
  again, so no interrupt is lost and none is stuck.
* MSI / MSI-X: while the guest has enabled either in the emulated capability, the source
  signals vectors instead and each one is sent as the guest programmed it.

`detach` revokes every mapping, permission and route.
"""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from southbridge.core.device import BusDevice, ones
from southbridge.core.hostports import HostPortBackend
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.state import StateError, get_bool
from southbridge.host.inventory import HostDevice, HostResource
from southbridge.host.simulated import InterruptSource, SimulatedHost
from southbridge.host.vfio import VfioConfigSource, VfioDevice, VfioInterruptSource
from southbridge.machine.pc import PcMachine
from southbridge.pci.bar import Bar, BarKind
from southbridge.pci.passthrough import ConfigSource, FilteredFunction
from southbridge.pci.piix3 import pirq_of

logger = logging.getLogger("southbridge.domains")


class AssignError(ValueError):
    pass


class HostPortWindow(BusDevice):
    """A guest I/O BAR: offset n reaches host port host_base + n through the backend."""

    io_sizes = frozenset({1, 2, 4})

    def __init__(self, backend: HostPortBackend, host_base: int, length: int, name: str) -> None:
        self.backend = backend
        self.host_base = host_base
        self.length = length
        self.name = name

    def read(self, offset: int, size: int) -> int:
        if not 0 <= offset <= self.length - size:
            return ones(size)
        return self.backend.read(self.host_base + offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        if 0 <= offset <= self.length - size:
            self.backend.write(self.host_base + offset, size, value)


class ResourceMmio(BusDevice):
    """A memory BAR of a real host device through its sysfs resource file (mmap)."""

    io_sizes = frozenset({1, 2, 4, 8})

    def __init__(self, path: Path, size: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_SYNC)
        try:
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.size = size

    def read(self, offset: int, size: int) -> int:
        if not 0 <= offset <= self.size - size:
            return ones(size)
        return int.from_bytes(self.map[offset : offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        if 0 <= offset <= self.size - size:
            self.map[offset : offset + size] = (value & ones(size)).to_bytes(size, "little")

    def close(self) -> None:
        self.map.close()


class AssignedFunction(FilteredFunction):
    """A FilteredFunction that tells its owner when the guest changed its config or reset
    it, and keeps the INTx forwarding state (saved and restored with the function)."""

    def __init__(
        self,
        *args: object,
        on_change: Callable[[], None],
        on_reset: Callable[[], bool],
        **kw: object,
    ) -> None:
        self._on_change = on_change
        self._on_reset = on_reset
        self.masked = False  # INTx in service: the source is not followed until EOI
        self.edge_seen = False  # an edge arrived while masked: deliver after EOI
        super().__init__(*args, **kw)  # type: ignore[arg-type]

    def on_config_write(self, offset: int, size: int) -> None:
        self._on_change()

    def reset_device(self) -> None:
        # The owner says whether the source is still asserted: then it is in service anew.
        self.edge_seen = False
        self.masked = self._intx_request = self._on_reset()

    def save_device(self) -> dict[str, Any]:
        return {"masked": self.masked, "edge_seen": self.edge_seen}

    def restore_device(self, state: dict[str, Any]) -> None:
        masked, edge = get_bool(state, "masked"), get_bool(state, "edge_seen")
        if edge and not masked:
            raise StateError(f"{self.name}: an edge is pending only while INTx is masked")
        self.masked, self.edge_seen = masked, edge


def _bar_for(res: HostResource, device: BusDevice, name: str) -> Bar:
    mem = BarKind.MEM64 if res.is_64bit else BarKind.MEM32
    kind = BarKind.IO if res.is_io else mem
    size = max(res.size, 4 if res.is_io else 16)
    size = 1 << (size - 1).bit_length()
    return Bar(kind, size, device, prefetchable=res.prefetchable and not res.is_io, name=name)


class AssignedDevice:
    """One host function attached to one user domain's machine."""

    def __init__(
        self,
        machine: PcMachine,
        dev: HostDevice,
        source: ConfigSource,
        domain: str,
        sim: SimulatedHost | None = None,
        permissive: dict[int, int] | None = None,
        slot: int | None = None,
    ) -> None:
        self.machine = machine
        self.dev = dev
        self.domain = domain
        self.log = RateLimitedLog(logger)
        self.opened: list[tuple[int, int]] = []
        self.closers: list[Callable[[], None]] = []
        self.irq: InterruptSource | VfioInterruptSource | None = None
        self.attached = False
        live = sim.get(dev.addr) if sim is not None else None
        self.vfio: VfioDevice | None = None
        if isinstance(source, VfioConfigSource):
            self.vfio = source.device
            self.closers.append(self.vfio.close)  # interrupts off, BARs unmapped, fds closed
        backend = machine.ports.host
        bars: dict[int, Bar] = {}
        for res in dev.resources:
            if res.index >= 6 or not res.size:
                continue
            name = f"{dev.addr.short()}.bar{res.index}"
            device: BusDevice
            region = self.vfio.bar(res.index) if self.vfio is not None else None
            if region is not None:
                device = region
            elif res.is_io:
                if res.end >= 0x10000:
                    continue
                device = HostPortWindow(backend, res.start, res.size, name)
            elif live is not None and res.index in live.memory:
                device = live.memory[res.index]
            elif dev.sysfs_path is not None and (dev.sysfs_path / f"resource{res.index}").exists():
                rm = ResourceMmio(dev.sysfs_path / f"resource{res.index}", res.size)
                self.closers.append(rm.close)
                device = rm
            else:
                # Still a BAR (sizing works, an MSI-X table in it is emulated); the rest of
                # it floats, as a region nothing decodes.
                self.log.warning(f"nomem:{dev.addr}", "%s: BAR %d has no backing", name, res.index)
                device = BusDevice()
            bars[res.index] = _bar_for(res, device, name)
        try:
            if self.vfio is not None:  # the device's DMA reaches this guest's RAM only
                self.vfio.map_dma(machine.memory.regions)
                self.vfio.interrupts()  # INTx eventfd set up before the guest sees the device
            self.fn = AssignedFunction(
                source,
                bars,
                permissive=permissive,
                name=dev.addr.short(),
                on_change=self._sync_irq_mode,
                on_reset=self._after_reset,
            )
            machine.pci_bus.add(self.fn, slot)
        except BaseException:
            for close in self.closers:  # nothing half-attached stays mapped
                close()
            raise
        # The domain may touch the host ranges themselves: the original's enabled ports.
        for res in dev.io_ranges():
            if res.end < 0x10000:
                machine.permissions.allow(res.start, res.size)
                self.opened.append((res.start, res.size))
        if live is not None:
            self.irq = live.irq
        elif self.vfio is not None:
            self.irq = self.vfio.interrupts()
        if self.irq is not None:
            self.irq.intx_listeners.append(self._on_intx)
            self.irq.msi_listeners.append(self._on_msi)
        machine.pic.eoi_listeners.append(self._on_pic_eoi)
        machine.ioapic.eoi_listeners.append(self._on_ioapic_eoi)
        self.attached = True

    @property
    def masked(self) -> bool:
        return self.fn.masked

    # -- INTx ----------------------------------------------------------------------------
    def _pirq(self) -> int | None:
        pin = self.fn.interrupt_pin
        if not 1 <= pin <= 4 or self.fn.bus is None:
            return None
        return pirq_of(self.fn.slot, pin - 1)

    def _on_intx(self, level: bool) -> None:
        with self.machine.lock:
            # (not attached: a VFIO reader thread that waited for the lock across detach)
            if not level or not self.attached or self.irq is None or self.irq.msi_enabled:
                return
            if self.fn.masked:
                self.fn.edge_seen = True  # an edge while in service: deliver after EOI
                return
            self.fn.masked = True
            self.fn.set_intx(True)

    def _unmask(self) -> None:
        if not self.fn.masked:
            return
        self.fn.masked = False
        self.fn.set_intx(False)
        unmask = getattr(self.irq, "unmask", None)
        if unmask is not None:
            # VFIO auto-masked the line: unmasking it there is all, since a line still
            # asserted signals again by itself (and then raises the guest's INTx anew).
            self.fn.edge_seen = False
            unmask()
            return
        again = self.fn.edge_seen or (self.irq is not None and self.irq.level)
        self.fn.edge_seen = False
        if again and self.irq is not None and not self.irq.msi_enabled:
            self.fn.masked = True
            self.fn.set_intx(True)

    def _on_pic_eoi(self, irq: int) -> None:
        n = self._pirq()
        if n is not None and self.machine.piix3.route(n) == irq:
            self._unmask()

    def _on_ioapic_eoi(self, pin: int) -> None:
        n = self._pirq()
        if n is not None and pin == 16 + n:
            self._unmask()

    def _after_reset(self) -> bool:
        """RST#: MSI is off again; a source still asserted is followed from scratch
        (delivered once the guest routes and unmasks it). Returns whether it is."""
        if self.vfio is not None:
            self.vfio.reset()  # RST# reaches the real function (VFIO_DEVICE_RESET)
        if self.irq is None:
            return False
        self.irq.msi_enabled = False
        unmask = getattr(self.irq, "unmask", None)
        if unmask is not None:  # VFIO: unmasked at the host, it signals again if asserted
            unmask()
            return False
        return self.irq.level

    # -- MSI -----------------------------------------------------------------------------
    def _sync_irq_mode(self) -> None:
        """The guest enabled or disabled MSI/MSI-X: the host source follows (VFIO's
        SET_IRQS); INTx in flight is withdrawn when messages take over."""
        if self.irq is None:
            return
        msi, msix = self.fn.msi, self.fn.msix
        on = bool((msi is not None and msi.enabled) or (msix is not None and msix.enabled))
        if on == self.irq.msi_enabled:
            return
        configure = getattr(self.irq, "configure_msi", None)
        if on and configure is not None:  # VFIO needs to know which kind and how many
            cap = msix if msix is not None and msix.enabled else msi
            assert cap is not None
            configure(cap is msix, cap.vectors)
        self.irq.msi_enabled = on
        if on and self.fn.masked:
            self.fn.masked = self.fn.edge_seen = False
            self.fn.set_intx(False)

    def _on_msi(self, vector: int) -> None:
        with self.machine.lock:
            if not self.attached:
                return
            msix, msi = self.fn.msix, self.fn.msi
            if msix is not None and msix.enabled:
                msix.notify(vector)
            elif msi is not None and msi.enabled:
                msi.notify(vector)

    # -- teardown ------------------------------------------------------------------------
    def detach(self) -> None:
        """Revoke everything: ports, BAR mappings, the function, interrupt routes."""
        if not self.attached:
            return
        self.attached = False
        m = self.machine
        with m.lock:
            for base, length in self.opened:
                m.permissions.deny(base, length)
            self.opened = []
            if self.irq is not None:
                self.irq.intx_listeners.remove(self._on_intx)
                self.irq.msi_listeners.remove(self._on_msi)
                self.irq.msi_enabled = False
            if self._on_pic_eoi in m.pic.eoi_listeners:
                m.pic.eoi_listeners.remove(self._on_pic_eoi)
            if self._on_ioapic_eoi in m.ioapic.eoi_listeners:
                m.ioapic.eoi_listeners.remove(self._on_ioapic_eoi)
            self.fn.masked = False
            self.fn.set_intx(False)
            bus = self.fn.bus
            if bus is not None:
                del bus.functions[self.fn.devfn]
                self.fn.bus = None
                root = bus.root
                if root is not None:
                    root.remap()
            closers, self.closers = self.closers, []
        # Outside the lock: closing a VFIO source joins its reader thread, which may be
        # waiting for the lock to deliver one last interrupt (then dropped: not attached).
        for close in closers:
            close()
