/* IOAPIC and MSI delivery (tests/test_kvm_apic.py). The 8259 is masked and LINT0 too, so
 * every interrupt comes through the IOAPIC or as an MSI. Results are dwords OUT to TEST+0,
 * in the order they happen; then isa-debug-exit 0x10 (status 0x21). TEST+4 is the mode:
 * 0 = IOAPIC through the pc-testdev GSI ports (0x2000 + N sets GSI N's level):
 *     pin 10 edge -> 0x50: two pulses, two interrupts (count);
 *     pin 11 level -> 0x51: raised and left high; the handler reports the redirection
 *       entry (remote IRR set) and lowers the line only on its second run, so EOI with the
 *       line still high must re-deliver; then count and the entry (remote IRR clear);
 *     pin 12 level, masked -> 0x52: raised: count (0) and the entry (no remote IRR);
 *       unmasked: the asserted line delivers, the handler lowers it: count (1).
 * 1 = MSI from the demo PCI device (00:02.0): BAR1 I/O at 0xC000, MSI to APIC 0 vector
 *     0x55; two INT_RAISE writes, each handler acknowledges with INT_ACK: count after each,
 *     then INT_STATUS (0).
 * 2 = the 8259 through IOAPIC pin 0 in ExtINT mode (LINT0 masked): the master 8259 at base
 *     0x20 with only IRQ3 unmasked; two rising edges on GSI 3 each reach the CPU as the
 *     8259's vector 0x23 (its INTA cycle), the handler sends the 8259 an EOI: count after
 *     each, then the IOAPIC pin 3 entry (masked, never delivered: no remote IRR). */
        .include "_lib.S"
        .include "_apic.S"
        .equ    TEST, 0x700
        .equ    C50, 0x500
        .equ    C51, 0x504
        .equ    C52, 0x508
        .equ    C55, 0x50c
        .equ    C23, 0x510
        .equ    GSI, 0x2000
        .equ    DEMO_IO, 0xc000
        .equ    CFG, 0x80001000         /* bus 0, device 2, function 0 */

/* IOAPIC redirection entry `pin` = low (high dword: destination APIC 0). */
.macro  REDIR   pin, low
        movl    $(0x10 + 2 * \pin), IOAPIC_SEL
        movl    $\low, IOAPIC_WIN
        movl    $(0x11 + 2 * \pin), IOAPIC_SEL
        movl    $0, IOAPIC_WIN
.endm

.macro  SETGSI  n, level
        mov     $(GSI + \n), %dx
        mov     $\level, %al
        outb    %al, %dx
.endm

/* Sleep until `counter` >= n; CLI..STI;HLT so no interrupt slips in before the HLT. */
.macro  WAITFOR counter, n
1:      cli
        cmpl    $\n, \counter
        jae     2f
        sti
        hlt
        jmp     1b
2:      sti
.endm

.macro  PUT_REDIR pin
        movl    $(0x10 + 2 * \pin), IOAPIC_SEL
        PUTL    TEST, IOAPIC_WIN
.endm

        GUEST_ENTRY
        PM_SWITCH pm
        .code32
pm:     PM_SEGMENTS 0x7000
        IDT_FILL
        SET_GATE 0x50, h50
        SET_GATE 0x51, h51
        SET_GATE 0x52, h52
        SET_GATE 0x55, h55
        SET_GATE 0x23, h23
        xor     %eax, %eax
        mov     %eax, C50
        mov     %eax, C51
        mov     %eax, C52
        mov     %eax, C55
        mov     %eax, C23
        mov     $0xff, %al              /* 8259 pair: everything masked */
        outb    %al, $0x21
        outb    %al, $0xa1
        movl    $0x1ff, APIC_SVR
        movl    $0x10000, APIC_LVT_LINT0
        mov     $TEST + 4, %dx
        inl     %dx, %eax
        cmp     $1, %eax
        je      msi
        cmp     $2, %eax
        je      extint

        REDIR   10, 0x0050
        REDIR   11, 0x8051
        REDIR   12, 0x18052
        sti
        SETGSI  10, 1
        SETGSI  10, 0
        SETGSI  10, 1
        SETGSI  10, 0
        WAITFOR C50, 2
        PUTL    TEST, C50
        SETGSI  11, 1
        WAITFOR C51, 2
        PUTL    TEST, C51
        PUT_REDIR 11
        SETGSI  12, 1
        nop
        PUTL    TEST, C52
        PUT_REDIR 12
        REDIR   12, 0x8052              /* unmask: the line is still high */
        WAITFOR C52, 1
        PUTL    TEST, C52
        cli
        EXIT    0x10

