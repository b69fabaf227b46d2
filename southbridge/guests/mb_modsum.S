/* Multiboot module checksum (Multiboot 0.6.96, 3.3): what a boot loader passed, summed.
 * Prints "loader=NAME\nmods=N\nmod0_start=HEX\nmod0_len=HEX\nmod0_sum=HEX\n" on the debug console, where
 * the sum is the 32-bit sum of the module's bytes, and exits with 0x20 (status 0x41).
 * Failures: 2 EAX != 0x2BADB002, 3 no mods flag, 7 mods_count != 1, 8 end < start. */
        .include "_mb.S"

        MB_HEADER
        MB_ENTRY
        cmpl    $MB_BOOT_MAGIC, boot_magic
        je      1f
        EXIT    2
1:      mov     boot_info, %ebx
        testl   $0x200, (%ebx)          /* boot loader name, when given */
        jz      1f
        PUTS    s_loader
        mov     64(%ebx), %esi
        call    puts
1:      testl   $0x8, (%ebx)
        jnz     1f
        EXIT    3
1:      PUTS    s_mods
        mov     20(%ebx), %eax
        call    puthex
        cmpl    $1, 20(%ebx)
        je      1f
        EXIT    7
1:      mov     24(%ebx), %ebp          /* mods_addr: start, end, string, reserved */
        mov     0(%ebp), %esi
        mov     4(%ebp), %ecx
        sub     %esi, %ecx
        jae     1f
        EXIT    8
1:      PUTS    s_start
        mov     0(%ebp), %eax
        call    puthex
        PUTS    s_len
        mov     %ecx, %eax
        call    puthex
        mov     0(%ebp), %esi
        xor     %edx, %edx
        xor     %eax, %eax
2:      test    %ecx, %ecx
        jz      3f
        movzbl  (%esi), %eax
        add     %eax, %edx
        inc     %esi
        dec     %ecx
        jmp     2b
3:      push    %edx                    /* puts clobbers EDX */
        PUTS    s_sum
        pop     %eax
        call    puthex
        mov     $'\n', %al
        call    putc
        EXIT    0x20

s_loader:       .asciz "loader="
s_mods:         .asciz "\nmods="
s_start:        .asciz "\nmod0_start="
s_len:          .asciz "\nmod0_len="
s_sum:          .asciz "\nmod0_sum="
