/* The platform seen from inside (tests/test_kvm_platform.py):
 *   PCI mechanism #1 (0xCF8/0xCFC) vendor/device dwords of 00:00.0 (i440FX), 00:01.0
 *   (PIIX3), 00:02.0 (the demo device) and 00:1f.0 (no device: all-ones), each OUT to TEST;
 *   the same i440FX dword read as two words at 0xCFC/0xCFE, OUT to TEST+2;
 *   "platform ok\r\n" on COM1 (16550 at 0x3F8 set to 8N1, since it powers up with 5-bit
 *   words; THR written when LSR.THRE is set, TEMT awaited before exiting);
 *   then isa-debug-exit with 0x2a (status 0x55). */
        .include "_lib.S"
        .equ    TEST, 0x700
        .equ    COM1, 0x3f8
        .equ    LSR_THRE, 0x20
        .equ    LSR_TEMT, 0x40

        GUEST_ENTRY
        mov     $0x80000000, %eax       /* 00:00.0 reg 0 */
        call    pci_read_out
        mov     $0x80000800, %eax       /* 00:01.0 */
        call    pci_read_out
        mov     $0x80001000, %eax       /* 00:02.0 */
        call    pci_read_out
        mov     $0x8000f800, %eax       /* 00:1f.0: empty slot */
        call    pci_read_out

        mov     $0x80000000, %eax       /* word reads at 0xCFC and 0xCFE */
        mov     $0xcf8, %dx
        outl    %eax, %dx
        mov     $0xcfc, %dx
        inw     %dx, %ax
        mov     $TEST + 2, %dx
        outw    %ax, %dx
        mov     $0xcfe, %dx
        inw     %dx, %ax
        mov     $TEST + 2, %dx
        outw    %ax, %dx

        mov     $COM1 + 3, %dx          /* LCR: DLAB, divisor 1 (115200), then 8N1 */
        mov     $0x80, %al
        outb    %al, %dx
        mov     $COM1, %dx
        mov     $1, %al
        outb    %al, %dx
        inc     %dx
        xor     %al, %al
        outb    %al, %dx
        mov     $COM1 + 3, %dx
        mov     $0x03, %al
        outb    %al, %dx

        mov     $message, %si
1:      lodsb
        test    %al, %al
        jz      3f
        mov     %al, %bl
        mov     $COM1 + 5, %dx
2:      inb     %dx, %al                /* wait for an empty transmit holding register */
        test    $LSR_THRE, %al
        jz      2b
        mov     %bl, %al
        mov     $COM1, %dx
        outb    %al, %dx
        jmp     1b
3:      mov     $COM1 + 5, %dx          /* the last bytes leave at the line rate: wait */
4:      inb     %dx, %al                /* for TEMT (holding and shift registers empty) */
        test    $LSR_TEMT, %al
        jz      4b
        EXIT    0x2a

/* Config dword at address %eax -> OUT to TEST. */
pci_read_out:
        mov     $0xcf8, %dx
        outl    %eax, %dx
        mov     $0xcfc, %dx
        inl     %dx, %eax
        mov     $TEST, %dx
        outl    %eax, %dx
        ret

message: .asciz "platform ok\r\n"
