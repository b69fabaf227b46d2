/* Fills 48 MiB of RAM from 4 MiB with a non-zero pattern (pages a snapshot must carry),
 * prints "filled" on the debug console and halts for good: the guest of
 * benchmarks/snapshot.py, run alike under southbridge and QEMU. */
        .include "_mb.S"

        .equ    FILL_BASE, 0x400000
        .equ    FILL_BYTES, 48 << 20

        MB_HEADER
        MB_ENTRY
        mov     $FILL_BASE, %edi
        mov     $(FILL_BYTES / 4), %ecx
        mov     $0x5a5a5a5a, %eax
        rep stosl
        PUTS    s_filled
        cli
1:      hlt
        jmp     1b

s_filled:       .asciz "filled\n"
