/* A PVH test kernel (Xen's x86 PVH boot ABI, docs/misc/pvh.pandoc, and
 * xen/include/public/arch-x86/hvm/start_info.h): a 32-bit ELF whose XEN_ELFNOTE_PHYS32_ENTRY
 * note names its entry. Run with
 *   --append "pvh-test 42" --initrd FILE (FILE holding "southbridge module 0\n")
 * Checks, failing with the exit value named:
 *   2 EBX does not point at magic 0x336ec578     3 version < 1 (no memory map)
 *   4 command line != "pvh-test 42"              5 nr_modules != 1
 *   6 module bytes differ                         7 no RAM entry at 1 MiB in the memory map
 *   8 CR0 not PE-without-PG, CR4 not 0, or IF set at entry
 * prints the memory map (addr size type) and exits with 0x20 (status 0x41). */
        .include "_mb.S"

        .equ    START_MAGIC, 0x336ec578
        .equ    XEN_ELFNOTE_PHYS32_ENTRY, 18

        .section .note.Xen, "a"
        .align  4
        .long   4                       /* namesz: "Xen\0" */
        .long   4                       /* descsz */
        .long   XEN_ELFNOTE_PHYS32_ENTRY
        .asciz  "Xen"
        .long   _start
        .text

        MB_ENTRY
        pushf
        pop     %eax
        test    $0x200, %eax
        jnz     bad_state
        mov     %cr0, %eax
        and     $0x80000001, %eax
        cmp     $1, %eax
        jne     bad_state
        mov     %cr4, %eax
        test    %eax, %eax
        jnz     bad_state

        mov     boot_info, %ebx         /* struct hvm_start_info */
        cmpl    $START_MAGIC, 0(%ebx)
        je      1f
        EXIT    2
1:      cmpl    $1, 4(%ebx)             /* version 1: memmap_paddr, memmap_entries */
        jae     1f
        EXIT    3
1:      PUTS    s_cmdline
        mov     24(%ebx), %esi          /* cmdline_paddr (low half) */
        push    %esi
        call    puts
        mov     $'\n', %al
        call    putc
        pop     %esi
        mov     $want_cmdline, %edi
        call    strcmp
        je      1f
        EXIT    4
1:      cmpl    $1, 12(%ebx)            /* nr_modules */
        je      1f
        EXIT    5
1:      mov     16(%ebx), %ebp          /* modlist_paddr: paddr, size, cmdline, reserved */
        PUTS    s_module
        mov     0(%ebp), %eax
        call    puthex
        mov     $' ', %al
        call    putc
        mov     8(%ebp), %eax
        call    puthex
        mov     $'\n', %al
        call    putc
        cmpl    $(want_module_end - want_module), 8(%ebp)
        jne     bad_module
        mov     0(%ebp), %esi
        mov     $want_module, %edi
        mov     $(want_module_end - want_module), %ecx
        repe cmpsb
        je      1f
bad_module:
        EXIT    6

1:      mov     40(%ebx), %ebp          /* memmap_paddr: addr, size, type, reserved */
        mov     48(%ebx), %edi          /* memmap_entries */
        xor     %ecx, %ecx              /* found RAM at 1 MiB */
2:      test    %edi, %edi
        jz      3f
        PUTS    s_map
        mov     4(%ebp), %eax
        call    puthex
        mov     0(%ebp), %eax
        call    puthex
        mov     $' ', %al
        call    putc
        mov     12(%ebp), %eax
        call    puthex
        mov     8(%ebp), %eax
        call    puthex
        mov     $' ', %al
        call    putc
        mov     16(%ebp), %eax
        call    puthex
        mov     $'\n', %al
        call    putc
        cmpl    $0x100000, 0(%ebp)
        jne     4f
        cmpl    $1, 16(%ebp)
        jne     4f
        mov     $1, %ecx
4:      add     $24, %ebp
        dec     %edi
        jmp     2b
3:      test    %ecx, %ecx
        jnz     1f
        EXIT    7
1:      PUTS    s_ok
        EXIT    0x20
bad_state:
        EXIT    8

s_cmdline:      .asciz "pvh: cmdline "
s_module:       .asciz "pvh: module "
s_map:          .asciz "pvh: memmap "
s_ok:           .asciz "pvh: ok\n"
want_cmdline:   .asciz "pvh-test 42"
want_module:    .ascii "southbridge module 0\n"
want_module_end:
