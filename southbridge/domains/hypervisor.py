"""One process, several domains: each its own pc machine, port permission bitmap, KVM VM
and vCPU threads.

Domains are built in configuration order: the privileged one gets the host-numbered PCI view
(`PrivilegedView`); each user domain claims, as it starts, the hidden devices reserved for it
and every hidden device nobody reserved or owns yet (`Assignments.claim`), so the first user
domain gets them by default. `run` starts every domain's vCPUs (sessions are created on the
calling thread, which must be the main one for KVM's kick signal) and waits for all of them;
`shutdown` detaches every assigned device (revoking ports, mappings and routes) and releases
it in the ledger, so a later user domain could claim it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from southbridge.core.clock import Clock, HostClock
from southbridge.core.hostports import HostPortBackend, make_backend
from southbridge.core.permissions import PortPermissions
from southbridge.domains.assign import AssignedDevice
from southbridge.domains.assignment import Assignments
from southbridge.domains.config import DomainConfig, HypervisorConfig
from southbridge.domains.privileged import PrivilegedView, permissive_masks
from southbridge.domains.sources import source_for
from southbridge.host.chardev import close_backends, open_backends
from southbridge.host.inventory import HostInventory, load_lspci_dump, probe_sysfs
from southbridge.host.simulated import SimulatedHost
from southbridge.machine.pc import PcConfig, PcMachine

if TYPE_CHECKING:  # kvm is imported only when domains run, so tests without KVM need none
    from southbridge.kvm.runend import RunEnd
    from southbridge.kvm.session import KvmSession

logger = logging.getLogger("southbridge.domains")

GUEST_PREFIX = "guest:"


class HypervisorError(ValueError):
    """A domain cannot be built (bad image, no KVM): one line for the user."""


@dataclass
class Domain:
    config: DomainConfig
    machine: PcMachine
    view: PrivilegedView | None = None
    assigned: list[AssignedDevice] = field(default_factory=list)
    session: KvmSession | None = None
    result: RunEnd | None = None

    @property
    def name(self) -> str:
        return self.config.name


def load_inventory(config: HypervisorConfig) -> HostInventory:
    if config.lspci_dump:
        return load_lspci_dump(config.lspci_dump)
    return probe_sysfs(config.sysfs or "/sys")


class Hypervisor:
    def __init__(
        self,
        config: HypervisorConfig,
        inventory: HostInventory | None = None,
        sim: SimulatedHost | None = None,
        host_ports: HostPortBackend | None = None,
        clock_factory: Callable[[], Clock] = HostClock,
    ) -> None:
        self.config = config
        self.sim = sim
        if inventory is None:
            inventory = sim.inventory() if sim is not None else load_inventory(config)
        self.inventory = inventory
        if host_ports is None:
            host_ports = sim.ports if sim is not None else make_backend(config.host_ports)
        self.host_ports = host_ports
        self.clock_factory = clock_factory
        self.assignments = Assignments(inventory, list(config.hide))
        for dc in config.domains:
            for addr in dc.assign:
                if self.assignments.is_hidden(addr):
                    self.assignments.reserve(addr, dc.name)
        self.domains: list[Domain] = []
        self._closed = False

    @property
    def warnings(self) -> list[str]:
        return self.assignments.warnings

    def domain(self, name: str) -> Domain:
        return next(d for d in self.domains if d.name == name)

    # -- building ------------------------------------------------------------------------
    def build(self) -> list[Domain]:
        """Build every configured domain in order (claims happen here, first come first)."""
        for dc in self.config.domains:
            self.domains.append(self.build_domain(dc))
        return self.domains

    def build_domain(self, dc: DomainConfig) -> Domain:
        try:
            serial, debugcon = open_backends([dc.serial], dc.debugcon)
        except (ValueError, OSError) as e:
            raise HypervisorError(f"{dc.name}: {e}") from None
        try:
            machine = PcMachine(
                PcConfig(memory_mb=dc.memory_mb, smp=dc.smp),
                clock=self.clock_factory(),
                permissions=PortPermissions(),
                host_ports=self.host_ports,
                serial=serial,
                debugcon=debugcon,
            )
        except BaseException:
            close_backends(serial, debugcon)
            raise
        dom = Domain(dc, machine)
        if dc.privileged:
            dom.view = PrivilegedView(self.assignments, self.sim, dc.permissive)
            dom.view.install(machine)
        else:
            for dev in self.assignments.claim(dc.name):
                masks = permissive_masks(dc.permissive.get(dev.addr, []))
                try:
                    src = source_for(dev, self.sim, vfio=True)
                    dom.assigned.append(AssignedDevice(machine, dev, src, dc.name, self.sim, masks))
                except ValueError as e:
                    for ad in dom.assigned:  # all or nothing for this domain
                        ad.detach()
                    self.assignments.release(dc.name)
                    raise HypervisorError(f"{dc.name}: cannot assign {dev.addr}: {e}") from None
        return dom

    # -- running -------------------------------------------------------------------------
    def run(
        self, timeout: float | None = None, kvm_device: str | None = None
    ) -> dict[str, RunEnd | None]:
        """Load each domain's image, run all domains until each ends; returns the RunEnd of
        every domain by name. Always shuts the domains down."""
        from southbridge.kvm.firmware import DEFAULT_GUEST, prepare_firmware
        from southbridge.kvm.guestbuild import GuestBuildError, build
        from southbridge.kvm.loader import LoadError, read_image
        from southbridge.kvm.session import KvmSession
        from southbridge.kvm.system import DEFAULT_DEVICE, KvmError

        if not self.domains:
            self.build()
        try:
            for dom in self.domains:
                bios = dom.config.bios or GUEST_PREFIX + DEFAULT_GUEST
                try:
                    path = (
                        str(build(bios[len(GUEST_PREFIX) :]))
                        if bios.startswith(GUEST_PREFIX)
                        else bios
                    )
                    shadow = prepare_firmware(dom.machine, read_image(path))
                except (GuestBuildError, LoadError) as e:
                    raise HypervisorError(f"{dom.name}: {e}") from None
                try:
                    # Each vCPU's local APIC model is its controller (MSIs reach it; the
                    # 8259s through LINT0 ExtINT).
                    session = KvmSession(
                        dom.machine, dom.config.smp, device=kvm_device or DEFAULT_DEVICE
                    )
                except KvmError as e:
                    raise HypervisorError(str(e)) from None
                shadow.on_change = session.sync_memory
                dom.session = session
            threads = []
            for dom in self.domains:  # started in configuration order
                t = threading.Thread(
                    target=self._run_one, args=(dom, timeout), name=f"dom-{dom.name}", daemon=True
                )
                t.start()
                threads.append(t)
            for t in threads:
                t.join()
            return {d.name: d.result for d in self.domains}
        finally:
            self.shutdown()

    @staticmethod
    def _run_one(dom: Domain, timeout: float | None) -> None:
        from southbridge.kvm.runend import RunEnd

        session = dom.session
        assert session is not None
        try:
            dom.result = session.run(timeout)
        except Exception as e:  # one domain's failure must not take the others down
            logger.exception("domain %s failed", dom.name)
            dom.result = RunEnd("error", 1, f"{dom.name}: {e}")

    def shutdown(self) -> None:
        """Detach and release every assigned device; close sessions and backends."""
        if self._closed:
            return
        self._closed = True
        for dom in self.domains:
            for ad in dom.assigned:
                ad.detach()
            dom.assigned = []
            self.assignments.release(dom.name)
            if dom.view is not None:
                dom.view.uninstall(dom.machine)
            if dom.session is not None:
                dom.session.close()
            dom.session = None
            dom.machine.close()
