"""A vCPU: its fd, the shared kvm_run page, registers, CPUID, and the run loop (one thread).

The loop turns exits into bus accesses under `machine.lock` and injects the interrupt
controller's INTR with KVM_INTERRUPT (userspace irqchip: the in-kernel one is never created).
Waking a vCPU (`kick`) sets `immediate_exit` and sends SIGUSR2 (KICK_SIGNAL,
as QEMU sends its SIG_IPI; SIGUSR1 is the user's, for snapshots) to its thread: the signal
ends a KVM_RUN in progress with EINTR and `immediate_exit` makes one about to start return
at once, so a kick between "checked for work" and "entered the guest" is never lost.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import mmap
import os
import signal
import struct
import threading
from collections.abc import Callable
from typing import Literal, Protocol

from southbridge.core.irq import IrqLine
from southbridge.kvm import abi, cpuid, regdump
from southbridge.kvm.apic import VcpuApic
from southbridge.kvm.coalesced import CoalescedRing, register_zones
from southbridge.kvm.runend import RunEnd as RunEnd  # re-exported: tests and tools import it here
from southbridge.kvm.system import Kvm, KvmError, ioctl
from southbridge.machine.base import Machine

logger = logging.getLogger("southbridge.kvm")

# SIGUSR2: a standard signal coalesces while pending, as a kick should (a real-time one
# would queue every kick); SIGUSR1 is the user's (--snapshot).
KICK_SIGNAL: int = signal.SIGUSR2

_EXIT_OFF = abi.kvm_run.exit.offset
_IO = struct.Struct("<BBHIQ")  # direction, size, port, count, data_offset
_MMIO = struct.Struct("<Q8sIB")  # phys_addr, data, len, is_write
_IO_MASK = (0, 0xFF, 0xFFFF, 0, 0xFFFFFFFF)  # by access size
# memoryview casts holding one datum of each size
_IO_FORMAT: dict[int, Literal["B", "H", "I"]] = {1: "B", 2: "H", 4: "I"}
# KVM_RUN is the hot call (one per exit): libc's ioctl without argtypes conversion or the
# `system.ioctl` wrapper (about 1 us less per exit); the errno is read only on failure.
# Its own CDLL so `system`'s argtypes do not apply. ctypes releases the GIL for the call.
_kvm_run_call = ctypes.CDLL(None, use_errno=True).ioctl
# kvm_run offsets for the loop's typed views, as indexes in units of the view's item size.
_REQ_WINDOW = abi.kvm_run.request_interrupt_window.offset
_REASON_I = abi.kvm_run.exit_reason.offset // 4
_CR8_Q = abi.kvm_run.cr8.offset // 8
_IO_DIRECTION = _EXIT_OFF
_IO_SIZE = _EXIT_OFF + 1
_IO_PORT_H = (_EXIT_OFF + 2) // 2
_IO_COUNT_I = (_EXIT_OFF + 4) // 4
_IO_DATA_OFFSET_Q = (_EXIT_OFF + 8) // 8
_X86_EFLAGS_IF = 1 << 9
_APIC_BASE_EN = 1 << 11  # IA32_APIC_BASE global enable
KVM_EXIT_SET_TPR = 11  # linux/kvm.h; not in `abi` (only the APIC path needs it)


class InterruptController(Protocol):
    """What a vCPU needs from the controller wired to its INTR pin (the 8259 pair now, a
    local APIC per vCPU later): a level that is high while a vector waits, and the INTA
    cycle that returns the vector."""

    intr: IrqLine

    def acknowledge(self) -> int: ...


Buffer = mmap.mmap | bytearray


def io_one(machine: Machine, view: memoryview, index: int, port: int, size: int, out: bool) -> None:
    """The single IN/OUT path: one bus access of `size` (1, 2 or 4) bytes at `port`, its
    datum `view[index]` (`view` is the kvm_run page cast to items of `size` bytes, the data
    aligned). The run loop calls it for every single IN/OUT exit and `dispatch_io` for a
    count of 1, so both answer alike. `machine.ports` is read per call: a tracer may shadow
    its methods."""
    ports = machine.ports
    lock = machine.lock
    lock.acquire()  # bound acquire/release: 0.1 us less than `with`
    try:
        if out:
            ports.write(port, size, view[index])
        else:
            view[index] = ports.read(port, size) & _IO_MASK[size]
    finally:
        lock.release()


def dispatch_io(machine: Machine, buf: Buffer) -> None:
    """A KVM_EXIT_IO in the kvm_run page `buf`: `count` items of `size` bytes at
    `data_offset` (string and REP I/O give count > 1), each one bus access, in order. A
    single aligned IN/OUT goes through `io_one`, as in the run loop."""
    direction, size, port, count, off = _IO.unpack_from(buf, _EXIT_OFF)
    fmt = _IO_FORMAT.get(size)
    if count == 1 and fmt is not None and off % size == 0:
        with memoryview(buf) as raw, raw.cast(fmt) as view:
            io_one(machine, view, off // size, port, size, direction == abi.KVM_EXIT_IO_OUT)
        return
    with machine.lock:
        if _string_io(machine, buf, direction, size, port, count, off):
            return
        if direction == abi.KVM_EXIT_IO_OUT:
            write = machine.ports.write
            for i in range(off, off + count * size, size):
                write(port, size, int.from_bytes(buf[i : i + size], "little"))
        else:
            read = machine.ports.read
            for i in range(off, off + count * size, size):
                buf[i : i + size] = read(port, size).to_bytes(size, "little")


def _string_io(
    machine: Machine, buf: Buffer, direction: int, size: int, port: int, count: int, off: int
) -> bool:
    """REP INS/OUTS to a device with `read_string(offset, size, count) -> bytes` /
    `write_string(offset, size, data)` (the IDE data port): one call for the whole string,
    same answers as item by item. Not while a tracer shadows the bus's methods (it must
    see every access) and not for ranges the device does not decode whole."""
    ports = machine.ports
    if "read" in vars(ports) or "write" in vars(ports):
        return False
    route = ports.lookup(port)
    if route is None or route.passthrough or port + size > route.end:
        return False
    name = "write_string" if direction == abi.KVM_EXIT_IO_OUT else "read_string"
    fn = getattr(route.device, name, None)
    if fn is None:
        return False
    n = count * size
    if direction == abi.KVM_EXIT_IO_OUT:
        fn(port - route.base, size, bytes(buf[off : off + n]))
    else:
        buf[off : off + n] = fn(port - route.base, size, count)
    return True


def dispatch_mmio(machine: Machine, buf: Buffer, apic: VcpuApic | None = None) -> None:
    """A KVM_EXIT_MMIO: an access to guest-physical memory no writable slot backs. The
    vCPU's own xAPIC window (`apic`, wherever IA32_APIC_BASE put it) comes first."""
    addr, data, length, is_write = _MMIO.unpack_from(buf, _EXIT_OFF)
    length = min(length, 8)
    if length == 0:
        return
    if apic is not None:
        offset = apic.window(addr)
        if offset is not None:
            with machine.lock:
                if is_write:
                    apic.lapic.write(offset, length, int.from_bytes(data[:length], "little"))
                else:
                    value = apic.lapic.read(offset, length) & ((1 << (8 * length)) - 1)
                    off = _EXIT_OFF + 8
                    buf[off : off + length] = value.to_bytes(length, "little")
            return
    region = machine.memory.find(addr)
    if region is not None and region.readonly:
        return  # a write to ROM (a KVM_MEM_READONLY slot): dropped, as by the flash chip
    with machine.lock:
        if is_write:
            if length in (1, 2, 4, 8):
                machine.mmio.write(addr, length, int.from_bytes(data[:length], "little"))
            else:
                machine.space.write_bytes(addr, data[:length])
        else:
            if length in (1, 2, 4, 8):
                out = machine.mmio.read(addr, length).to_bytes(length, "little")
            else:
                out = machine.space.read_bytes(addr, length)
            off = _EXIT_OFF + 8
            buf[off : off + length] = out


