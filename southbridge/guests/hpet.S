/* The HPET's legacy replacement route under KVM (tests/test_hpet_kvm.py). The PIT runs at
 * 1 kHz on GSI 0 (IOAPIC pin 2, vector 0x60); the HPET takes IRQ0 with timer 0 periodic
 * every PERIOD ticks (edge, legacy route), so pin 2 then interrupts at the HPET's rate only.
 * Each interrupt's handler reads the main counter's low dword; TEST+5 stamps the first and
 * the last of COUNT interrupts, whose counter values are dwords OUT to TEST+0; then
 * isa-debug-exit 0x10 (status 0x21). */
        .include "_lib.S"
        .include "_apic.S"
        .equ    TEST, 0x700
        .equ    TICKS, 0x500
        .equ    LAST, 0x504
        .equ    COUNT, 50
        .equ    PERIOD, 500000          /* 5 ms at 100 MHz */
        .equ    HPET, 0xfed00000

        GUEST_ENTRY
        PM_SWITCH pm
        .code32
pm:     PM_SEGMENTS 0x7000
        IDT_FILL
        SET_GATE 0x60, tick
        movl    $0, TICKS
        mov     $0xff, %al              /* 8259 pair masked: everything through the IOAPIC */
        outb    %al, $0x21
        outb    %al, $0xa1
        movl    $0x1ff, APIC_SVR
        movl    $0x10000, APIC_LVT_LINT0
        movl    $0x14, IOAPIC_SEL       /* pin 2: vector 0x60, edge, APIC 0 */
        movl    $0x60, IOAPIC_WIN
        movl    $0x15, IOAPIC_SEL
        movl    $0, IOAPIC_WIN
        mov     $0x34, %al              /* PIT channel 0 mode 2, count 1193 (1 kHz) */
        outb    %al, $0x43
        mov     $0xa9, %al
        outb    %al, $0x40
        mov     $0x04, %al
        outb    %al, $0x40
        movl    $0x14c, HPET + 0x100    /* timer 0: ENB, periodic, VAL_SET, 32-bit */
        movl    $PERIOD, HPET + 0x108   /* first match and period */
        movl    $3, HPET + 0x10         /* ENABLE_CNF | LEG_RT_CNF */
        sti
1:      cli
        cmpl    $COUNT, TICKS
        jae     2f
        sti
        hlt
        jmp     1b
2:      movl    $0, HPET + 0x10         /* halt the HPET: quiet while exiting */
        EXIT    0x10

tick:   push    %eax
        push    %edx
        mov     HPET + 0xf0, %eax
        mov     %eax, LAST
        incl    TICKS
        cmpl    $1, TICKS
        je      3f
        cmpl    $COUNT, TICKS
        jne     4f
3:      PUTL    TEST + 5, %eax
        PUTL    TEST, LAST
4:      movl    $0, APIC_EOI
        pop     %edx
        pop     %eax
        IRET32

        PM_TABLES
