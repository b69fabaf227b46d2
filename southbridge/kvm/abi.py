"""The KVM ABI as ctypes: ioctl numbers, constants and structures from linux/kvm.h (x86-64).

Only what southbridge uses. `tests/test_kvm_abi.py` compiles a C program against the system's
linux/kvm.h and checks every size, offset and ioctl number here against it.
"""

from __future__ import annotations

import ctypes

c_u8 = ctypes.c_uint8
c_u16 = ctypes.c_uint16
c_u32 = ctypes.c_uint32
c_u64 = ctypes.c_uint64

KVMIO = 0xAE
API_VERSION = 12

# asm-generic/ioctl.h
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


def _io(nr: int) -> int:
    return _ioc(_IOC_NONE, nr, 0)


def _ior(nr: int, t: type[ctypes._CData] | int) -> int:
    return _ioc(_IOC_READ, nr, t if isinstance(t, int) else ctypes.sizeof(t))


def _iow(nr: int, t: type[ctypes._CData] | int) -> int:
    return _ioc(_IOC_WRITE, nr, t if isinstance(t, int) else ctypes.sizeof(t))


def _iowr(nr: int, t: type[ctypes._CData] | int) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, nr, t if isinstance(t, int) else ctypes.sizeof(t))


# -- structures ---------------------------------------------------------------------------
class kvm_regs(ctypes.Structure):
    _fields_ = [
        (n, c_u64)
        for n in (
            "rax",
            "rbx",
            "rcx",
            "rdx",
            "rsi",
            "rdi",
            "rsp",
            "rbp",
            "r8",
            "r9",
            "r10",
            "r11",
            "r12",
            "r13",
            "r14",
            "r15",
            "rip",
            "rflags",
        )
    ]


class kvm_segment(ctypes.Structure):
    _fields_ = [
        ("base", c_u64),
        ("limit", c_u32),
        ("selector", c_u16),
        ("type", c_u8),
        ("present", c_u8),
        ("dpl", c_u8),
        ("db", c_u8),
        ("s", c_u8),
        ("l", c_u8),
        ("g", c_u8),
        ("avl", c_u8),
        ("unusable", c_u8),
        ("padding", c_u8),
    ]


class kvm_dtable(ctypes.Structure):
    _fields_ = [("base", c_u64), ("limit", c_u16), ("padding", c_u16 * 3)]


SEGMENT_NAMES = ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")


class kvm_sregs(ctypes.Structure):
    _fields_ = [
        *[(n, kvm_segment) for n in SEGMENT_NAMES],
        ("gdt", kvm_dtable),
        ("idt", kvm_dtable),
        ("cr0", c_u64),
        ("cr2", c_u64),
        ("cr3", c_u64),
        ("cr4", c_u64),
        ("cr8", c_u64),
        ("efer", c_u64),
        ("apic_base", c_u64),
        ("interrupt_bitmap", c_u64 * 4),
    ]


class kvm_userspace_memory_region(ctypes.Structure):
    _fields_ = [
        ("slot", c_u32),
        ("flags", c_u32),
        ("guest_phys_addr", c_u64),
        ("memory_size", c_u64),
        ("userspace_addr", c_u64),
    ]


class kvm_interrupt(ctypes.Structure):
    _fields_ = [("irq", c_u32)]


class kvm_cpuid_entry2(ctypes.Structure):
    _fields_ = [
        ("function", c_u32),
        ("index", c_u32),
        ("flags", c_u32),
        ("eax", c_u32),
        ("ebx", c_u32),
        ("ecx", c_u32),
        ("edx", c_u32),
        ("padding", c_u32 * 3),
    ]


class kvm_cpuid2(ctypes.Structure):
    """Header only; the entries follow it (see `cpuid2_type`)."""

    _fields_ = [("nent", c_u32), ("padding", c_u32)]


def cpuid2_type(nent: int) -> type[ctypes.Structure]:
    """A kvm_cpuid2 with room for `nent` entries."""

    class _Cpuid2(ctypes.Structure):
        _fields_ = [("nent", c_u32), ("padding", c_u32), ("entries", kvm_cpuid_entry2 * nent)]

    return _Cpuid2


class kvm_msr_entry(ctypes.Structure):
    _fields_ = [("index", c_u32), ("reserved", c_u32), ("data", c_u64)]


class kvm_msrs(ctypes.Structure):
    """Header only; the entries follow it (see `msrs_type`)."""

    _fields_ = [("nmsrs", c_u32), ("pad", c_u32)]


def msrs_type(n: int) -> type[ctypes.Structure]:
    class _Msrs(ctypes.Structure):
        _fields_ = [("nmsrs", c_u32), ("pad", c_u32), ("entries", kvm_msr_entry * n)]

    return _Msrs


# vCPU state saved opaquely in snapshots (kvm_fpu, kvm_xsave, kvm_xcrs, kvm_vcpu_events):
# KVM fills and reads them whole, so fixed-size byte blocks of linux/kvm.h's sizes do.
class kvm_fpu(ctypes.Structure):
    _fields_ = [("raw", c_u8 * 416)]


