/* IOAPIC delivery to an AP (tests/test_kvm_smp.py, --smp 2). The BSP starts APIC 1, which
 * enables its APIC with logical ID bit 1 (flat), raises READY and sleeps with interrupts
 * on; its handler (vector 0x70) counts in HITS and EOIs its own APIC. The BSP then:
 * pin 10 edge, physical destination APIC 1: two pulses on GSI 10 -> HITS 2;
 * pin 11 level, logical destination 0x02: GSI 11 raised -> HITS 3, and once the AP lowered
 *   it in its handler and EOIed, the entry's remote IRR is clear (the AP's EOI broadcast).
 * Reports HITS after each, the pin 11 entry, and the BSP's own IRR word for 0x70 (0: the
 * BSP was never addressed) on TEST+0; isa-debug-exit 0x10. */
        .include "_lib.S"
        .include "_apic.S"
        .equ    TEST, 0x700
        .equ    READY, 0x600
        .equ    HITS, 0x604

.macro  REDIR   pin, low, high
        movl    $(0x10 + 2 * \pin), IOAPIC_SEL
        movl    $\low, IOAPIC_WIN
        movl    $(0x11 + 2 * \pin), IOAPIC_SEL
        movl    $\high, IOAPIC_WIN
.endm

.macro  SETGSI  n, level
        mov     $(0x2000 + \n), %dx
        mov     $\level, %al
        outb    %al, %dx
.endm

.macro  SPINFOR counter, n
1:      pause
        cmpl    $\n, \counter
        jb      1b
.endm

        GUEST_ENTRY
        PM_SWITCH pm
        .code32
pm:     PM_SEGMENTS 0x7000
        IDT_FILL
        SET_GATE 0x70, hit
        movl    $0, READY
        movl    $0, HITS
        mov     $0xff, %al                      /* 8259 pair masked */
        outb    %al, $0x21
        outb    %al, $0xa1
        movl    $0x1ff, APIC_SVR
        movl    $0x01000000, APIC_ICR_HI
        movl    $0x4500, APIC_ICR_LO            /* INIT APIC 1 */
        movl    $0x46f5, APIC_ICR_LO            /* SIPI */
        SPINFOR READY, 1
        REDIR   10, 0x0070, 0x01000000          /* edge, physical APIC 1 */
        SETGSI  10, 1
        SETGSI  10, 0
        SPINFOR HITS, 1
        SETGSI  10, 1
        SETGSI  10, 0
        SPINFOR HITS, 2
        PUTL    TEST, HITS
        REDIR   11, 0x8870, 0x02000000          /* level, logical 0x02 */
        SETGSI  11, 1
        SPINFOR HITS, 3
        PUTL    TEST, HITS
        movl    $(0x10 + 2 * 11), IOAPIC_SEL
2:      pause                                   /* wait for the AP's EOI broadcast */
        testl   $0x4000, IOAPIC_WIN
        jnz     2b
        PUTL    TEST, IOAPIC_WIN
        PUTL    TEST, APIC_IRR + 0x30           /* vectors 96-127 */
        EXIT    0x10

hit:    push    %eax
        push    %edx
        incl    HITS
        SETGSI  11, 0                           /* a level source is serviced */
        movl    $0, APIC_EOI
        pop     %edx
        pop     %eax
        IRET32

ap_pm:  PM_SEGMENTS 0x6000
        movl    $0x1ff, APIC_SVR
        movl    $0x02000000, LAPIC + 0xd0       /* LDR: logical ID bit 1 */
        movl    $1, READY
        sti
3:      hlt
        jmp     3b

        PM_TABLES

        .code16
        .org    0x5000
ap_start:
        ljmp    $0xf000, $ap_real
ap_real:
        PM_SWITCH ap_pm
