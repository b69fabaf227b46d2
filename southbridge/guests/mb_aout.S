/* A Multiboot kernel that gives its load addresses in the header (flag bit 16, the "a.out
 * kludge", Multiboot 0.6.96 3.1.3), so a loader must not need its ELF headers: the test
 * also runs it stripped to a flat image. The header asks for a BSS past the file's end.
 * Failing exit values: 2 EAX != 0x2BADB002   3 no memory information in the info flags
 *   4 the BSS (past load_end_addr) is not zero
 * Success: 0x23 (status 0x47). */
        .include "_mb.S"

        .equ    AOUT_FLAGS, MB_PAGE_ALIGN_MEMINFO | 0x10000

        .section .multiboot, "a"
        .align  4
mb_header:
        .long   MB_HEADER_MAGIC, AOUT_FLAGS, -(MB_HEADER_MAGIC + AOUT_FLAGS)
        .long   mb_header               /* header_addr */
        .long   _image_start            /* load_addr */
        .long   _edata                  /* load_end_addr */
        .long   _end                    /* bss_end_addr */
        .long   _start                  /* entry_addr */

        MB_ENTRY
        cmpl    $MB_BOOT_MAGIC, boot_magic
        je      1f
        EXIT    2
1:      mov     boot_info, %ebx
        testl   $1, (%ebx)
        jnz     1f
        EXIT    3
1:      mov     $stack_top, %edi        /* the BSS past our stack (which is in use) */
        mov     $_end, %ecx
        sub     %edi, %ecx
        xor     %eax, %eax
        repe scasb
        je      1f
        EXIT    4
1:      PUTS    s_ok
        EXIT    0x23

s_ok:   .asciz  "a.out kludge ok\n"

        .section .bss
        .align  4
zeroes: .skip   64
