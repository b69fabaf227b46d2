"""The ctypes mirror of linux/kvm.h (southbridge.kvm.abi) against the C header itself: a C
program compiled here prints every size, offset and ioctl number we rely on."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from southbridge.kvm import abi
from tests import cheader

STRUCTS = [
    "kvm_regs",
    "kvm_sregs",
    "kvm_segment",
    "kvm_dtable",
    "kvm_userspace_memory_region",
    "kvm_interrupt",
    "kvm_cpuid_entry2",
    "kvm_cpuid2",
    "kvm_msr_entry",
    "kvm_msrs",
    "kvm_enable_cap",
    "kvm_fpu",
    "kvm_xsave",
    "kvm_xcrs",
    "kvm_vcpu_events",
    "kvm_run",
    "kvm_msr_filter_range",
    "kvm_msr_filter",
    "kvm_coalesced_mmio_zone",
    "kvm_coalesced_mmio",
    "kvm_coalesced_mmio_ring",
]
# (struct, C member path, Python (class, field path))
OFFSETS = [
    ("kvm_run", "request_interrupt_window", "request_interrupt_window"),
    ("kvm_run", "immediate_exit", "immediate_exit"),
    ("kvm_run", "exit_reason", "exit_reason"),
    ("kvm_run", "ready_for_interrupt_injection", "ready_for_interrupt_injection"),
    ("kvm_run", "if_flag", "if_flag"),
    ("kvm_run", "cr8", "cr8"),
    ("kvm_run", "io", "exit"),
    ("kvm_run", "kvm_valid_regs", "kvm_valid_regs"),
    ("kvm_run", "io.count", "exit.io.count"),
    ("kvm_run", "io.data_offset", "exit.io.data_offset"),
    ("kvm_run", "mmio.phys_addr", "exit.mmio.phys_addr"),
    ("kvm_run", "mmio.data", "exit.mmio.data"),
    ("kvm_run", "mmio.len", "exit.mmio.len"),
    ("kvm_run", "mmio.is_write", "exit.mmio.is_write"),
    ("kvm_run", "internal.ndata", "exit.internal.ndata"),
    ("kvm_run", "internal.data", "exit.internal.data"),
    ("kvm_run", "emulation_failure.flags", "exit.emulation_failure.flags"),
    ("kvm_run", "emulation_failure.insn_size", "exit.emulation_failure.insn_size"),
    ("kvm_run", "emulation_failure.insn_bytes", "exit.emulation_failure.insn_bytes"),
    ("kvm_run", "fail_entry.cpu", "exit.fail_entry.cpu"),
    ("kvm_run", "system_event.data", "exit.system_event.data"),
    ("kvm_run", "msr.index", "exit.msr.index"),
    ("kvm_run", "msr.data", "exit.msr.data"),
    ("kvm_sregs", "gdt", "gdt"),
    ("kvm_sregs", "cr0", "cr0"),
    ("kvm_sregs", "efer", "efer"),
    ("kvm_sregs", "interrupt_bitmap", "interrupt_bitmap"),
    ("kvm_segment", "unusable", "unusable"),
    ("kvm_cpuid_entry2", "eax", "eax"),
    ("kvm_coalesced_mmio_zone", "pio", "pio"),
    ("kvm_coalesced_mmio", "len", "len"),
    ("kvm_coalesced_mmio", "pio", "pio"),
    ("kvm_coalesced_mmio", "data", "data"),
    ("kvm_coalesced_mmio_ring", "last", "last"),
]
IOCTLS = [
    "KVM_GET_API_VERSION",
    "KVM_CREATE_VM",
    "KVM_CHECK_EXTENSION",
    "KVM_GET_VCPU_MMAP_SIZE",
    "KVM_GET_SUPPORTED_CPUID",
    "KVM_CREATE_VCPU",
    "KVM_SET_USER_MEMORY_REGION",
    "KVM_SET_TSS_ADDR",
    "KVM_SET_IDENTITY_MAP_ADDR",
    "KVM_ENABLE_CAP",
    "KVM_RUN",
    "KVM_GET_REGS",
    "KVM_SET_REGS",
    "KVM_GET_SREGS",
    "KVM_SET_SREGS",
    "KVM_INTERRUPT",
    "KVM_GET_MSRS",
    "KVM_SET_MSRS",
    "KVM_SET_CPUID2",
    "KVM_NMI",
    "KVM_GET_FPU",
    "KVM_SET_FPU",
    "KVM_GET_VCPU_EVENTS",
    "KVM_SET_VCPU_EVENTS",
    "KVM_GET_XSAVE",
    "KVM_SET_XSAVE",
    "KVM_GET_XCRS",
    "KVM_SET_XCRS",
    "KVM_X86_SET_MSR_FILTER",
    "KVM_GET_TSC_KHZ",
    "KVM_REGISTER_COALESCED_MMIO",
    "KVM_UNREGISTER_COALESCED_MMIO",
    "KVM_COALESCED_MMIO_PAGE_OFFSET",
]
CONSTANTS = [
    n
    for n in dir(abi)
    if n.startswith(
        ("KVM_EXIT_", "KVM_CAP_", "KVM_INTERNAL_", "KVM_SYSTEM_EVENT_", "KVM_MEM_", "KVM_MSR_")
    )
]


def _py_offset(cls: Any, path: str) -> int:
    off = 0
    for name in path.split("."):
        field = getattr(cls, name)
        off += field.offset
        cls = dict(cls._fields_)[name]
    return off


@pytest.fixture(scope="module")
def header_values(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    return cheader.header_values(
        tmp_path_factory.mktemp("abi"),
        "linux/kvm.h",
        STRUCTS,
        [(s, member) for s, member, _ in OFFSETS],
        IOCTLS + CONSTANTS,
    )


@pytest.mark.parametrize("name", STRUCTS)
def test_struct_sizes_match_kvm_h(header_values: dict[str, int], name: str) -> None:
    assert ctypes.sizeof(getattr(abi, name)) == header_values[f"sizeof.{name}"]


@pytest.mark.parametrize(("struct", "member", "pypath"), OFFSETS)
def test_member_offsets_match_kvm_h(
    header_values: dict[str, int], struct: str, member: str, pypath: str
) -> None:
    assert _py_offset(getattr(abi, struct), pypath) == header_values[f"offsetof.{struct}.{member}"]


@pytest.mark.parametrize("name", IOCTLS + CONSTANTS)
def test_ioctl_numbers_and_constants_match_kvm_h(header_values: dict[str, int], name: str) -> None:
    assert getattr(abi, name) == header_values[name]


def test_variable_length_buffers_put_entries_after_the_header() -> None:
    """kvm_cpuid2 and kvm_msrs are headers followed by a flexible array (kvm.h)."""
    cpuid = abi.cpuid2_type(3)
    assert cpuid.entries.offset == ctypes.sizeof(abi.kvm_cpuid2)
    assert ctypes.sizeof(cpuid) == 8 + 3 * ctypes.sizeof(abi.kvm_cpuid_entry2)
    msrs = abi.msrs_type(2)
    assert msrs.entries.offset == ctypes.sizeof(abi.kvm_msrs)


def test_exit_names_cover_the_exits_the_loop_handles() -> None:
    assert abi.EXIT_NAMES[abi.KVM_EXIT_IO] == "IO"
    assert abi.EXIT_NAMES[abi.KVM_EXIT_SHUTDOWN] == "SHUTDOWN"
