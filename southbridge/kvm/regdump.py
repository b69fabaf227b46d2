"""A vCPU's registers in QEMU's `info registers` layout, for error reports."""

from __future__ import annotations

from southbridge.kvm import abi


def format_registers(r: abi.kvm_regs, s: abi.kvm_sregs) -> str:
    lines = [
        f"RAX={r.rax:016x} RBX={r.rbx:016x} RCX={r.rcx:016x} RDX={r.rdx:016x}",
        f"RSI={r.rsi:016x} RDI={r.rdi:016x} RBP={r.rbp:016x} RSP={r.rsp:016x}",
        f"R8 ={r.r8:016x} R9 ={r.r9:016x} R10={r.r10:016x} R11={r.r11:016x}",
        f"R12={r.r12:016x} R13={r.r13:016x} R14={r.r14:016x} R15={r.r15:016x}",
        f"RIP={r.rip:016x} RFL={r.rflags:08x}",
    ]
    for name in abi.SEGMENT_NAMES:
        seg = getattr(s, name)
        lines.append(
            f"{name.upper():3}={seg.selector:04x} {seg.base:016x} {seg.limit:08x} "
            f"type={seg.type:x} s={seg.s} dpl={seg.dpl} p={seg.present} db={seg.db} "
            f"l={seg.l} g={seg.g}"
        )
    lines += [
        f"GDT={s.gdt.base:016x} {s.gdt.limit:08x} IDT={s.idt.base:016x} {s.idt.limit:08x}",
        f"CR0={s.cr0:08x} CR2={s.cr2:016x} CR3={s.cr3:016x} CR4={s.cr4:08x} EFER={s.efer:016x}",
    ]
    return "\n".join(lines)
