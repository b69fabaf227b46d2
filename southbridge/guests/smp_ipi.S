/* IPIs between two vCPUs (tests/test_kvm_smp.py, --smp 2). The BSP starts APIC 1 with INIT
 * and SIPI addressed physically; the AP enters protected mode (its own stack), enables its
 * APIC, sets its LDR to logical (flat) bit 1, raises READY and sleeps with interrupts on.
 * Ping-pong ROUNDS times: the BSP sends fixed vector 0x60 to APIC 1 (physical, then the
 * last round logical 0x02); the AP's handler counts (PINGS) and answers vector 0x61 to
 * APIC 0, whose handler counts (PONGS). Then an NMI IPI to APIC 1: its NMI handler counts
 * (NMIS). The BSP reports PINGS, PONGS, NMIS on TEST+0 and exits (isa-debug-exit 0x10). */
        .include "_lib.S"
        .include "_apic.S"
        .equ    TEST, 0x700
        .equ    READY, 0x600
        .equ    PINGS, 0x604
        .equ    PONGS, 0x608
        .equ    NMIS, 0x60c
        .equ    ROUNDS, 10

/* Sleep until `counter` >= `n` (a register or immediate); CLI..STI;HLT closes the race. */
.macro  WAITFOR counter, n
1:      cli
        cmpl    \n, \counter
        jae     2f
        sti
        hlt
        jmp     1b
2:      sti
.endm

        GUEST_ENTRY
        PM_SWITCH pm
        .code32
pm:     PM_SEGMENTS 0x7000
        IDT_FILL
        SET_GATE 0x02, ap_nmi
        SET_GATE 0x60, ap_ping
        SET_GATE 0x61, bsp_pong
        xor     %eax, %eax
        mov     %eax, READY
        mov     %eax, PINGS
        mov     %eax, PONGS
        mov     %eax, NMIS
        movl    $0x1ff, APIC_SVR
        movl    $0x01000000, APIC_ICR_HI        /* APIC 1 */
        movl    $0x4500, APIC_ICR_LO            /* INIT, physical */
        movl    $0x46f5, APIC_ICR_LO            /* SIPI: F500:0000 */
1:      pause
        cmpl    $1, READY
        jb      1b
        mov     $1, %ebx
ping:   cmp     $ROUNDS, %ebx
        je      5f
        movl    $0x01000000, APIC_ICR_HI
        movl    $0x0060, APIC_ICR_LO            /* fixed 0x60, physical APIC 1 */
        jmp     2f
5:      movl    $0x02000000, APIC_ICR_HI        /* last round: logical, flat bit 1 */
        movl    $0x0860, APIC_ICR_LO
2:      WAITFOR PONGS, %ebx
        inc     %ebx
        cmp     $ROUNDS, %ebx
        jbe     ping
        movl    $0x01000000, APIC_ICR_HI
        movl    $0x0400, APIC_ICR_LO            /* NMI to APIC 1 */
3:      pause
        cmpl    $1, NMIS
        jb      3b
        PUTL    TEST, PINGS
        PUTL    TEST, PONGS
        PUTL    TEST, NMIS
        cli
        EXIT    0x10

bsp_pong:
        incl    PONGS
        movl    $0, APIC_EOI
        IRET32

ap_ping:
        incl    PINGS
        movl    $0, APIC_ICR_HI
        movl    $0x0061, APIC_ICR_LO            /* answer: fixed 0x61 to APIC 0 */
        movl    $0, APIC_EOI
        IRET32

ap_nmi: lock incl NMIS
        IRET32

ap_pm:  PM_SEGMENTS 0x6000
        movl    $0x1ff, APIC_SVR
        movl    $0x02000000, LAPIC + 0xd0       /* LDR: logical ID bit 1 (flat model) */
        movl    $1, READY
        sti
4:      hlt
        jmp     4b

        PM_TABLES

/* The AP's start-up code: CS = 0xF500, IP = 0, real mode. */
        .code16
        .org    0x5000
ap_start:
        ljmp    $0xf000, $ap_real
ap_real:
        PM_SWITCH ap_pm