class kvm_xsave(ctypes.Structure):
    _fields_ = [("raw", c_u8 * 4096)]


class kvm_xcrs(ctypes.Structure):
    _fields_ = [("raw", c_u8 * 392)]


class kvm_vcpu_events(ctypes.Structure):
    _fields_ = [("raw", c_u8 * 64)]


class kvm_enable_cap(ctypes.Structure):
    _fields_ = [("cap", c_u32), ("flags", c_u32), ("args", c_u64 * 4), ("pad", c_u8 * 64)]


# kvm_run and the members of its exit union that we read.
class kvm_run_io(ctypes.Structure):
    _fields_ = [
        ("direction", c_u8),
        ("size", c_u8),
        ("port", c_u16),
        ("count", c_u32),
        ("data_offset", c_u64),
    ]


class kvm_run_mmio(ctypes.Structure):
    _fields_ = [("phys_addr", c_u64), ("data", c_u8 * 8), ("len", c_u32), ("is_write", c_u8)]


class kvm_run_fail_entry(ctypes.Structure):
    _fields_ = [("hardware_entry_failure_reason", c_u64), ("cpu", c_u32)]


class kvm_run_internal(ctypes.Structure):
    _fields_ = [("suberror", c_u32), ("ndata", c_u32), ("data", c_u64 * 16)]


class kvm_run_emulation_failure(ctypes.Structure):
    _fields_ = [
        ("suberror", c_u32),
        ("ndata", c_u32),
        ("flags", c_u64),
        ("insn_size", c_u8),
        ("insn_bytes", c_u8 * 15),
    ]


class kvm_run_system_event(ctypes.Structure):
    _fields_ = [("type", c_u32), ("ndata", c_u32), ("data", c_u64 * 16)]


class kvm_run_ex(ctypes.Structure):
    _fields_ = [("exception", c_u32), ("error_code", c_u32)]


class kvm_run_msr(ctypes.Structure):
    _fields_ = [
        ("error", c_u8),
        ("pad", c_u8 * 7),
        ("reason", c_u32),
        ("index", c_u32),
        ("data", c_u64),
    ]


class kvm_run_exit(ctypes.Union):
    _fields_ = [
        ("io", kvm_run_io),
        ("mmio", kvm_run_mmio),
        ("fail_entry", kvm_run_fail_entry),
        ("internal", kvm_run_internal),
        ("emulation_failure", kvm_run_emulation_failure),
        ("system_event", kvm_run_system_event),
        ("ex", kvm_run_ex),
        ("msr", kvm_run_msr),
        ("padding", ctypes.c_char * 256),
    ]


class kvm_run(ctypes.Structure):
    _fields_ = [
        ("request_interrupt_window", c_u8),
        ("immediate_exit", c_u8),
        ("padding1", c_u8 * 6),
        ("exit_reason", c_u32),
        ("ready_for_interrupt_injection", c_u8),
        ("if_flag", c_u8),
        ("flags", c_u16),
        ("cr8", c_u64),
        ("apic_base", c_u64),
        ("exit", kvm_run_exit),
        ("kvm_valid_regs", c_u64),
        ("kvm_dirty_regs", c_u64),
        ("s", ctypes.c_char * 2048),  # union of synced registers (KVM_CAP_SYNC_REGS): unused
    ]


class kvm_coalesced_mmio_zone(ctypes.Structure):
    """A guest range whose writes KVM queues in the ring instead of exiting (the union of
    `pad` and `pio` in kvm.h is one u32: 1 for a port range)."""

    _fields_ = [("addr", c_u64), ("size", c_u32), ("pio", c_u32)]


class kvm_coalesced_mmio(ctypes.Structure):
    """One queued write: address (a port for PIO), length, and up to 8 data bytes."""

    _fields_ = [("phys_addr", c_u64), ("len", c_u32), ("pio", c_u32), ("data", ctypes.c_uint8 * 8)]


class kvm_coalesced_mmio_ring(ctypes.Structure):
    """The ring's header; `kvm_coalesced_mmio` entries follow it to the end of the page.
    KVM advances `last`, userspace `first` (virt/kvm/coalesced_mmio.c)."""

    _fields_ = [("first", c_u32), ("last", c_u32)]


# The ring's page in a vCPU's mmap (arch/x86/include/uapi/asm/kvm.h) and its capacity
# (KVM_COALESCED_MMIO_MAX in kvm.h, one 4 KiB page).
KVM_COALESCED_MMIO_PAGE_OFFSET = 2
KVM_COALESCED_MMIO_MAX = (4096 - ctypes.sizeof(kvm_coalesced_mmio_ring)) // ctypes.sizeof(
    kvm_coalesced_mmio
)

