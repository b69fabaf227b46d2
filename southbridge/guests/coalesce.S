/* Coalesced port writes keep their order (tests/test_kvm_guest.py): writes to a write-only
 * sink (DEBUGCON, 0x402, a coalesced zone when KVM offers it) interleaved with reads and
 * writes of another, exiting port (TEST, 0x700). Per round k = 0..15: OUT k, k+0x40 to
 * DEBUGCON, IN from TEST, OUT k+0x80 to DEBUGCON, OUT k to TEST; then isa-debug-exit 0x21. */
        .include "_lib.S"
        .equ    TEST, 0x700
        .equ    DEBUGCON, 0x402

        GUEST_ENTRY
        xor     %bx, %bx
1:      mov     $DEBUGCON, %dx
        mov     %bl, %al
        outb    %al, %dx
        add     $0x40, %al
        outb    %al, %dx
        mov     $TEST, %dx
        inb     %dx, %al
        mov     $DEBUGCON, %dx
        mov     %bl, %al
        add     $0x80, %al
        outb    %al, %dx
        mov     $TEST, %dx
        mov     %bl, %al
        outb    %al, %dx
        inc     %bx
        cmp     $16, %bx
        jb      1b
        EXIT    0x21
