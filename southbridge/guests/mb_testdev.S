/* pc-testdev from a Multiboot kernel, as kvm-unit-tests uses it (QEMU hw/misc/pc-testdev.c).
 * Failing exit values:
 *   2 the 0xE0 scratch register does not read back a dword
 *   3 a byte read at 0xE2 is not byte 2 of it   4 a word write at 0xE2 is not merged
 *   5 the MMIO window at 0xFF000000 does not read back a dword
 *   6 its last byte (0xFF00FFFF) does not read back
 *   7 an exception (vector < 32) was taken
 *   8 GSI 5 / GSI 10 set through 0x2005 / 0x200A did not interrupt exactly once each
 *     through the 8259 pair (vectors 0x25 / 0x2A, IRQ 10 through the slave's cascade)
 *   9 an interrupt is still in service after the handlers' EOIs
 * Success: 0x22 (status 0x45). Handlers return with IRET_SAME (see _mb.S): this host's KVM
 * cannot emulate a protected-mode IRET. */
        .include "_mb.S"

        .equ    VECTORS, 0x30

        MB_HEADER
        MB_ENTRY
        mov     $0x12345678, %eax       /* scratch register: dword, byte, word */
        outl    %eax, $0xe0
        inl     $0xe0, %eax
        cmp     $0x12345678, %eax
        je      1f
        EXIT    2
1:      inb     $0xe2, %al
        cmp     $0x34, %al
        je      1f
        EXIT    3
1:      mov     $0xabcd, %ax
        outw    %ax, $0xe2
        inl     $0xe0, %eax
        cmp     $0xabcd5678, %eax
        je      1f
        EXIT    4

1:      movl    $0xdeadbeef, 0xff000000 /* the scratch MMIO window */
        cmpl    $0xdeadbeef, 0xff000000
        je      1f
        EXIT    5
1:      movb    $0x5a, 0xff00ffff
        cmpb    $0x5a, 0xff00ffff
        je      1f
        EXIT    6

1:      mov     $idt, %edi              /* IDT: exceptions -> fault, 0x25, 0x2A -> irq */
        xor     %ecx, %ecx
2:      mov     $fault, %eax
        cmp     $0x25, %ecx
        jne     3f
        mov     $irq5, %eax
3:      cmp     $0x2a, %ecx
        jne     3f
        mov     $irq10, %eax
3:      mov     %ax, (%edi)             /* offset 15:0 */
        movw    $0x10, 2(%edi)          /* the boot code selector */
        movw    $0x8e00, 4(%edi)        /* present, DPL 0, 32-bit interrupt gate */
        shr     $16, %eax
        mov     %ax, 6(%edi)            /* offset 31:16 */
        add     $8, %edi
        inc     %ecx
        cmp     $VECTORS, %ecx
        jb      2b
        lidt    idtr

        mov     $0x11, %al              /* 8259 pair: ICW1 edge, cascade, ICW4 */
        outb    %al, $0x20
        outb    %al, $0xa0
        mov     $0x20, %al              /* ICW2: master vectors 0x20-0x27 */
        outb    %al, $0x21
        mov     $0x28, %al              /* slave 0x28-0x2F */
        outb    %al, $0xa1
        mov     $0x04, %al              /* ICW3: slave on IR2 */
        outb    %al, $0x21
        mov     $0x02, %al              /* slave ID 2 */
        outb    %al, $0xa1
        mov     $0x01, %al              /* ICW4: 8086 mode, normal EOI */
        outb    %al, $0x21
        outb    %al, $0xa1
        mov     $0xdb, %al              /* unmask IRQ 2 (cascade) and IRQ 5 */
        outb    %al, $0x21
        mov     $0xfb, %al              /* unmask IRQ 10 */
        outb    %al, $0xa1

        mov     $1, %al                 /* GSI 5 high: one edge */
        mov     $0x2005, %dx
        outb    %al, %dx
        mov     $count5, %ebx
        call    wait_irq
        mov     $1, %al                 /* GSI 10 high */
        mov     $0x200a, %dx
        outb    %al, %dx
        mov     $count10, %ebx
        call    wait_irq
        cmpl    $1, count5
        jne     bad_irq
        cmpl    $1, count10
        je      1f
bad_irq:
        EXIT    8
1:      mov     $0x0b, %al              /* OCW3: read ISR */
        outb    %al, $0x20
        outb    %al, $0xa0
        inb     $0x20, %al
        mov     %al, %ah
        inb     $0xa0, %al
        test    %ax, %ax
        jz      1f
        EXIT    9
1:      EXIT    0x22

/* Sleep until *EBX is non-zero; STI's one-instruction shadow closes the check/HLT race. */
wait_irq:
        cli
        cmpl    $0, (%ebx)
        jne     1f
        sti
        hlt
        jmp     wait_irq
1:      sti
        ret

irq5:   push    %eax
        push    %edx
        incl    count5
        xor     %al, %al                /* lower GSI 5, then EOI the master */
        mov     $0x2005, %dx
        outb    %al, %dx
        mov     $0x20, %al
        outb    %al, $0x20
        pop     %edx
        pop     %eax
        IRET_SAME

irq10:  push    %eax
        push    %edx
        incl    count10
        xor     %al, %al                /* lower GSI 10, EOI the slave, then the master */
        mov     $0x200a, %dx
        outb    %al, %dx
        mov     $0x20, %al
        outb    %al, $0xa0
        outb    %al, $0x20
        pop     %edx
        pop     %eax
        IRET_SAME

fault:  EXIT    7

count5:         .long 0
count10:        .long 0
        .align  8
idtr:   .word   VECTORS * 8 - 1
        .long   idt
        .align  8
idt:    .skip   VECTORS * 8
