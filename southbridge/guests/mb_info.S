/* Multiboot information check (Multiboot 0.6.96, 3.2 and 3.3). Run with
 *   --append "mb-test 42" --initrd FILE (FILE holding "southbridge module 0\n")
 * Checks, failing with the exit value named:
 *   2 EAX != 0x2BADB002            3 flags lack mem/cmdline/mods/mmap/loader name
 *   4 mem_lower != 640             5 mem_upper * 1 KiB + 1 MiB != fw_cfg RAM size
 *   6 cmdline after the kernel name != "mb-test 42"
 *   7 mods_count != 1   8 module not page aligned   9 module bytes differ
 *  10 no RAM entry in the memory map at 1 MiB of mem_upper KiB
 *  11 boot loader name != "southbridge"
 *  12 CR0 not PE-without-PG, or IF set, at entry
 * then reloads every segment register from the boot GDT and exits with 0x20 (status 0x41).
 * Prints what it saw on the debug console for the test to compare with its arguments. */
        .include "_mb.S"

        MB_HEADER
        MB_ENTRY
        pushf                           /* entry state first, before we change anything */
        pop     %eax
        test    $0x200, %eax            /* IF clear */
        jnz     bad_state
        mov     %cr0, %eax
        and     $0x80000001, %eax       /* PG clear, PE set */
        cmp     $1, %eax
        jne     bad_state

        cmpl    $MB_BOOT_MAGIC, boot_magic
        je      1f
        EXIT    2
1:      mov     boot_info, %ebx
        mov     (%ebx), %eax
        and     $0x24d, %eax            /* bits 0 mem, 2 cmdline, 3 mods, 6 mmap, 9 name */
        cmp     $0x24d, %eax
        je      1f
        EXIT    3
1:      PUTS    s_lower
        mov     4(%ebx), %eax
        call    puthex
        PUTS    s_upper
        mov     8(%ebx), %eax
        call    puthex
        cmpl    $640, 4(%ebx)
        je      1f
        EXIT    4
1:      mov     $3, %ax                 /* fw_cfg RAM size (64-bit, little-endian) */
        call    fw_cfg_select
        mov     $ram_size, %edi
        mov     $8, %ecx
        call    fw_cfg_read
        mov     8(%ebx), %eax
        shl     $10, %eax
        add     $0x100000, %eax
        cmp     ram_size, %eax
        je      1f
        EXIT    5

1:      PUTS    s_cmdline               /* "KERNEL APPEND": compare what follows the space */
        mov     16(%ebx), %esi
        push    %esi
        call    puts
        pop     %esi
2:      lodsb
        test    %al, %al
        jz      bad_cmdline
        cmp     $' ', %al
        jne     2b
        mov     $want_cmdline, %edi
        call    strcmp
        je      1f
bad_cmdline:
        EXIT    6

1:      cmpl    $1, 20(%ebx)            /* mods_count */
        je      1f
        EXIT    7
1:      mov     24(%ebx), %ebp          /* mods_addr: start, end, string, reserved */
        PUTS    s_modstr
        mov     8(%ebp), %esi
        call    puts
        PUTS    s_modat
        mov     0(%ebp), %eax
        call    puthex
        PUTS    s_modend
        mov     4(%ebp), %eax
        call    puthex
        testl   $0xfff, 0(%ebp)
        jz      1f
        EXIT    8
1:      mov     4(%ebp), %ecx
        sub     0(%ebp), %ecx
        cmp     $want_module_len, %ecx
        jne     bad_module
        mov     0(%ebp), %esi
        mov     $want_module, %edi
        repe cmpsb
        je      1f
bad_module:
        EXIT    9

1:      mov     44(%ebx), %esi          /* mmap_length */
        mov     48(%ebx), %edi          /* mmap_addr; entries: size, base, length, type */
        add     %edi, %esi
        xor     %ebp, %ebp              /* found the RAM entry at 1 MiB */
2:      cmp     %esi, %edi
        jae     3f
        push    %esi
        PUTS    s_mmap
        mov     8(%edi), %eax
        call    puthex
        mov     4(%edi), %eax
        call    puthex
        mov     $' ', %al
        call    putc
        mov     16(%edi), %eax
        call    puthex
        mov     12(%edi), %eax
        call    puthex
        mov     $' ', %al
        call    putc
        mov     20(%edi), %eax
        call    puthex
        pop     %esi
        cmpl    $0x100000, 4(%edi)
        jne     4f
        cmpl    $1, 20(%edi)
        jne     4f
        mov     8(%ebx), %eax
        shl     $10, %eax
        cmp     12(%edi), %eax
        jne     4f
        inc     %ebp
4:      add     (%edi), %edi
        add     $4, %edi
        jmp     2b
3:      test    %ebp, %ebp
        jnz     1f
        EXIT    10

1:      PUTS    s_loader
        mov     64(%ebx), %esi
        push    %esi
        call    puts
        pop     %esi
        mov     $want_loader, %edi
        call    strcmp
        je      1f
        EXIT    11

1:      mov     $'\n', %al
        call    putc
        mov     %ds, %ax                /* the boot GDT must describe the boot selectors */
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %fs
        mov     %ax, %gs
        mov     %ax, %ss
        ljmp    $0x10, $1f
1:      EXIT    0x20

bad_state:
        EXIT    12

ram_size:       .quad 0
want_cmdline:   .asciz "mb-test 42"
want_loader:    .asciz "southbridge"
want_module:    .ascii "southbridge module 0\n"
        .equ    want_module_len, . - want_module
s_lower:        .asciz "mem_lower="
s_upper:        .asciz "\nmem_upper="
s_cmdline:      .asciz "\ncmdline="
s_modstr:       .asciz "\nmod0="
s_modat:        .asciz "\nmod0_start="
s_modend:       .asciz "\nmod0_end="
s_mmap:         .asciz "\nmmap "
s_loader:       .asciz "\nloader="
