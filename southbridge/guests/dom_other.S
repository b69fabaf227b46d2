/* A second user domain's guest: looks for the device assigned elsewhere (10ec:8139) on
 * buses 0-3, reads its host ports and the BAR address the first domain uses, and tries to
 * write its scratch register and ring its doorbell. Reports on the debug console; exits
 * with isa-debug-exit 0x13. */
        .include "_lib.S"
        .equ    WANT, 0x813910ec

        GUEST_ENTRY
        jmp     main
        .include "_dom.S"

main:   xor     %ebx, %ebx
find:   mov     %ebx, %eax
        shl     $8, %eax
        or      $0x80000000, %eax
        call    cfgrd
        cmp     $WANT, %eax
        je      seen
        inc     %ebx
        cmp     $0x400, %ebx
        jb      find
        PUTS    s_none
        jmp     ports
seen:   PUTS    s_seen
ports:  mov     $0xc000, %dx
        call    show
        mov     $0xc004, %dx
        call    show
        mov     $0xd000, %dx
        call    show
        mov     $0x11111111, %eax
        mov     $0xc004, %dx
        outl    %eax, %dx
        mov     $0xc008, %dx
        outl    %eax, %dx
        mov     $0xd004, %dx
        outl    %eax, %dx
        mov     $0xd008, %dx
        outl    %eax, %dx
        PUTS    s_end
        EXIT    0x13

show:   mov     %dx, %ax                /* "pppp vvvvvvvv" for the dword at port DX */
        mov     $4, %cx
        call    puthex
        mov     $' ', %al
        call    putc
        inl     %dx, %eax
        mov     $8, %cx
        call    puthex
        mov     $'\n', %al
        call    putc
        ret

s_none: .asciz  "device none\n"
s_seen: .asciz  "device seen\n"
s_end:  .asciz  "end\n"
