"""Coalesced port and MMIO writes (KVM_CAP_COALESCED_PIO / KVM_CAP_COALESCED_MMIO).

Writes to a registered zone do not exit: KVM appends them to a ring on the page
KVM_COALESCED_MMIO_PAGE_OFFSET of every vCPU's mmap (one ring per VM) and the guest runs on
(virt/kvm/coalesced_mmio.c). Only write-only sinks qualify, devices where a write has no
immediate guest-visible effect (debugcon, the POST code port). The run loop drains the ring
before it handles any exit, so every read of those devices, and every other device access,
sees the writes the guest made before it, in the order it made them; QEMU flushes the same
way after each KVM_RUN (kvm_flush_coalesced_mmio_buffer). A full ring makes KVM exit
normally instead, so nothing is lost.
"""

from __future__ import annotations

import logging
import mmap
import struct

from southbridge.kvm import abi
from southbridge.kvm.system import Kvm, ioctl
from southbridge.machine.base import Machine

logger = logging.getLogger("southbridge.kvm")

PAGE = 4096
_ENTRY = struct.Struct("<QII8s")  # phys_addr, len, pio, data
_HEADER = 8  # first, last
_MAX = abi.KVM_COALESCED_MMIO_MAX


def register_zones(kvm: Kvm, vm_fd: int, ports: list[tuple[int, int]]) -> bool:
    """Register each (port, length) as a coalesced PIO zone; False when KVM cannot (then the
    ports exit as before). All or nothing: a zone refused undoes the ones before it."""
    if not ports or not kvm.check_extension(abi.KVM_CAP_COALESCED_PIO):
        return False
    done: list[abi.kvm_coalesced_mmio_zone] = []
    for port, length in ports:
        zone = abi.kvm_coalesced_mmio_zone(addr=port, size=length, pio=1)
        try:
            ioctl(vm_fd, abi.KVM_REGISTER_COALESCED_MMIO, zone)
        except OSError as e:
            logger.info("coalesced PIO zone 0x%x refused: %s", port, e.strerror)
            for z in done:
                ioctl(vm_fd, abi.KVM_UNREGISTER_COALESCED_MMIO, z)
            return False
        done.append(zone)
    return True


class CoalescedRing:
    """The ring as seen through one vCPU's mapping; `drain` replays it onto the buses."""

    def __init__(self, vcpu_map: mmap.mmap | bytearray) -> None:
        base = abi.KVM_COALESCED_MMIO_PAGE_OFFSET * PAGE
        self._page = memoryview(vcpu_map)[base : base + PAGE]
        self._u32 = self._page.cast("I")

    def pending(self) -> bool:
        u32 = self._u32
        return u32[0] != u32[1]

    def drain(self, machine: Machine) -> int:
        """Replay every queued write in order (call with machine.lock held, so vCPUs sharing
        the ring never replay an entry twice); returns how many."""
        u32, page = self._u32, self._page
        first, n = u32[0], 0
        while first != u32[1] and n < _MAX:
            if first >= _MAX:  # never written by KVM; a corrupt index must not loop
                break
            addr, length, pio, data = _ENTRY.unpack_from(page, _HEADER + first * _ENTRY.size)
            length = min(length, 8)
            if length in (1, 2, 4, 8):
                value = int.from_bytes(data[:length], "little")
                if pio:
                    if length != 8:
                        machine.ports.write(addr & 0xFFFF, length, value)
                else:
                    machine.mmio.write(addr, length, value)
            first = (first + 1) % _MAX
            u32[0] = first  # KVM reads `first` to see the free space
            n += 1
        return n

    def release(self) -> None:
        self._u32.release()
        self._page.release()
