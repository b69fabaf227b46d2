/* Port and MMIO exits seen from inside (tests/test_kvm_guest.py):
 *   unassigned port 0x2F00 read as byte, word and dword -> echoed to TEST+0 with OUT;
 *   "hello" with rep outsb to TEST+1;  4 bytes with rep insb from TEST+2 -> dword to TEST+0;
 *   MMIO dword write/read at 0xA0000 (test device) -> echoed to TEST+0;
 *   a write to the ROM alias at 0xF0000 is dropped: the byte read back goes to TEST+0;
 *   then isa-debug-exit with 0x21 (status 0x43). */
        .include "_lib.S"
        .equ    TEST, 0x700
        .equ    UNASSIGNED, 0x2f00

        GUEST_ENTRY
        mov     $UNASSIGNED, %dx
        inb     %dx, %al
        mov     $TEST, %dx
        outb    %al, %dx
        mov     $UNASSIGNED, %dx
        inw     %dx, %ax
        mov     $TEST, %dx
        outw    %ax, %dx
        mov     $UNASSIGNED, %dx
        inl     %dx, %eax
        mov     $TEST, %dx
        outl    %eax, %dx

        mov     $hello, %si             /* DS:SI = the string in the image */
        mov     $5, %cx
        mov     $TEST + 1, %dx
        rep outsb

        mov     $0x1000, %di            /* ES:DI = RAM at 0x1000 */
        mov     $4, %cx
        mov     $TEST + 2, %dx
        rep insb
        mov     %es:0x1000, %eax
        mov     $TEST, %dx
        outl    %eax, %dx

        mov     $0xa000, %ax
        mov     %ax, %fs
        movl    $0xdeadbeef, %fs:0
        movl    %fs:4, %eax
        mov     $TEST, %dx
        outl    %eax, %dx

        movb    %ds:0, %bl              /* the first image byte (through the ROM alias) */
        movb    $0x5a, %ds:0            /* dropped: ROM */
        movb    %ds:0, %al
        xor     %bl, %al                /* 0 when the write was dropped */
        mov     $TEST, %dx
        outb    %al, %dx

        EXIT    0x21

hello:  .ascii  "hello"
