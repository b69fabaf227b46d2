"""One run of a machine under KVM: VM, memory slots, vCPU threads, the timer thread, and
the decision of when and why the run ends."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from southbridge.core.clock import HostClock
from southbridge.core.device import BusDevice
from southbridge.core.state import StateError
from southbridge.devices.lapic import DEFAULT_BASE as DEFAULT_APIC_BASE
from southbridge.kvm import snapshotfile, vcpustate
from southbridge.kvm.apic import VcpuApic, enable_apic_msr_exits, sync_tsc
from southbridge.kvm.runend import RunEnd
from southbridge.kvm.system import DEFAULT_DEVICE, Kvm
from southbridge.kvm.vcpu import InterruptController, Vcpu, ensure_kick_signal
from southbridge.kvm.vm import Vm
from southbridge.machine.base import Machine, RunRequest

logger = logging.getLogger("southbridge.kvm")

JOIN_TIMEOUT = 5.0


class KvmSession:
    """Runs `machine` on `cpus` vCPUs. `irqs[i]` is vCPU i's interrupt controller (default:
    vCPU i's local APIC when the machine has `lapics`, the PIC reaching CPU 0 through LINT0
    ExtINT; otherwise the machine's 8259 pair on vCPU 0).

    Locking: `machine.lock` is the only device lock; vCPU threads and the timer thread take
    it per exit / per timer callback and never across KVM_RUN (see `southbridge.kvm.apic`)."""

    def __init__(
        self,
        machine: Machine,
        cpus: int = 1,
        irqs: list[InterruptController | None] | None = None,
        device: str = DEFAULT_DEVICE,
    ) -> None:
        if cpus < 1:
            raise ValueError("at least one vCPU")
        self.machine = machine
        pic: InterruptController | None = machine.pic
        lapics = machine.lapics
        if irqs is None:
            if len(lapics) >= cpus:
                irqs = [VcpuApic(lapics[i], pic) for i in range(cpus)]
            else:
                irqs = [pic] + [None] * (cpus - 1)
        self.kvm = Kvm(device)
        self.vm: Vm | None = None
        self.vcpus: list[Vcpu] = []
        self._result: RunEnd | None = None
        self._done = threading.Event()
        self._result_lock = threading.Lock()
        self._apic_window: tuple[int, int, BusDevice, str] | None = None
        try:
            ensure_kick_signal()
            self.vm = Vm(self.kvm)
            self.vm.sync_memory(machine.memory)
            if any(isinstance(irq, VcpuApic) for irq in irqs):
                enable_apic_msr_exits(self.kvm, self.vm.fd)
                self._detach_cpu0_window(irqs)
            for i in range(cpus):
                self.vcpus.append(Vcpu(self.kvm, self.vm.fd, i, machine, irqs[i], self.end))
            for v in self.vcpus:
                if v.apic is not None:
                    sync_tsc(v.apic.lapic, v.fd)
        except BaseException:
            self.close()
            raise
        machine.on_request(self._on_request)

    def _detach_cpu0_window(self, irqs: list[InterruptController | None]) -> None:
        """CPU-less machines decode CPU 0's xAPIC window on the MMIO bus; under KVM every
        vCPU reaches its own LAPIC first, so that registration would only answer a vCPU
        whose own APIC is relocated or disabled with CPU 0's registers. Take it off the bus
        for the run (`close` puts it back)."""
        route = self.machine.mmio.lookup(DEFAULT_APIC_BASE)
        if route is None or not any(
            isinstance(irq, VcpuApic) and irq.lapic is route.device for irq in irqs
        ):
            return
        self.machine.mmio.unregister(route.base)
        self._apic_window = (route.base, route.end - route.base, route.device, route.name)

    def sync_memory(self) -> None:
        """Re-map KVM's memory slots after `machine.memory` changed (PAM, shadowing)."""
        if self.vm is not None:
            self.vm.sync_memory(self.machine.memory)

    def _on_request(self, req: RunRequest) -> None:
        status = req.status if req.kind == "exit" else 0
        self.end(RunEnd(req.kind, status, f"guest requested {req.kind}"))

    def end(self, result: RunEnd) -> None:
        """End the run (first caller wins) and wake every vCPU so it notices."""
        with self._result_lock:
            if self._result is not None:
                return
            self._result = result
        self._done.set()
        for v in self.vcpus:
            v.stop.set()
            v.kick()

    def run(self, timeout: float | None = None) -> RunEnd:
        """Run until the guest ends the run, an error, or `timeout` seconds of host time."""
        clock = self.machine.clock
        stop_timers = threading.Event()
        threads = [
            threading.Thread(target=v.run, name=f"vcpu{v.index}", daemon=True) for v in self.vcpus
        ]
        timer_thread = None
        if isinstance(clock, HostClock):
            timer_thread = threading.Thread(
                target=clock.run,
                args=(stop_timers, self.machine.lock),
                name="timers",
                daemon=True,
            )
            timer_thread.start()
        start = time.monotonic()
        for t in threads:
            t.start()
        try:
            while not self._done.wait(0.2):
                if timeout is not None and time.monotonic() - start >= timeout:
                    self.end(RunEnd("timeout", 124, f"timeout after {timeout:g} s"))
                    break
        finally:
            self.end(RunEnd("stopped", 130, "interrupted"))  # no-op when already ended
            for t in threads:
                t.join(JOIN_TIMEOUT)
            stop_timers.set()
            if isinstance(clock, HostClock):
                clock.wake()
            if timer_thread is not None:
                timer_thread.join(JOIN_TIMEOUT)
        assert self._result is not None
        return self._result

    def pause(self, timeout: float = JOIN_TIMEOUT) -> bool:
        """Stop the guest (QMP `stop`): every vCPU leaves guest mode and parks, then the
        machine clock stops, so timers neither fire nor count while paused. True when every
        running vCPU parked within `timeout` seconds."""
        for v in self.vcpus:
            v.pause()
        deadline = time.monotonic() + timeout
        ok = True
        for v in self.vcpus:
            while v.is_running and not v.parked.wait(0.05):
                if time.monotonic() >= deadline or self._done.is_set():
                    ok = False
                    break
        clock = self.machine.clock
        if isinstance(clock, HostClock):
            with self.machine.lock:
                clock.pause()
        return ok

    def resume(self) -> None:
        """Undo `pause`: the clock goes on from where it stopped, then the vCPUs."""
        clock = self.machine.clock
        if isinstance(clock, HostClock):
            with self.machine.lock:
                clock.resume()
        for v in self.vcpus:
            v.resume()

    @property
    def paused(self) -> bool:
        return any(v.paused for v in self.vcpus)

    def save_snapshot(self, path: str, config: dict[str, Any]) -> int:
        """Write the whole VM to `path` (kvm/snapshotfile.py): devices, every vCPU's state,
        RAM; the guest is paused meanwhile (and left as it was). Returns the file's size."""
        with self._paused_for("snapshot"), self.machine.lock:
            snap = snapshotfile.Snapshot(
                config,
                self.machine.save(),
                [vcpustate.save(v) for v in self.vcpus],
                self.machine.clock.now(),
            )
            return snapshotfile.write(path, snap, self.machine.memory)

    def load_snapshot(self, path: str, config: dict[str, Any]) -> None:
        """Resume the VM saved in `path`, taken on the same configuration: every check runs
        before anything changes, then devices, RAM and vCPUs are loaded."""
        meta = snapshotfile.read_meta(path)
        snapshotfile.check_config(meta.config, config, path)
        if len(meta.vcpus) != len(self.vcpus):
            raise snapshotfile.SnapshotError(
                f"{path}: the snapshot has {len(meta.vcpus)} vCPUs, this run {len(self.vcpus)}"
            )
        with self._paused_for("restore"), self.machine.lock:
            try:
                self.machine.restore(meta.machine)
            except StateError as e:
                raise snapshotfile.SnapshotError(f"{path}: {e}") from None
            snapshotfile.read(path, self.machine.memory, verify=False)  # read_meta did
            for v, state in zip(self.vcpus, meta.vcpus, strict=True):
                vcpustate.restore(v, state)
                if v.apic is not None:
                    sync_tsc(v.apic.lapic, v.fd)  # the restored TSC: deadlines follow

    @contextlib.contextmanager
    def _paused_for(self, what: str) -> Iterator[None]:
        was_paused = self.paused
        if not was_paused and not self.pause():
            self.resume()
            raise snapshotfile.SnapshotError(f"{what}: the vCPUs did not stop in time")
        try:
            yield
        finally:
            if not was_paused:
                self.resume()

    def close(self) -> None:
        if self._apic_window is not None:
            self.machine.mmio.register(*self._apic_window)
            self._apic_window = None
        for v in self.vcpus:
            v.close()
        self.vcpus = []
        if self.vm is not None:
            self.vm.close()
            self.vm = None
        self.kvm.close()

    def __enter__(self) -> KvmSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
