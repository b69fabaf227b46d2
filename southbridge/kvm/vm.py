"""A KVM virtual machine: its fd and the memory slots that mirror `machine.memory`."""

from __future__ import annotations

import ctypes
import os

from southbridge.core.memory import GuestMemory, RamRegion
from southbridge.kvm import abi
from southbridge.kvm.system import Kvm, KvmError, ioctl

# Where KVM may put the real-mode TSS (3 pages) and the EPT identity map page on VMX: just
# below the BIOS flash window, where QEMU puts them, so no guest memory is hidden.
TSS_ADDR = 0xFEFFD000
IDENTITY_MAP_ADDR = 0xFEFFC000


def buffer_address(region: RamRegion) -> int:
    """Host virtual address of a region's mmap (held exported while the slot exists)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(region.buf))


class Vm:
    """One KVM VM. Never creates the in-kernel irqchip or PIT: every interrupt controller
    and timer is a userspace device, and interrupts are injected by the vCPU loops."""

    def __init__(self, kvm: Kvm) -> None:
        self.kvm = kvm
        try:
            self.fd = ioctl(kvm.fd, abi.KVM_CREATE_VM, 0)
        except OSError as e:
            raise KvmError(f"KVM_CREATE_VM failed: {e.strerror}") from None
        self.readonly_mem = bool(kvm.check_extension(abi.KVM_CAP_READONLY_MEM))
        try:
            ioctl(self.fd, abi.KVM_SET_TSS_ADDR, TSS_ADDR)
            if kvm.check_extension(abi.KVM_CAP_SET_IDENTITY_MAP_ADDR):
                ioctl(self.fd, abi.KVM_SET_IDENTITY_MAP_ADDR, ctypes.c_uint64(IDENTITY_MAP_ADDR))
        except OSError as e:
            self.close()
            raise KvmError(f"KVM VM set-up failed: {e.strerror}") from None
        self._slots: dict[int, tuple[RamRegion, int]] = {}  # id(region) -> (region, slot)
        self._free_slots: list[int] = []
        self._next_slot = 0

    # -- memory ------------------------------------------------------------------------------
    def _set_slot(self, slot: int, region: RamRegion | None, size: int, gpa: int) -> None:
        flags = 0
        addr = 0
        if region is not None:
            addr = buffer_address(region)
            if region.readonly and self.readonly_mem:
                flags |= abi.KVM_MEM_READONLY
        desc = abi.kvm_userspace_memory_region(slot, flags, gpa, size, addr)
        try:
            ioctl(self.fd, abi.KVM_SET_USER_MEMORY_REGION, desc)
        except OSError as e:
            name = region.name if region is not None else f"slot {slot}"
            raise KvmError(
                f"cannot map guest memory {name} at 0x{gpa:x}+0x{size:x}: {e.strerror}"
            ) from None

    def sync_memory(self, memory: GuestMemory) -> None:
        """Make the slots match `memory.regions`: removed regions are unmapped, new ones
        mapped. Call again after the machine changes its memory map (PAM, BIOS shadowing)."""
        live = {id(r): r for r in memory.regions}
        for key, (region, slot) in list(self._slots.items()):
            if key not in live:
                self._set_slot(slot, None, 0, region.gpa)
                del self._slots[key]
                self._free_slots.append(slot)
        for key, region in live.items():
            if key in self._slots:
                continue
            if self._free_slots:
                slot = self._free_slots.pop()
            else:
                slot = self._next_slot
                self._next_slot += 1
            self._set_slot(slot, region, region.size, region.gpa)
            self._slots[key] = (region, slot)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