# -- ioctls -------------------------------------------------------------------------------
# on /dev/kvm
KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_CHECK_EXTENSION = _io(0x03)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_GET_SUPPORTED_CPUID = _iowr(0x05, kvm_cpuid2)
# on a VM fd
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, kvm_userspace_memory_region)
KVM_SET_TSS_ADDR = _io(0x47)
KVM_SET_IDENTITY_MAP_ADDR = _iow(0x48, c_u64)
KVM_ENABLE_CAP = _iow(0xA3, kvm_enable_cap)
KVM_REGISTER_COALESCED_MMIO = _iow(0x67, kvm_coalesced_mmio_zone)
KVM_UNREGISTER_COALESCED_MMIO = _iow(0x68, kvm_coalesced_mmio_zone)
# on a vCPU fd
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, kvm_regs)
KVM_SET_REGS = _iow(0x82, kvm_regs)
KVM_GET_SREGS = _ior(0x83, kvm_sregs)
KVM_SET_SREGS = _iow(0x84, kvm_sregs)
KVM_INTERRUPT = _iow(0x86, kvm_interrupt)
KVM_GET_MSRS = _iowr(0x88, kvm_msrs)
KVM_SET_MSRS = _iow(0x89, kvm_msrs)
KVM_SET_CPUID2 = _iow(0x90, kvm_cpuid2)
KVM_NMI = _io(0x9A)
KVM_GET_FPU = _ior(0x8C, kvm_fpu)
KVM_SET_FPU = _iow(0x8D, kvm_fpu)
KVM_GET_VCPU_EVENTS = _ior(0x9F, kvm_vcpu_events)
KVM_SET_VCPU_EVENTS = _iow(0xA0, kvm_vcpu_events)
KVM_GET_XSAVE = _ior(0xA4, kvm_xsave)
KVM_SET_XSAVE = _iow(0xA5, kvm_xsave)
KVM_GET_XCRS = _ior(0xA6, kvm_xcrs)
KVM_SET_XCRS = _iow(0xA7, kvm_xcrs)

# -- constants ----------------------------------------------------------------------------
KVM_CAP_USER_MEMORY = 3
KVM_CAP_SET_TSS_ADDR = 4
KVM_CAP_EXT_CPUID = 7
KVM_CAP_NR_VCPUS = 9
KVM_CAP_COALESCED_MMIO = 15
KVM_CAP_SET_IDENTITY_MAP_ADDR = 37
KVM_CAP_INTERNAL_ERROR_DATA = 40
KVM_CAP_MAX_VCPUS = 66
KVM_CAP_READONLY_MEM = 81
KVM_CAP_COALESCED_PIO = 162
KVM_CAP_IMMEDIATE_EXIT = 136
KVM_CAP_X86_USER_SPACE_MSR = 188
KVM_CAP_X86_MSR_FILTER = 189

KVM_MEM_READONLY = 1 << 1

KVM_EXIT_UNKNOWN = 0
KVM_EXIT_EXCEPTION = 1
KVM_EXIT_IO = 2
KVM_EXIT_HYPERCALL = 3
KVM_EXIT_DEBUG = 4
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_IRQ_WINDOW_OPEN = 7
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_NMI = 16
KVM_EXIT_INTERNAL_ERROR = 17
KVM_EXIT_SYSTEM_EVENT = 24
KVM_EXIT_X86_RDMSR = 29
KVM_EXIT_X86_WRMSR = 30

EXIT_NAMES = {
    v: k[len("KVM_EXIT_") :]
    for k, v in dict(globals()).items()
    if k.startswith("KVM_EXIT_") and isinstance(v, int)
}

KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

KVM_INTERNAL_ERROR_EMULATION = 1
KVM_INTERNAL_ERROR_SIMUL_EX = 2
KVM_INTERNAL_ERROR_DELIVERY_EV = 3
KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4
KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES = 1

KVM_SYSTEM_EVENT_SHUTDOWN = 1
KVM_SYSTEM_EVENT_RESET = 2
KVM_SYSTEM_EVENT_CRASH = 3


# User-space MSR exits (KVM_CAP_X86_USER_SPACE_MSR) and MSR filtering (KVM_CAP_X86_MSR_FILTER).
KVM_MSR_EXIT_REASON_INVAL = 1 << 0
KVM_MSR_EXIT_REASON_UNKNOWN = 1 << 1
KVM_MSR_EXIT_REASON_FILTER = 1 << 2
KVM_MSR_FILTER_READ = 1 << 0
KVM_MSR_FILTER_WRITE = 1 << 1
KVM_MSR_FILTER_MAX_RANGES = 16


class kvm_msr_filter_range(ctypes.Structure):
    _fields_ = [
        ("flags", c_u32),
        ("nmsrs", c_u32),
        ("base", c_u32),
        ("bitmap", ctypes.c_void_p),
    ]


class kvm_msr_filter(ctypes.Structure):
    _fields_ = [
        ("flags", c_u32),
        ("ranges", kvm_msr_filter_range * KVM_MSR_FILTER_MAX_RANGES),
    ]


KVM_X86_SET_MSR_FILTER = _iow(0xC6, kvm_msr_filter)
KVM_GET_TSC_KHZ = _io(0xA3)