def ensure_kick_signal() -> None:
    """Install a no-op KICK_SIGNAL handler (main thread only) so kicks interrupt KVM_RUN
    instead of killing the process."""
    current = signal.getsignal(KICK_SIGNAL)
    if current in (signal.SIG_DFL, None):
        if threading.current_thread() is not threading.main_thread():
            raise KvmError("the KVM run must be started from the main thread (signal set-up)")
        # Python installs handlers without SA_RESTART, so the signal interrupts KVM_RUN.
        signal.signal(KICK_SIGNAL, lambda signum, frame: None)


class Vcpu:
    """One vCPU of a `Vm`, running `machine`'s devices."""

    _ring: CoalescedRing | None = None  # coalesced write ring, when zones are registered

    # Pausing (QMP stop): the loop parks before its next entry while this is set.
    paused = False

    def __init__(
        self,
        kvm: Kvm,
        vm_fd: int,
        index: int,
        machine: Machine,
        irq: InterruptController | None,
        end: Callable[[RunEnd], None],
    ) -> None:
        self.index = index
        self.machine = machine
        self.irq = irq
        # With a local APIC model the loop also handles NMI, INIT/SIPI, MSRs and the window.
        self.apic = irq if isinstance(irq, VcpuApic) else None
        self._cr8 = 0  # the TPR class last given to KVM (run.cr8)
        self._end = end
        try:
            self.fd = ioctl(vm_fd, abi.KVM_CREATE_VCPU, index)
        except OSError as e:
            raise KvmError(f"KVM_CREATE_VCPU {index} failed: {e.strerror}") from None
        self._map = mmap.mmap(
            self.fd, kvm.vcpu_mmap_size(), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
        )
        self.run_struct = abi.kvm_run.from_buffer(self._map)
        # Write-only sinks the machine names (`coalesced_ports`) stop exiting: vCPU 0
        # registers them for the VM, every vCPU drains the shared ring (kvm/coalesced.py).
        sinks: list[tuple[int, int]] = list(getattr(machine, "coalesced_ports", []))
        mapped = len(self._map) >= (abi.KVM_COALESCED_MMIO_PAGE_OFFSET + 1) * mmap.PAGESIZE
        if sinks and mapped and (index != 0 or register_zones(kvm, vm_fd, sinks)):
            self._ring = CoalescedRing(self._map)
        self._setup_cpuid(kvm)
        self._reset_regs = self.get_regs()
        self._reset_sregs = self.get_sregs()
        self._kvm_apic_en = bool(self._reset_sregs.apic_base & _APIC_BASE_EN)
        self._cond = threading.Condition(threading.Lock())
        self._thread_ident: int | None = None
        self.stop = threading.Event()
        # `parked` says it is not in guest mode (parked, or an AP waiting for its SIPI).
        self.parked = threading.Event()
        self.exits = 0
        self.injected = 0

    # -- state -------------------------------------------------------------------------------
    def _setup_cpuid(self, kvm: Kvm) -> None:
        buf = cpuid.vcpu_cpuid(kvm.supported_cpuid(), self.index, self.apic is not None)
        try:
            ioctl(self.fd, abi.KVM_SET_CPUID2, buf)
        except OSError as e2:
            raise KvmError(f"KVM_SET_CPUID2 failed: {e2.strerror}") from None

    def get_regs(self) -> abi.kvm_regs:
        regs = abi.kvm_regs()
        ioctl(self.fd, abi.KVM_GET_REGS, regs)
        return regs

    def set_regs(self, regs: abi.kvm_regs) -> None:
        ioctl(self.fd, abi.KVM_SET_REGS, regs)

    def get_sregs(self) -> abi.kvm_sregs:
        sregs = abi.kvm_sregs()
        ioctl(self.fd, abi.KVM_GET_SREGS, sregs)
        return sregs

    def set_sregs(self, sregs: abi.kvm_sregs) -> None:
        ioctl(self.fd, abi.KVM_SET_SREGS, sregs)

    def reset(self) -> None:
        """Back to the architectural reset state captured at creation (CS:IP F000:FFF0)."""
        self.set_regs(self._reset_regs)
        self.set_sregs(self._reset_sregs)
        self._kvm_apic_en = bool(self._reset_sregs.apic_base & _APIC_BASE_EN)
        self.sync_apic_enable()

    def sync_apic_enable(self) -> None:
        """CPUID.01H:EDX[9] reads IA32_APIC_BASE.EN (SDM vol. 3, 10.4.3). KVM computes that
        bit from its own copy of the MSR (kvm_update_cpuid_runtime), which never sees the
        guest's writes (the MSR filter sends them to our LAPIC model), so our LAPIC's EN is
        copied into it through KVM_SET_SREGS whenever it changes (KVM_SET_CPUID2 may not
        change CPUID once the vCPU has run). Call on the vCPU's own thread."""
        if self.apic is None:
            return
        en = self.apic.lapic.hw_enabled
        if en == self._kvm_apic_en:
            return
        sregs = self.get_sregs()
        sregs.apic_base = (sregs.apic_base & ~_APIC_BASE_EN) | (_APIC_BASE_EN if en else 0)
        try:
            self.set_sregs(sregs)
        except OSError as e:
            logger.warning("vCPU %d: KVM refused APIC base %#x: %s", self.index, sregs.apic_base, e)
            return
        self._kvm_apic_en = en

    def dump_registers(self) -> str:
        """The registers in QEMU's `info registers` layout, for error reports."""
        try:
            return regdump.format_registers(self.get_regs(), self.get_sregs())
        except OSError as e:
            return f"(registers unavailable: {e.strerror})"

    # -- waking ------------------------------------------------------------------------------
    def kick(self) -> None:
        """Make the vCPU look at its interrupt controller and stop flag soon (any thread)."""
        with self._cond:
            self._cond.notify_all()
        ident = self._thread_ident
        if ident is None or ident == threading.get_ident():
            return  # not running, or the vCPU itself: it checks before its next entry
        self.run_struct.immediate_exit = 1
        with contextlib.suppress(ProcessLookupError, OSError):  # the thread already ended
            signal.pthread_kill(ident, KICK_SIGNAL)

    def _on_intr(self, level: bool) -> None:
        if level:
            self.kick()

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        """Thread body: run until `stop` is set or the guest ends the run."""
        self._thread_ident = threading.get_ident()
        if self.irq is not None:
            self.irq.intr.connect(self._on_intr)
        if self.apic is not None:
            self.apic.lapic.event_hook = self.kick
        try:
            self._loop()
        except Exception as e:
            logger.exception("vCPU %d loop failed", self.index)
            self._end(RunEnd("error", 1, f"vCPU {self.index}: internal error: {e!r}"))
        finally:
            if self.apic is not None:
                self.apic.lapic.event_hook = None
            if self.irq is not None:
                self.irq.intr.disconnect(self._on_intr)
            self._thread_ident = None

    def _fail(self, what: str) -> None:
        msg = f"vCPU {self.index}: {what}\n{self.dump_registers()}"
        self._end(RunEnd("error", 1, msg))

    def _loop(self) -> None:
        run = self.run_struct
        buf = self._map
        fd = self.fd
        is_stopped = self.stop.is_set
        irq = self.irq
        apic = self.apic
        lapic = apic.lapic if apic is not None else None
        intr = irq.intr if irq is not None else None
        machine = self.machine
        single_io = io_one  # looked up once: the module's function, as tests may spy on it
        kvm_run, kvm_run_nr = _kvm_run_call, abi.KVM_RUN
        # kvm_run read through typed views at fixed offsets: one index each instead of a
        # ctypes field (or struct unpack) per exit. `views[size]` holds an IN/OUT's datum.
        mv8 = memoryview(buf)
        mv16, mv32, mv64 = mv8.cast("H"), mv8.cast("I"), mv8.cast("Q")
        views = (None, mv8, mv16, None, mv32)
        exit_io = abi.KVM_EXIT_IO
        out = abi.KVM_EXIT_IO_OUT
        ring = self._ring
        try:
            while not is_stopped():
                if self.paused and not self._park():
                    return
                # Before entry: the interrupt controller's work, skipped when nothing waits (a
                # line rising later kicks the vCPU, so this check loses no wake-up).
                if apic is not None and lapic is not None:
                    if (
                        lapic.intr.level
                        or lapic.waiting_for_sipi
                        or mv8[_REQ_WINDOW]
                        or mv64[_CR8_Q] != self._cr8
                        or lapic.tpr >> 4 != self._cr8
                    ) and not self._apic_events(run, apic):
                        return
                elif irq is not None and intr is not None and (intr.level or mv8[_REQ_WINDOW]):
                    self._inject(run, irq)
                if kvm_run(fd, kvm_run_nr, None) < 0:
                    err = ctypes.get_errno()
                    if err in (errno.EINTR, errno.EAGAIN):
                        run.immediate_exit = 0
                        continue
                    self._fail(f"KVM_RUN failed: {os.strerror(err)}")
                    return
                self.exits += 1
                if ring is not None and ring.pending():
                    # Writes the guest made before this exit come first (kvm/coalesced.py).
                    with machine.lock:
                        ring.drain(machine)
                reason = mv32[_REASON_I]
                if reason == exit_io:
                    # One IN or OUT of 1, 2 or 4 bytes at an aligned data offset (KVM puts the
                    # data on the page after kvm_run): `io_one` on the loop's typed views.
                    # Anything else (string or REP I/O) goes through `dispatch_io`.
                    size = mv8[_IO_SIZE]
                    off = mv64[_IO_DATA_OFFSET_Q]
                    view = views[size] if size < 5 else None
                    if view is None or mv32[_IO_COUNT_I] != 1 or off % size:
                        dispatch_io(machine, buf)
                        continue
                    single_io(
                        machine,
                        view,
                        off // size,
                        mv16[_IO_PORT_H],
                        size,
                        mv8[_IO_DIRECTION] == out,
                    )
                elif reason == abi.KVM_EXIT_MMIO:
                    dispatch_mmio(machine, buf, self.apic)
                elif reason == abi.KVM_EXIT_HLT:
                    self._halt(run, irq)
                elif (
                    reason == abi.KVM_EXIT_IRQ_WINDOW_OPEN
                    or reason == abi.KVM_EXIT_INTR
                    or reason == KVM_EXIT_SET_TPR
                ):
                    # The injection check at the top of the loop does the work (and takes a
                    # lowered CR8 into the LAPIC's TPR: KVM exits when MOV to CR8 lowers it).
                    pass
                elif reason == abi.KVM_EXIT_X86_RDMSR or reason == abi.KVM_EXIT_X86_WRMSR:
                    if self.apic is None:
                        run.exit.msr.error = 1  # no APIC model: #GP, as KVM does for them
                    else:
                        with machine.lock:
                            self.apic.handle_msr(run, reason == abi.KVM_EXIT_X86_WRMSR)
                        if reason == abi.KVM_EXIT_X86_WRMSR:
                            self.sync_apic_enable()
                elif reason == abi.KVM_EXIT_SHUTDOWN:
                    msg = f"vCPU {self.index}: triple fault (shutdown)\n{self.dump_registers()}"
                    self._end(RunEnd("triple-fault", 0, msg))
                    return
                elif reason == abi.KVM_EXIT_SYSTEM_EVENT:
                    kind = run.exit.system_event.type
                    if kind == abi.KVM_SYSTEM_EVENT_RESET:
                        self._end(RunEnd("reset", 0, "system reset event"))
                    elif kind == abi.KVM_SYSTEM_EVENT_SHUTDOWN:
                        self._end(RunEnd("poweroff", 0, "system shutdown event"))
                    else:
                        self._fail(f"system event {kind}")
                    return
                elif reason == abi.KVM_EXIT_INTERNAL_ERROR:
                    self._fail(self._describe_internal(run))
                    return
                elif reason == abi.KVM_EXIT_FAIL_ENTRY:
                    code = run.exit.fail_entry.hardware_entry_failure_reason
                    self._fail(f"KVM entry failed, hardware error 0x{code:x}")
                    return
                else:
                    name = abi.EXIT_NAMES.get(reason, "?")
                    self._fail(f"unexpected KVM exit {reason} ({name})")
                    return
        finally:
            if ring is not None and ring.pending():
                with machine.lock:
                    ring.drain(machine)  # the run ends: nothing the guest wrote is lost
            # Let `close` unmap the page: no view may outlive the loop.
            for view in (mv16, mv32, mv64, mv8):
                view.release()

    def _inject(self, run: abi.kvm_run, irq: InterruptController) -> None:
        if irq.intr.level:
            if run.ready_for_interrupt_injection and run.if_flag:
                with self.machine.lock:
                    vector = irq.acknowledge()
                    still = irq.intr.level
                ioctl(self.fd, abi.KVM_INTERRUPT, abi.kvm_interrupt(vector & 0xFF))
                self.injected += 1
                # Another request behind this one: exit as soon as the guest can take it.
                run.request_interrupt_window = 1 if still else 0
            else:
                run.request_interrupt_window = 1
        elif run.request_interrupt_window:
            run.request_interrupt_window = 0

    def _apic_events(self, run: abi.kvm_run, apic: VcpuApic) -> bool:
        """Before entry with a LAPIC: INIT, SIPI, NMI, then one maskable vector when the vCPU
        can take it (ack moves IRR to ISR); keeps CR8 and the TPR in step. False: stop."""
        lapic = apic.lapic
        cr8 = run.cr8
        if cr8 != self._cr8:  # the guest wrote CR8 (MOV to CR8 does not exit)
            with self.machine.lock:
                lapic.cr8 = cr8
        if lapic.intr.level or lapic.waiting_for_sipi:
            with self.machine.lock:
                if lapic.take_init():
                    lapic.init_reset()
                    self.reset()
            if lapic.waiting_for_sipi and not self._wait_for_sipi(apic):
                return False
            with self.machine.lock:
                nmi = lapic.take_nmi()
                if lapic.pending_smi:
                    lapic.take_smi()  # no SMM here: dropped, rate-limited note
                    lapic.log.warning(f"{lapic.name}:smi", "%s: SMI dropped", lapic.name)
                vector = None
                if apic.maskable_pending():
                    if run.ready_for_interrupt_injection and run.if_flag:
                        vector = apic.acknowledge()
                    run.request_interrupt_window = 1  # more behind it, or not ready yet
                elif run.request_interrupt_window:
                    run.request_interrupt_window = 0
            if nmi:
                ioctl(self.fd, abi.KVM_NMI)
            if vector is not None:
                ioctl(self.fd, abi.KVM_INTERRUPT, abi.kvm_interrupt(vector & 0xFF))
                self.injected += 1
                if not apic.maskable_pending():
                    run.request_interrupt_window = 0
        elif run.request_interrupt_window:
            run.request_interrupt_window = 0
        self._cr8 = run.cr8 = lapic.tpr >> 4
        return True

    def _park(self) -> bool:
        """Stay out of guest mode while paused; False when the run ends meanwhile."""
        with self._cond:
            self.parked.set()
            try:
                while self.paused and not self.stop.is_set():
                    self._cond.wait(0.5)  # bounded: a missed notify delays, never hangs
            finally:
                self.parked.clear()
        return not self.stop.is_set()

    @property
    def is_running(self) -> bool:
        """Its thread is in `run` (guest mode or about to be)."""
        return self._thread_ident is not None

    def pause(self) -> None:
        """Ask the vCPU to leave guest mode and park (any thread); see `parked`."""
        self.paused = True
        self.kick()

    def resume(self) -> None:
        with self._cond:
            self.paused = False
            self._cond.notify_all()

    def _wait_for_sipi(self, apic: VcpuApic) -> bool:
        """An AP in wait-for-SIPI: park the thread until a SIPI arrives (an INIT meanwhile
        is absorbed), then start in real mode at CS = vector << 8, IP = 0 (SDM 8.4.4.1)."""
        lapic = apic.lapic
        while True:
            with self._cond:
                self.parked.set()  # not in guest mode: pausing need not wait for it
                try:
                    while lapic.sipi_vector is None and not lapic.pending_init:
                        if self.stop.is_set():
                            return False
                        self._cond.wait(0.5)  # bounded: a missed notify delays, never hangs
                finally:
                    self.parked.clear()
            with self.machine.lock:
                if lapic.take_init():
                    lapic.init_reset()
                vector = lapic.take_sipi()
            if vector is not None:
                break
        self.reset()
        regs, sregs = self.get_regs(), self.get_sregs()
        sregs.cs.selector = vector << 8
        sregs.cs.base = vector << 12
        regs.rip = 0
        self.set_sregs(sregs)
        self.set_regs(regs)
        return True

    def _halt(self, run: abi.kvm_run, irq: InterruptController | None) -> None:
        """HLT: sleep until an interrupt can wake the CPU (INTR high and IF set) or the run
        ends. With IF clear only NMI/INIT/SIPI/reset wake a halted CPU, so it sleeps on."""
        if_set = bool(run.if_flag)
        apic = self.apic
        with self._cond:
            while not self.stop.is_set() and not self.paused:
                if apic is not None:
                    if apic.wakes_from_halt(if_set):
                        break
                elif if_set and irq is not None and irq.intr.level:
                    break
                self._cond.wait(0.5)  # bounded: a missed notify delays, never hangs

    def _describe_internal(self, run: abi.kvm_run) -> str:
        internal = run.exit.internal
        sub = internal.suberror
        names = {
            abi.KVM_INTERNAL_ERROR_EMULATION: "instruction emulation failed",
            abi.KVM_INTERNAL_ERROR_SIMUL_EX: "exception while delivering an exception",
            abi.KVM_INTERNAL_ERROR_DELIVERY_EV: "exit while delivering an event",
            abi.KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: "unexpected exit reason",
        }
        text = f"KVM internal error {sub}: {names.get(sub, 'unknown')}"
        if sub == abi.KVM_INTERNAL_ERROR_EMULATION:
            em = run.exit.emulation_failure
            if em.flags & abi.KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES:
                n = min(em.insn_size, 15)
                text += f"; instruction bytes: {bytes(em.insn_bytes[:n]).hex(' ')}"
        else:
            n = min(internal.ndata, 16)
            if n:
                text += "; data: " + " ".join(f"0x{internal.data[i]:x}" for i in range(n))
        return text

    def close(self) -> None:
        if self._ring is not None:
            self._ring.release()
            self._ring = None
        del self.run_struct
        self._map.close()
        os.close(self.fd)
