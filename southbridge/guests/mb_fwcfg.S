/* fw_cfg from a Multiboot kernel, the way kvm-unit-tests' lib/x86/fwcfg.c reads it
 * (QEMU docs/specs/fw_cfg.rst): selector 0x510 (16-bit), data 0x511 (bytes).
 * Failing exit values: 2 signature != "QEMU"   3 ID lacks the traditional interface
 *   4 CPU count (key 0x05) is 0   5 RAM size (key 0x03) != mem_upper * 1 KiB + 1 MiB
 *   6 "etc/boot-fail-wait" not in the file directory (key 0x19)
 *   7 its contents are not 0xFFFFFFFF (QEMU's "never reboot" default)
 *   8 a read past an item's end is not 0
 *   9 the ID lacks DMA (bit 1), or a DMA read of key 0x03 (an FWCfgDmaAccess in RAM, its
 *     address written big-endian to 0x514/0x518 as Linux's qemu_fw_cfg does) did not
 *     complete with control 0 and the same RAM size
 * Success: 0x21 (status 0x43). Prints cpus=, ram=, the file names and the key found. */
        .include "_mb.S"

        MB_HEADER
        MB_ENTRY
        xor     %ax, %ax                /* key 0x00: signature */
        call    fw_cfg_select
        mov     $buf, %edi
        mov     $4, %ecx
        call    fw_cfg_read
        cmpl    $0x554d4551, buf        /* "QEMU" */
        je      1f
        EXIT    2
1:      mov     $1, %ax                 /* key 0x01: interface ID, bit 0 traditional */
        call    fw_cfg_select
        mov     $buf, %edi
        mov     $4, %ecx
        call    fw_cfg_read
        testb   $1, buf
        jnz     1f
        EXIT    3
1:      testb   $2, buf                 /* DMA interface */
        jz      bad_dma
        movl    $0x0a000300, dma_desc   /* control BE: key 0x03 << 16 | SELECT | READ */
        movl    $0x08000000, dma_desc + 4   /* length BE: 8 */
        movl    $0, dma_desc + 8        /* address BE64: high half */
        mov     $dma_buf, %eax
        bswap   %eax
        mov     %eax, dma_desc + 12
        xor     %eax, %eax              /* descriptor address: high half, then low (go) */
        mov     $0x514, %dx
        outl    %eax, %dx
        mov     $dma_desc, %eax
        bswap   %eax
        mov     $0x518, %dx
        outl    %eax, %dx
        cmpl    $0, dma_desc            /* control cleared: done, no error */
        jne     bad_dma
1:      mov     $5, %ax                 /* key 0x05: number of CPUs, 16-bit LE */
        call    fw_cfg_select
        movl    $0, buf
        mov     $buf, %edi
        mov     $2, %ecx
        call    fw_cfg_read
        PUTS    s_cpus
        mov     buf, %eax
        call    puthex
        test    %eax, %eax
        jnz     1f
        EXIT    4
1:      mov     $3, %ax                 /* key 0x03: RAM size, 64-bit LE */
        call    fw_cfg_select
        mov     $buf, %edi
        mov     $8, %ecx
        call    fw_cfg_read
        PUTS    s_ram
        mov     buf + 4, %eax
        call    puthex
        mov     buf, %eax
        call    puthex
        mov     boot_info, %ebx
        mov     8(%ebx), %eax           /* Multiboot mem_upper in KiB */
        shl     $10, %eax
        add     $0x100000, %eax
        cmp     buf, %eax
        jne     bad_ram
        cmpl    $0, buf + 4
        jne     bad_ram
        cmp     dma_buf, %eax           /* the DMA read gave the same size */
        jne     bad_dma
        cmpl    $0, dma_buf + 4
        je      1f
bad_dma:
        EXIT    9
bad_ram:
        EXIT    5

1:      mov     $0x19, %ax              /* key 0x19: the file directory */
        call    fw_cfg_select
        mov     $buf, %edi
        mov     $4, %ecx
        call    fw_cfg_read
        mov     buf, %ebp
        bswap   %ebp                    /* count, big-endian */
        xor     %ebx, %ebx              /* key of the file we look for, 0 = not found */
2:      test    %ebp, %ebp
        jz      3f
        mov     $file, %edi             /* size BE32, select BE16, reserved, name[56] */
        mov     $64, %ecx
        call    fw_cfg_read
        PUTS    s_file
        PUTS    file + 8
        mov     $file + 8, %esi
        mov     $want_name, %edi
        call    strcmp
        jne     4f
        movzwl  file + 4, %ebx
        xchg    %bl, %bh
4:      dec     %ebp
        jmp     2b
3:      test    %ebx, %ebx
        jnz     1f
        EXIT    6
1:      PUTS    s_key
        mov     %ebx, %eax
        call    puthex
        mov     %bx, %ax
        call    fw_cfg_select
        mov     $buf, %edi
        mov     $8, %ecx                /* 4 bytes of item, then 4 past its end */
        call    fw_cfg_read
        cmpl    $0xffffffff, buf
        je      1f
        EXIT    7
1:      cmpl    $0, buf + 4
        je      1f
        EXIT    8
1:      mov     $'\n', %al
        call    putc
        EXIT    0x21

want_name:      .asciz "etc/boot-fail-wait"
s_cpus:         .asciz "cpus="
s_ram:          .asciz "\nram="
s_file:         .asciz "\nfile "
s_key:          .asciz "\nkey="
        .align  4
buf:            .skip   8
dma_desc:       .skip   16
dma_buf:        .skip   8
file:           .skip   64
