"""The CPUID a vCPU gets: KVM's supported leaves with what southbridge does not offer taken
out (the APIC bits without a LAPIC model, instructions this host's KVM cannot run, the KVM
paravirtual features) and the per-vCPU identity (initial APIC ID, x2APIC topology)."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

from southbridge.kvm import abi

# CPUID bits hidden from the guest (leaf, subleaf, register, mask): the local APIC and what
# hangs off it when a vCPU runs without a LAPIC model (`CPUID_APIC_MASKS`), and instructions
# this host's KVM fails on (CMPXCHG16B, INVPCID; see the package docstring).
CPUID_APIC_BITS: tuple[tuple[int, int | None, str, int], ...] = (
    (1, None, "edx", 1 << 9),  # APIC
    (1, None, "ecx", (1 << 21) | (1 << 24)),  # x2APIC, TSC-deadline
)
CPUID_MASKS: tuple[tuple[int, int | None, str, int], ...] = (
    *CPUID_APIC_BITS,
    (1, None, "ecx", 1 << 13),  # CX16
    (7, 0, "ebx", 1 << 10),  # INVPCID
)
# KVM paravirtual features offered to the guest: none. Without kvmclock, firmware and kernels
# time themselves with the platform timers we emulate (SeaBIOS calibrates the TSC against
# the PIT's channel 2), which is what southbridge is for; the KVM signature leaf stays.
KVM_PV_LEAF = 0x40000001
KVM_PV_ALLOWED = 0


def vcpu_cpuid(
    supported: Sequence[abi.kvm_cpuid_entry2], index: int, with_apic: bool
) -> ctypes.Structure:
    """The KVM_SET_CPUID2 buffer for vCPU `index` (the entries are changed in place)."""
    entries = list(supported)
    for e in entries:
        for leaf, sub, reg, mask in CPUID_MASKS:
            if e.function == leaf and (sub is None or e.index == sub):
                setattr(e, reg, getattr(e, reg) & ~mask)
        if with_apic:
            # Our LAPIC model: xAPIC, x2APIC and the TSC-deadline timer.
            for leaf, sub, reg, bits in CPUID_APIC_BITS:
                if e.function == leaf and (sub is None or e.index == sub):
                    setattr(e, reg, getattr(e, reg) | bits)
        if e.function == 1:
            # Initial APIC ID and logical processor count seen by this vCPU.
            e.ebx = (e.ebx & 0x0000FFFF) | (1 << 16) | ((index & 0xFF) << 24)
        elif e.function in (0xB, 0x1F):
            e.edx = index
        elif e.function == KVM_PV_LEAF:
            e.eax &= KVM_PV_ALLOWED
    buf = abi.cpuid2_type(len(entries))()
    buf.nent = len(entries)
    for i, e in enumerate(entries):
        buf.entries[i] = e
    return buf
