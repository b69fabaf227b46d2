"""A local APIC model as a vCPU's interrupt controller under KVM (userspace irqchip).

KVM runs without its in-kernel APIC here, so everything the CPU side of an APIC does is done
by the vCPU loop with this adapter:

* `VcpuApic` is the `InterruptController` of one vCPU: `intr` is the LAPIC's line (high for a
  deliverable vector, the PIC through LINT0 ExtINT, NMI, INIT or SIPI) and `acknowledge()`
  is the INTA cycle: the APIC's own IRR first, then the PIC's vector for ExtINT (QEMU's
  order). The PIC-only path of a guest that never touches the APIC is that ExtINT path: the
  BSP's LINT0 powers up as ExtINT.
* MSRs: IA32_APIC_BASE (0x1B) and IA32_TSC_DEADLINE (0x6E0) are denied by an MSR filter so
  KVM exits to us (KVM_EXIT_X86_RDMSR/WRMSR, reason FILTER). The x2APIC range 0x800-0x8FF
  cannot be filtered (KVM ignores filters there), and without an in-kernel APIC KVM would
  raise #GP for it: reason INVAL (and UNKNOWN) turns every access KVM would fail into an
  exit, and the model answers (None/False, i.e. #GP, for MSRs that are not the APIC's, as
  KVM would). `error = 1` in the exit makes KVM inject #GP.
* The TSC-deadline timer compares guest TSC values: the guest TSC rate (KVM_GET_TSC_KHZ)
  and one (TSC, clock) sample map them onto the machine clock.

Lock order: `machine.lock` is the only device lock. A vCPU takes it around each exit it
dispatches and around injection bookkeeping here, and never holds it across KVM_RUN or while
parked; the timer thread takes it around timer callbacks. Below it, and only ever taken in
this order: machine.lock -> a vCPU's condition (`Vcpu.kick`, called when a LAPIC's `intr`
rises or its `event_hook` fires, e.g. an IPI sent by another vCPU) and machine.lock -> the
clock's queue lock -> HostClock's condition (arming timers). A vCPU's condition is never
held while taking machine.lock (HLT and wait-for-SIPI release it first), so no cycle exists.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Protocol

from southbridge.devices.lapic import (
    MSR_APIC_BASE,
    MSR_TSC_DEADLINE,
    LocalApic,
)
from southbridge.kvm import abi
from southbridge.kvm.system import Kvm, KvmError, ioctl

logger = logging.getLogger("southbridge.kvm")

MSR_IA32_TSC = 0x10

# MSRs the model owns and KVM would otherwise handle itself (one filter range each).
FILTERED_MSRS = (MSR_APIC_BASE, MSR_TSC_DEADLINE)


def enable_apic_msr_exits(kvm: Kvm, vm_fd: int) -> None:
    """Make RDMSR/WRMSR of the APIC MSRs exit to userspace (see the module docstring)."""
    if not kvm.check_extension(abi.KVM_CAP_X86_USER_SPACE_MSR) or not kvm.check_extension(
        abi.KVM_CAP_X86_MSR_FILTER
    ):
        raise KvmError("KVM lacks user-space MSR exits (needed to run the local APIC)")
    cap = abi.kvm_enable_cap()
    cap.cap = abi.KVM_CAP_X86_USER_SPACE_MSR
    cap.args[0] = (
        abi.KVM_MSR_EXIT_REASON_FILTER
        | abi.KVM_MSR_EXIT_REASON_UNKNOWN
        | abi.KVM_MSR_EXIT_REASON_INVAL
    )
    flt = abi.kvm_msr_filter()
    deny = (ctypes.c_uint8 * 1)(0)  # bit clear = denied = exit to userspace
    for i, msr in enumerate(FILTERED_MSRS):
        r = flt.ranges[i]
        r.flags = abi.KVM_MSR_FILTER_READ | abi.KVM_MSR_FILTER_WRITE
        r.nmsrs = 1
        r.base = msr
        r.bitmap = ctypes.addressof(deny)
    try:
        ioctl(vm_fd, abi.KVM_ENABLE_CAP, cap)
        ioctl(vm_fd, abi.KVM_X86_SET_MSR_FILTER, flt)  # KVM copies the bitmaps
    except OSError as e:
        raise KvmError(f"enabling user-space MSR exits failed: {e.strerror}") from None


def read_msr(vcpu_fd: int, index: int) -> int:
    """KVM_GET_MSRS of one MSR."""
    buf = abi.msrs_type(1)()
    buf.nmsrs = 1
    buf.entries[0].index = index
    if ioctl(vcpu_fd, abi.KVM_GET_MSRS, buf) != 1:
        raise KvmError(f"KVM_GET_MSRS 0x{index:x} failed")
    return int(buf.entries[0].data)


def sync_tsc(lapic: LocalApic, vcpu_fd: int) -> None:
    """Tell the LAPIC the guest TSC rate and the TSC value at clock time 0, so TSC-deadline
    values become clock deadlines. Sampled once: both count at constant rates."""
    try:
        khz = ioctl(vcpu_fd, abi.KVM_GET_TSC_KHZ)
    except OSError:
        khz = 0
    if khz <= 0:
        return  # no TSC rate known: the model keeps its 1 GHz default
    hz = khz * 1000
    before = lapic.clock.now()
    tsc = read_msr(vcpu_fd, MSR_IA32_TSC)
    after = lapic.clock.now()
    lapic.tsc_hz = hz
    lapic.tsc_offset = tsc - ((before + after) // 2) * hz // 1_000_000_000


class Acknowledger(Protocol):
    """The PIC's CPU side (`PicPair.acknowledge`): the INTA cycle that returns a vector."""

    def acknowledge(self) -> int: ...


