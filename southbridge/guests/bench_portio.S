/* Port-I/O exit cost benchmark (benchmarks/portio.py): OUT to the pc-testdev scratch port
 * 0xE0 `count` times, then isa-debug-exit with 0 (status 1), ending under southbridge, the C
 * KVM loop (benchmarks/c/kvm_portio.c) and QEMU alike. `count` is the image's first dword
 * so the benchmark can patch it (0 OUTs measures start-up and tear-down alone). */
        .include "_lib.S"
        .equ    SCRATCH, 0xe0

        .section .reset, "ax"
        .code16
        ljmp    $0xf000, $_start
        .text
        .code16
count:  .long   200000
_start:
        cli
        mov     $0xf000, %ax
        mov     %ax, %ds
        movl    %ds:count, %ecx
        mov     $SCRATCH, %dx
        test    %ecx, %ecx
        jz      2f
1:      mov     %ecx, %eax
        outl    %eax, %dx               /* one KVM_EXIT_IO each */
        dec     %ecx
        jnz     1b
2:      EXIT    0
