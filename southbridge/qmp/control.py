"""QMP commands carried out on a machine: run state, reset, CPUs, PCI, snapshots of the
device side (the KVM runner adds its vCPUs and threads to the same commands)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from southbridge.core.state import StateError
from southbridge.kvm import snapshotfile
from southbridge.machine.pc import PcMachine
from southbridge.qmp.protocol import QmpError

EventSink = Callable[[str, dict[str, Any] | None], None]


class Runner(Protocol):
    """What runs the machine's vCPUs (kvm/session.py KvmSession): QMP stop and cont pause
    and resume them with machine time."""

    def pause(self, timeout: float = ...) -> bool: ...

    def resume(self) -> None: ...

    def save_snapshot(self, path: str, config: dict[str, Any]) -> int: ...

    def load_snapshot(self, path: str, config: dict[str, Any]) -> None: ...


class MachineController:
    """A `Controller` over a pc machine; `emit` receives the events (the server's). With a
    `runner` (set when the KVM session exists), stop and cont park and resume the vCPUs;
    without one (CPU-less) they only change the reported state."""

    def __init__(self, machine: PcMachine, emit: EventSink, vcpu_threads: list[int] | None = None):
        self.machine = machine
        self.emit = emit
        self.running = True
        self.quit_requested = threading.Event()
        self._vcpu_threads = vcpu_threads
        self.runner: Runner | None = None
        self._state_lock = threading.Lock()  # one stop/cont at a time

    def status(self) -> str:
        if self.quit_requested.is_set():
            return "shutdown"
        return "running" if self.running else "paused"

    def stop(self) -> None:
        with self._state_lock:
            if not self.running:
                return
            if self.runner is not None and not self.runner.pause():
                self.runner.resume()
                raise QmpError("the vCPUs did not stop in time")
            self.running = False
        self.emit("STOP", None)

    def cont(self) -> None:
        with self._state_lock:
            if self.running:
                return
            if self.runner is not None:
                self.runner.resume()
            self.running = True
        self.emit("RESUME", None)

    def system_reset(self) -> None:
        with self.machine.lock:
            self.machine.request("reset")
        self.emit("RESET", {"guest": False, "reason": "host-qmp-system-reset"})

    def system_powerdown(self) -> None:
        """The ACPI power button (PIIX4 PM1a PWRBTN_STS, an SCI when enabled), as QEMU."""
        pm = self.machine.pm
        if pm is None:
            raise QmpError("system_powerdown needs ACPI (the machine runs with --no-acpi)")
        with self.machine.lock:
            pm.press_power_button()
        self.emit("POWERDOWN", None)

    def quit(self) -> None:
        self.quit_requested.set()
        with self.machine.lock:
            self.machine.request("poweroff")
        self.emit("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"})

    def cpus(self) -> list[dict[str, Any]]:
        n = max(1, self.machine.config.smp)
        out = []
        for i in range(n):
            tid = self._vcpu_threads[i] if self._vcpu_threads else threading.get_native_id()
            out.append(
                {
                    "cpu-index": i,
                    "qom-path": f"/machine/unattached/device[{i}]",
                    "thread-id": tid,
                    "props": {"core-id": 0, "thread-id": 0, "socket-id": i},
                    "target": "x86_64",
                }
            )
        return out

    def pci(self) -> list[dict[str, Any]]:
        with self.machine.lock:
            devices = [
                {
                    "bus": 0,
                    "slot": fn.slot,
                    "function": fn.function,
                    "class_info": {"class": fn.config.get(0x0A, 2)},
                    "id": {"vendor": fn.vendor_id, "device": fn.device_id},
                    "qdev_id": "",
                }
                for _, fn in sorted(self.machine.pci_bus.functions.items())
            ]
        return [{"bus": 0, "devices": devices}]

    def _config(self) -> dict[str, Any]:
        return snapshotfile.machine_config(self.machine.config)

    def snapshot_save(self, path: str) -> None:
        if self.runner is not None:  # the whole VM: vCPUs too
            try:
                self.runner.save_snapshot(path, self._config())
            except snapshotfile.SnapshotError as e:
                raise QmpError(str(e)) from None
            return
        with self.machine.lock:
            snap = snapshotfile.Snapshot(self._config(), self.machine.save())
            try:
                snapshotfile.write(path, snap, self.machine.memory)
            except snapshotfile.SnapshotError as e:
                raise QmpError(str(e)) from None

    def snapshot_load(self, path: str) -> None:
        if self.runner is not None:
            try:
                self.runner.load_snapshot(path, self._config())
            except snapshotfile.SnapshotError as e:
                raise QmpError(str(e)) from None
            return
        with self.machine.lock:
            try:
                meta = snapshotfile.read_meta(path)
                snapshotfile.check_config(meta.config, self._config(), path)
                # Devices first (all or nothing), then RAM, whose layout the file matches.
                self.machine.restore(meta.machine)
                snapshotfile.read(path, self.machine.memory)
            except (snapshotfile.SnapshotError, StateError) as e:
                raise QmpError(str(e)) from None