class VcpuApic:
    """One vCPU's local APIC seen from its run loop (an `InterruptController`)."""

    def __init__(self, lapic: LocalApic, pic: Acknowledger | None = None) -> None:
        self.lapic = lapic
        self.pic = pic
        self.intr = lapic.intr

    def acknowledge(self) -> int:
        """INTA (call under machine.lock): the APIC's IRR first, then the PIC (ExtINT)."""
        lapic = self.lapic
        if self.pic is not None and lapic.highest_pending() is None and lapic.extint_requested():
            return self.pic.acknowledge() & 0xFF
        return lapic.ack()

    def maskable_pending(self) -> bool:
        return self.lapic.interrupt_pending()

    def wakes_from_halt(self, if_set: bool) -> bool:
        """Whether a HLT ends: a maskable interrupt with IF set, or NMI/SMI/INIT/SIPI."""
        lapic = self.lapic
        return (
            lapic.pending_nmi
            or lapic.pending_init
            or lapic.pending_smi
            or lapic.sipi_vector is not None
            or (if_set and lapic.interrupt_pending())
        )

    def handle_msr(self, run: abi.kvm_run, write: bool) -> None:
        """A KVM_EXIT_X86_RDMSR/WRMSR (call under machine.lock)."""
        m = run.exit.msr
        if write:
            ok = self.lapic.write_msr(m.index, m.data)
        else:
            value = self.lapic.read_msr(m.index)
            ok = value is not None
            if value is not None:
                m.data = value
        if not ok:
            self.lapic.log.debug(
                f"{self.lapic.name}:msr",
                "%s: %s of MSR 0x%x raises #GP",
                self.lapic.name,
                "WRMSR" if write else "RDMSR",
                m.index,
            )
        m.error = 0 if ok else 1

    def window(self, addr: int) -> int | None:
        """The offset of `addr` in this vCPU's xAPIC window, or None when not decoded."""
        lapic = self.lapic
        if not lapic.mmio_decoded:
            return None
        off = addr - lapic.base_address
        return off if 0 <= off < 0x1000 else None
