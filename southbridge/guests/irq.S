/* Interrupt injection from inside: vector 0x20 -> handler that writes the count to TEST+3.
 * TEST+4 reads the mode: 0 = wait in HLT, 1 = spin with interrupts enabled (the vCPU must
 * be kicked out of KVM_RUN). After 3 interrupts: isa-debug-exit with 0x10 (status 0x21). */
        .include "_lib.S"
        .equ    TEST, 0x700

        GUEST_ENTRY
        SET_IVT 0x20, handler
        xor     %bx, %bx                /* interrupts seen */
        mov     $TEST + 4, %dx
        inb     %dx, %al
        sti
        test    %al, %al
        jnz     spin
wait:   hlt
        cmp     $3, %bx
        jb      wait
        EXIT    0x10
spin:   cmp     $3, %bx
        jb      spin
        EXIT    0x10

handler:
        inc     %bx
        push    %ax
        push    %dx
        mov     %bl, %al
        mov     $TEST + 3, %dx
        outb    %al, %dx
        pop     %dx
        pop     %ax
        iret
