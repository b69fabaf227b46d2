"""Entering a bzImage planned by machine/bzimage.py (Documentation/arch/x86/boot.rst,
"32-bit Boot Protocol" and "64-bit Boot Protocol").

* 32-bit: protected mode, paging off, flat 4 GiB segments with __BOOT_CS = 0x10 and
  __BOOT_DS = 0x18 described by a GDT in guest memory, ESI = the zero page, EBP = EDI =
  EBX = 0, interrupts off.
* 64-bit (xloadflags XLF_KERNEL_64): long mode with paging, the first 4 GiB identity mapped
  (2 MiB pages), a 64-bit code segment 0x10 and data 0x18, RSI = the zero page, entered at
  startup_64 (code32_start + 0x200).
`southbridge run --kernel` reaches it through kvm/kernel.py for a bzImage.
"""

from __future__ import annotations

import struct

from southbridge.kvm import abi
from southbridge.kvm.vcpu import Vcpu
from southbridge.machine.base import Machine
from southbridge.machine.bzimage import ZERO_PAGE_ADDR, LinuxPlan

GDT_ADDR = 0x6000
PML4_ADDR = 0x10000  # then the PDPT and four page directories: 0x10000-0x15fff
CODE_SELECTOR = 0x10
DATA_SELECTOR = 0x18
GDT32 = struct.pack("<4Q", 0, 0, 0x00CF9B000000FFFF, 0x00CF93000000FFFF)
GDT64 = struct.pack("<4Q", 0, 0, 0x00AF9B000000FFFF, 0x00CF93000000FFFF)  # L=1 for CS

PTE_P, PTE_RW, PTE_PS = 1, 2, 0x80
CR0_PE, CR0_ET, CR0_PG = 1, 0x10, 1 << 31
CR4_PAE = 1 << 5
EFER_LME, EFER_LMA = 1 << 8, 1 << 10


def identity_tables(base: int = PML4_ADDR) -> bytes:
    """PML4, PDPT and four page directories mapping 0-4 GiB one to one in 2 MiB pages."""
    pml4 = struct.pack("<Q", (base + 0x1000) | PTE_P | PTE_RW).ljust(4096, b"\0")
    pdpt = b"".join(
        struct.pack("<Q", (base + 0x2000 + 0x1000 * i) | PTE_P | PTE_RW) for i in range(4)
    ).ljust(4096, b"\0")
    pds = b"".join(struct.pack("<Q", (i << 21) | PTE_P | PTE_RW | PTE_PS) for i in range(4 * 512))
    return pml4 + pdpt + pds


def load(machine: Machine, plan: LinuxPlan) -> None:
    for gpa, data in plan.blobs():
        machine.space.write_bytes(gpa, data)
    machine.space.write_bytes(GDT_ADDR, GDT64 if plan.kernel_64 else GDT32)
    if plan.kernel_64:
        machine.space.write_bytes(PML4_ADDR, identity_tables())


def _seg(seg: abi.kvm_segment, selector: int, type_: int, long: bool) -> None:
    seg.base, seg.limit, seg.selector, seg.type = 0, 0xFFFFFFFF, selector, type_
    seg.present, seg.dpl, seg.s, seg.g, seg.avl, seg.unusable = 1, 0, 1, 1, 0, 0
    seg.l, seg.db = (1, 0) if long else (0, 1)


def enter(vcpu: Vcpu, plan: LinuxPlan) -> None:
    sregs = vcpu.get_sregs()
    _seg(sregs.cs, CODE_SELECTOR, 0xB, plan.kernel_64)
    for name in ("ds", "es", "fs", "gs", "ss"):
        _seg(getattr(sregs, name), DATA_SELECTOR, 0x3, False)
    sregs.gdt.base, sregs.gdt.limit = GDT_ADDR, len(GDT32) - 1
    sregs.idt.base, sregs.idt.limit = 0, 0
    if plan.kernel_64:
        sregs.cr0 = CR0_PE | CR0_ET | CR0_PG
        sregs.cr3 = PML4_ADDR
        sregs.cr4 = CR4_PAE
        sregs.efer = EFER_LME | EFER_LMA
    else:
        sregs.cr0 = CR0_PE | CR0_ET
        sregs.cr3 = sregs.cr4 = sregs.efer = 0
    vcpu.set_sregs(sregs)
    regs = abi.kvm_regs()
    regs.rip = plan.entry
    regs.rsi = ZERO_PAGE_ADDR
    regs.rflags = 0x2
    vcpu.set_regs(regs)