h50:    incl    C50
        movl    $0, APIC_EOI
        IRET32

h51:    push    %eax
        push    %edx
        incl    C51
        PUT_REDIR 11
        cmpl    $2, C51
        jb      1f
        SETGSI  11, 0
1:      movl    $0, APIC_EOI
        pop     %edx
        pop     %eax
        IRET32

h52:    push    %eax
        push    %edx
        incl    C52
        SETGSI  12, 0
        movl    $0, APIC_EOI
        pop     %edx
        pop     %eax
        IRET32

/* PCI configuration dword `reg` of the demo device <- EAX (clobbers EBX, DX). */
cfg_write:
        mov     %eax, %ebx
        mov     %ecx, %eax
        or      $CFG, %eax
        mov     $0xcf8, %dx
        outl    %eax, %dx
        mov     %ebx, %eax
        mov     $0xcfc, %dx
        outl    %eax, %dx
        ret

/* EAX <- PCI configuration dword ECX of the demo device (clobbers DX). */
cfg_read:
        mov     %ecx, %eax
        or      $CFG, %eax
        mov     $0xcf8, %dx
        outl    %eax, %dx
        mov     $0xcfc, %dx
        inl     %dx, %eax
        ret

msi:    mov     $0x14, %ecx             /* BAR1: I/O */
        mov     $DEMO_IO, %eax
        call    cfg_write
        mov     $0x04, %ecx             /* COMMAND: I/O space, bus master */
        mov     $0x5, %eax
        call    cfg_write
        mov     $0x34, %ecx             /* walk the capability list to MSI (ID 5) */
        call    cfg_read
2:      and     $0xfc, %eax
        jz      no_msi
        mov     %eax, %ecx
        call    cfg_read
        cmp     $5, %al
        je      3f
        shr     $8, %eax
        jmp     2b
3:      mov     %ecx, %esi              /* capability offset */
        mov     %eax, %edi              /* ID, next, control */
        lea     4(%esi), %ecx
        mov     $0xfee00000, %eax       /* destination APIC 0, physical */
        call    cfg_write
        lea     8(%esi), %ecx
        test    $0x800000, %edi         /* 64-bit address capable: high dword, data at +C */
        jz      4f
        xor     %eax, %eax
        call    cfg_write
        lea     12(%esi), %ecx
4:      mov     $0x0055, %eax           /* fixed, edge, vector 0x55 */
        call    cfg_write
        mov     %esi, %ecx
        mov     %edi, %eax
        or      $0x10000, %eax          /* MSI enable */
        call    cfg_write
        sti
        PUTL    DEMO_IO + 0x0c, $1      /* INT_RAISE */
        WAITFOR C55, 1
        PUTL    TEST, C55
        PUTL    DEMO_IO + 0x0c, $1
        WAITFOR C55, 2
        PUTL    TEST, C55
        mov     $DEMO_IO + 0x08, %dx    /* INT_STATUS */
        inl     %dx, %eax
        PUTL    TEST, %eax
        cli
        EXIT    0x10
no_msi: EXIT    0x12

extint: mov     $0x11, %al              /* master 8259: ICW1-4, vectors 0x20-0x27 */
        outb    %al, $0x20
        mov     $0x20, %al
        outb    %al, $0x21
        mov     $0x04, %al
        outb    %al, $0x21
        mov     $0x01, %al
        outb    %al, $0x21
        mov     $0xf7, %al              /* IRQ3 only */
        outb    %al, $0x21
        REDIR   0, 0x0700               /* pin 0: ExtINT to APIC 0 */
        sti
        SETGSI  3, 1
        WAITFOR C23, 1
        PUTL    TEST, C23
        SETGSI  3, 0
        SETGSI  3, 1
        WAITFOR C23, 2
        PUTL    TEST, C23
        SETGSI  3, 0
        PUT_REDIR 3
        cli
        EXIT    0x10

h23:    push    %eax
        incl    C23
        mov     $0x20, %al              /* 8259 non-specific EOI */
        outb    %al, $0x20
        pop     %eax
        IRET32

h55:    push    %eax
        push    %edx
        incl    C55
        PUTL    DEMO_IO + 0x10, $1      /* INT_ACK */
        movl    $0, APIC_EOI
        pop     %edx
        pop     %eax
        IRET32

        PM_TABLES
