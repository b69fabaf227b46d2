/* LAPIC timer against host time (tests/test_kvm_apic.py). TEST+4 reads the mode, TEST+8 a
 * 32-bit parameter; the timer interrupts on vector 0x40, the handler EOIs through MMIO.
 * 0 = one-shot, divide by 16, initial count = parameter: TEST+5 is written when the count
 *     is loaded and by the interrupt; TEST+0 then gets the current count (0 once expired).
 * 1 = periodic, divide by 2, initial count = parameter: TEST+5 at the first interrupt and
 *     COUNT interrupts later, as rate.S does for the PIT.
 * 2 = TSC-deadline: IA32_TSC_DEADLINE = RDTSC + parameter; TEST+5 at the WRMSR and by the
 *     interrupt; TEST+0 then gets IA32_TSC_DEADLINE (0 once it fired).
 * Then isa-debug-exit 0x10 (status 0x21). */
        .include "_lib.S"
        .include "_apic.S"
        .equ    TEST, 0x700
        .equ    COUNT, 250
        .equ    TICKS, 0x500

        GUEST_ENTRY
        PM_SWITCH pm
        .code32
pm:     PM_SEGMENTS 0x7000
        IDT_FILL
        SET_GATE 0x40, tick
        movl    $0, TICKS
        movl    $0x1ff, APIC_SVR        /* software enable, spurious vector 0xFF */
        mov     $TEST + 8, %dx
        inl     %dx, %eax
        mov     %eax, %edi              /* parameter */
        mov     $TEST + 4, %dx
        inl     %dx, %eax
        cmp     $1, %eax
        je      periodic
        cmp     $2, %eax
        je      deadline

oneshot:
        movl    $0x3, APIC_TIMER_DCR    /* divide by 16 */
        movl    $0x40, APIC_LVT_TIMER   /* one-shot, vector 0x40 */
        PUTL    TEST + 5, %eax
        mov     %edi, APIC_TIMER_INIT
        mov     $1, %ebx
        call    wait_ticks
        PUTL    TEST, APIC_TIMER_CUR
        EXIT    0x10

periodic:
        movl    $0x0, APIC_TIMER_DCR    /* divide by 2 */
        movl    $0x20040, APIC_LVT_TIMER
        mov     %edi, APIC_TIMER_INIT
        mov     $COUNT + 1, %ebx
        call    wait_ticks
        movl    $0x30040, APIC_LVT_TIMER /* masked: quiet while exiting */
        EXIT    0x10

deadline:
        movl    $0x40040, APIC_LVT_TIMER /* TSC-deadline mode, vector 0x40 */
        rdtsc
        add     %edi, %eax
        adc     $0, %edx
        mov     $0x6e0, %ecx
        push    %eax
        push    %edx
        PUTL    TEST + 5, %eax
        pop     %edx
        pop     %eax
        wrmsr
        mov     $1, %ebx
        call    wait_ticks
        mov     $0x6e0, %ecx
        rdmsr
        PUTL    TEST, %eax
        EXIT    0x10

/* Sleep until TICKS reaches EBX. */
wait_ticks:
        sti
1:      hlt
        cmp     %ebx, TICKS
        jb      1b
        cli
        ret

/* Count; mark the first tick and (for periodic) the (COUNT+1)th on TEST+5. */
tick:   push    %eax
        push    %edx
        incl    TICKS
        mov     TICKS, %eax
        cmp     $1, %eax
        je      2f
        cmp     $COUNT + 1, %eax
        jne     3f
2:      mov     $TEST + 5, %dx
        outb    %al, %dx
3:      movl    $0, APIC_EOI
        pop     %edx
        pop     %eax
        IRET32

        PM_TABLES
