"""What every machine has: clock, buses, memory, GSIs, the device lock and run-state requests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from southbridge.core.clock import Clock, ManualClock
from southbridge.core.hostports import HostPortBackend
from southbridge.core.irq import GsiRouter, IrqLine
from southbridge.core.memory import AddressSpace, GuestMemory
from southbridge.core.mmiobus import MmioBus
from southbridge.core.permissions import PortPermissions
from southbridge.core.portbus import PortBus
from southbridge.core.request import RequestKind
from southbridge.core.state import StateError, Stateful, brief, check_keys, check_version
from southbridge.devices.lapic import LocalApic
from southbridge.devices.pic import PicPair


@dataclass
class RunRequest:
    """Why the machine wants its run to end: 'exit' (isa-debug-exit), 'reset', 'poweroff'."""

    kind: RequestKind
    status: int = 0


class Machine:
    """The device side of one domain.

    State: `save()` is every stateful part's state under the stable key `stateful()` gives
    it; `restore()` takes only a state with exactly those keys, validates each part and
    the invariants between parts, and raises `StateError` for anything else, leaving the
    machine as it was.

    Locking: `lock` is the machine's device lock. vCPU threads take it around every exit they
    dispatch to a device and the timer thread takes it around timer callbacks, so each device
    sees one access at a time and a multi-step register update is atomic. Devices themselves
    take no locks (they are pure state machines), so there is no lock order to get wrong.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        permissions: PortPermissions | None = None,
        host_ports: HostPortBackend | None = None,
        gsi_count: int = 24,
    ) -> None:
        self.clock: Clock = clock if clock is not None else ManualClock()
        self.lock = threading.RLock()
        self.permissions = permissions if permissions is not None else PortPermissions()
        self.ports = PortBus(self.permissions, host_ports)
        self.mmio = MmioBus()
        self.memory = GuestMemory()
        self.space = AddressSpace(self.memory, self.mmio)
        self.gsi = GsiRouter(gsi_count)
        # Named groups of lines that `irq_intercept_in`/`_out` (qtest) can observe.
        self.irq_inputs: dict[str, list[IrqLine]] = {"ioapic": self.gsi.lines}
        self.irq_outputs: dict[str, list[IrqLine]] = {}
        # The interrupt controllers a CPU's INTR pin can be wired to (a KVM run gives each
        # vCPU its LAPIC, the 8259 pair reaching CPU 0 through LINT0): none on a bare machine.
        self.pic: PicPair | None = None
        self.lapics: list[LocalApic] = []
        self.run_request: RunRequest | None = None
        self._request_hooks: list[Callable[[RunRequest], None]] = []

    STATE_KIND: ClassVar[str] = "machine"
    STATE_VERSION: ClassVar[int] = 1

    def stateful(self) -> dict[str, Stateful]:
        """Every part with guest-visible state, under a key stable across runs (a subclass
        adds its devices)."""
        return {}

    def save(self) -> dict[str, Any]:
        """The whole device side as plain data (guest RAM and vCPUs are saved by kvm/)."""
        with self.lock:
            parts = {key: part.save() for key, part in self.stateful().items()}
        return {"kind": self.STATE_KIND, "version": self.STATE_VERSION, "devices": parts}

    def restore(self, state: object) -> None:
        """Load a state from `save()` of a machine with the same configuration. All or
        nothing: a rejected state (StateError) leaves every part as it was."""
        st = check_version(state, self.STATE_KIND, self.STATE_VERSION)
        check_keys(st, self.STATE_KIND, {"kind", "version", "devices"})
        devices = st["devices"]
        if not isinstance(devices, dict):
            raise StateError(f"{self.STATE_KIND}: devices={brief(devices)} is not a mapping")
        parts = self.stateful()
        check_keys(devices, f"{self.STATE_KIND} devices", set(parts))
        with self.lock:
            backup = {key: part.save() for key, part in parts.items()}
            try:
                for key, part in parts.items():
                    try:
                        part.restore(devices[key])
                    except StateError as e:
                        raise StateError(f"{key}: {e}") from None
                self.check_invariants()
            except StateError:
                for key, part in parts.items():
                    part.restore(backup[key])
                raise

    def check_invariants(self) -> None:
        """Raise StateError if the restored parts contradict each other (a subclass checks
        what its wiring implies)."""

    def on_request(self, hook: Callable[[RunRequest], None]) -> None:
        self._request_hooks.append(hook)

    def request(self, kind: RequestKind, status: int = 0) -> None:
        """A device asks for the run to end (the first request wins)."""
        if self.run_request is None:
            self.run_request = RunRequest(kind, status)
        for hook in self._request_hooks:
            hook(self.run_request)

    def locked(self, fn: Callable[[], None]) -> Callable[[], None]:
        """`fn` wrapped to run under the device lock: for callbacks from host threads
        (chardev backends), since devices take no locks themselves."""

        def under_lock() -> None:
            with self.lock:
                fn()

        return under_lock

    def close(self) -> None:
        """Release what the machine holds on the host (its backends); idempotent. The
        machine's devices are not used afterwards."""
