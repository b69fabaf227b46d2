/* Shared macros of the 32-bit APIC/SMP guests (apic_*.S, smp_*.S; include after _lib.S).
 * PM_SWITCH enters 32-bit protected mode with CS based at the image's alias at 0xF0000, so
 * code labels (offsets in the image) are valid EIPs and IDT offsets, and DS = ES = SS = a
 * flat 4 GiB segment that reaches the LAPIC (0xFEE00000) and IOAPIC (0xFEC00000). Data in
 * the image is at IMAGE + label. The IDT lives in RAM at IDT; unset vectors end the run
 * with status 0xFF (isa-debug-exit 0x7F). No INT n: this host's KVM cannot emulate it. */

        .equ    IMAGE, 0xf0000
        .equ    IDT, 0x1000
        .equ    LAPIC, 0xfee00000
        .equ    APIC_ID, LAPIC + 0x20
        .equ    APIC_TPR, LAPIC + 0x80
        .equ    APIC_EOI, LAPIC + 0xb0
        .equ    APIC_SVR, LAPIC + 0xf0
        .equ    APIC_ISR, LAPIC + 0x100
        .equ    APIC_IRR, LAPIC + 0x200
        .equ    APIC_ICR_LO, LAPIC + 0x300
        .equ    APIC_ICR_HI, LAPIC + 0x310
        .equ    APIC_LVT_TIMER, LAPIC + 0x320
        .equ    APIC_LVT_LINT0, LAPIC + 0x350
        .equ    APIC_TIMER_INIT, LAPIC + 0x380
        .equ    APIC_TIMER_CUR, LAPIC + 0x390
        .equ    APIC_TIMER_DCR, LAPIC + 0x3e0
        .equ    IOAPIC_SEL, 0xfec00000
        .equ    IOAPIC_WIN, 0xfec00010

/* 16-bit code: load the GDT and far-jump to the 32-bit label `target`. */
.macro  PM_SWITCH target
        lgdtl   %cs:gdt_desc
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmpl   $0x08, $\target
.endm

/* 32-bit code right after PM_SWITCH: flat data segments, stack at `stack`, the IDT. */
.macro  PM_SEGMENTS stack
        mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     %ax, %fs
        mov     %ax, %gs
        mov     $\stack, %esp
        lidt    IMAGE + idt_desc
.endm

/* 32-bit: point all 256 IDT gates at `unexpected`. */
.macro  IDT_FILL
        mov     $IDT, %edi
        xor     %ecx, %ecx
1:      mov     $unexpected, %eax
        mov     %ax, (%edi)
        movw    $0x08, 2(%edi)
        movw    $0x8e00, 4(%edi)
        shr     $16, %eax
        mov     %ax, 6(%edi)
        add     $8, %edi
        inc     %ecx
        cmp     $256, %ecx
        jb      1b
.endm

/* 32-bit: interrupt gate `vector` -> `handler`. */
.macro  SET_GATE vector, handler
        movl    $\handler, %eax
        mov     %ax, IDT + \vector * 8
        shr     $16, %eax
        mov     %ax, IDT + \vector * 8 + 6
.endm

/* 32-bit: OUT a dword to `port` (clobbers DX). */
.macro  PUTL    port, value
        mov     \value, %eax
        mov     $\port, %dx
        outl    %eax, %dx
.endm

/* The tables, once per guest (in .text, outside the code path). The descriptors come
 * with their accessed bits set: the CPU would otherwise write them, and the image is ROM. */
.macro  PM_TABLES
        .p2align 3
gdt:    .quad   0
        .quad   0x00409b0f0000ffff      /* 0x08: code, base 0xF0000, 64 KiB, 32-bit */
        .quad   0x00cf93000000ffff      /* 0x10: data, flat 4 GiB */
gdt_desc:
        .word   3 * 8 - 1
        .long   IMAGE + gdt
idt_desc:
        .word   256 * 8 - 1
        .long   IDT
unexpected:
        EXIT    0x7f
.endm

/* IRET for 32-bit handlers at CPL 0: this host's KVM emulates privileged code and its
 * emulator only implements real-mode IRET, so return as IRET would within one privilege
 * level: EFLAGS (with IF) and EIP from the frame, CS is unchanged. POPF has no interrupt
 * shadow: a new interrupt may nest between POPF and RET, which returns normally. */
.macro  IRET32
        push    %eax
        mov     12(%esp), %eax          /* EFLAGS */
        xchg    %eax, 4(%esp)           /* [4] = EFLAGS, EAX = EIP */
        mov     %eax, 8(%esp)           /* [8] = EIP */
        pop     %eax
        popfl
        ret     $4
.endm
