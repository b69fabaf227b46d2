/* INIT/SIPI bring-up (tests/test_kvm_smp.py, --smp 4). The BSP enters protected mode, sends
 * INIT then two SIPIs (vector 0xF5: the APs start in real mode at F500:0000, the image's
 * offset 0x5000) to all excluding self, and waits until COUNT reaches TEST+8 (the number of
 * APs). Each AP takes its initial APIC ID from CPUID leaf 1, stores 0x100 | ID in SLOT[ID],
 * counts itself with a locked increment and halts. The BSP reports its own APIC ID,
 * COUNT, then SLOT[1..N] as dwords on TEST+0 and exits with isa-debug-exit 0x10.
 * With TEST+4 = 1 the BSP first clears SLOT[1] and restarts APIC 1, which is halted with
 * interrupts off, with INIT and one SIPI addressed to it: COUNT then reaches N + 1. */
        .include "_lib.S"
        .include "_apic.S"
        .equ    TEST, 0x700
        .equ    COUNT, 0x600
        .equ    SLOT, 0x610

        GUEST_ENTRY
        PM_SWITCH pm
        .code32
pm:     PM_SEGMENTS 0x7000
        IDT_FILL
        movl    $0, COUNT
        mov     $SLOT, %edi
        xor     %eax, %eax
        mov     $16, %ecx
        rep stosl
        mov     $TEST + 8, %dx
        inl     %dx, %eax
        mov     %eax, %esi              /* APs expected */
        movl    $0x1ff, APIC_SVR
        movl    $0xc4500, APIC_ICR_LO   /* INIT, level assert, all excluding self */
        movl    $0xc46f5, APIC_ICR_LO   /* SIPI, vector 0xF5 */
        movl    $0xc46f5, APIC_ICR_LO   /* the second SIPI of the MP protocol: ignored */
1:      pause
        cmp     %esi, COUNT
        jb      1b
        mov     $TEST + 4, %dx
        inl     %dx, %eax
        test    %eax, %eax
        jz      report
        movl    $0, SLOT + 4
        movl    $0x01000000, APIC_ICR_HI        /* APIC 1 */
        movl    $0x4500, APIC_ICR_LO            /* INIT: resets the running AP */
        movl    $0x46f5, APIC_ICR_LO            /* SIPI */
        lea     1(%esi), %ecx
3:      pause
        cmp     %ecx, COUNT
        jb      3b
report: mov     APIC_ID, %eax
        shr     $24, %eax
        PUTL    TEST, %eax
        PUTL    TEST, COUNT
        mov     $1, %ebx
2:      mov     SLOT(,%ebx,4), %eax
        PUTL    TEST, %eax
        inc     %ebx
        cmp     %esi, %ebx
        jbe     2b
        EXIT    0x10

        PM_TABLES

/* The APs' start-up code: CS = 0xF500, IP = 0. */
        .code16
        .org    0x5000
ap_start:
        ljmp    $0xf000, $ap_real
ap_real:
        xor     %ax, %ax
        mov     %ax, %ds
        mov     $1, %eax
        cpuid
        shr     $24, %ebx
        mov     %bx, %si
        shl     $2, %si
        or      $0x100, %ebx
        mov     %ebx, SLOT(%si)
        lock incl COUNT
1:      cli
        hlt
        jmp     1b
