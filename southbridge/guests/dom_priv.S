/* The privileged domain's guest: list every PCI function on buses 0-3 through 0xCF8/0xCFC
 * as "bb:dd.f vvvv:dddd" lines on the debug console, then "end" and isa-debug-exit 0x11. */
        .include "_lib.S"

        GUEST_ENTRY
        jmp     main
        .include "_dom.S"

main:   xor     %ebx, %ebx              /* bus << 8 | devfn */
scan:   mov     %ebx, %eax
        shl     $8, %eax
        or      $0x80000000, %eax
        call    cfgrd
        cmp     $0xffffffff, %eax
        je      next
        mov     %eax, %edi
        mov     %bh, %al                /* bus */
        mov     $2, %cx
        call    puthex
        mov     $':', %al
        call    putc
        mov     %bl, %al                /* device */
        shr     $3, %al
        call    puthex
        mov     $'.', %al
        call    putc
        mov     %bl, %al                /* function */
        and     $7, %al
        mov     $1, %cx
        call    puthex
        mov     $' ', %al
        call    putc
        mov     %edi, %eax
        mov     $4, %cx
        call    puthex                  /* vendor */
        mov     $':', %al
        call    putc
        shr     $16, %eax
        call    puthex                  /* device */
        mov     $'\n', %al
        call    putc
next:   inc     %ebx
        cmp     $0x400, %ebx
        jb      scan
        PUTS    done
        EXIT    0x11

done:   .asciz  "end\n"
