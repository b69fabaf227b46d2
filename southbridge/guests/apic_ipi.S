/* Self-IPIs, the TPR and x2APIC MSRs (tests/test_kvm_apic.py). TEST+4 reads the mode; every
 * result is a dword OUT to TEST+0; then isa-debug-exit 0x10 (status 0x21).
 * 0 = xAPIC: with TPR 0x50 a self-IPI (ICR shorthand self) of vector 0x41 stays in IRR;
 *     reports IRR[95:64], the count (0); TPR 0 delivers it: in the handler ISR[95:64] and
 *     PPR, then the count (1) and ISR[95:64] after EOI.
 * 1 = x2APIC: IA32_APIC_BASE |= EN | EXTD; reports the x2APIC ID MSR (0x802), a read of
 *     the xAPIC window (not decoded: all ones); SELF IPI MSR (0x83F) vector 0x42 and ICR MSR
 *     (0x830) self IPI vector 0x43, each EOIed by WRMSR 0x80B, report the count after each;
 *     WRMSR 0x80B with a non-zero value raises #GP: reports 0xD from the #GP handler. */
        .include "_lib.S"
        .include "_apic.S"
        .equ    TEST, 0x700
        .equ    COUNT, 0x500

        GUEST_ENTRY
        PM_SWITCH pm
        .code32
pm:     PM_SEGMENTS 0x7000
        IDT_FILL
        SET_GATE 0x0d, gp
        SET_GATE 0x41, h41
        SET_GATE 0x42, hx2
        SET_GATE 0x43, hx2
        movl    $0, COUNT
        mov     $TEST + 4, %dx
        inl     %dx, %eax
        cmp     $1, %eax
        je      x2apic

        movl    $0x1ff, APIC_SVR
        movl    $0x50, APIC_TPR
        movl    $0x40041, APIC_ICR_LO   /* fixed, shorthand self, vector 0x41 */
        sti
        nop
        nop
        cli
        PUTL    TEST, APIC_IRR + 0x20
        PUTL    TEST, COUNT
        sti
        movl    $0, APIC_TPR            /* the write that lets vector 0x41 through */
        nop
        cli
        PUTL    TEST, COUNT
        PUTL    TEST, APIC_ISR + 0x20
        EXIT    0x10

h41:    push    %eax
        push    %edx
        incl    COUNT
        PUTL    TEST, APIC_ISR + 0x20
        PUTL    TEST, LAPIC + 0xa0      /* PPR */
        movl    $0, APIC_EOI
        pop     %edx
        pop     %eax
        IRET32

x2apic: mov     $0x1b, %ecx
        rdmsr
        or      $0xc00, %eax            /* EN | EXTD */
        wrmsr
        mov     $0x802, %ecx
        rdmsr
        PUTL    TEST, %eax
        PUTL    TEST, APIC_SVR          /* the xAPIC window is not decoded in x2APIC mode */
        mov     $0x80f, %ecx
        mov     $0x1ff, %eax
        xor     %edx, %edx
        wrmsr
        sti
        mov     $0x83f, %ecx            /* SELF IPI */
        mov     $0x42, %eax
        wrmsr
        nop
        PUTL    TEST, COUNT
        mov     $0x830, %ecx            /* ICR: fixed, shorthand self, vector 0x43 */
        mov     $0x40043, %eax
        xor     %edx, %edx
        wrmsr
        nop
        PUTL    TEST, COUNT
        cli
        mov     $0x80b, %ecx
        mov     $1, %eax                /* EOI takes only 0 in x2APIC mode: #GP */
        xor     %edx, %edx
        wrmsr
        EXIT    0x11                    /* not reached */
gp:     mov     $0x7000, %esp
        PUTL    TEST, $0xd
        EXIT    0x10

hx2:    push    %eax
        push    %ecx
        push    %edx
        incl    COUNT
        mov     $0x80b, %ecx
        xor     %eax, %eax
        xor     %edx, %edx
        wrmsr
        pop     %edx
        pop     %ecx
        pop     %eax
        IRET32

        PM_TABLES
