/* A Linux-boot-protocol test kernel (Documentation/arch/x86/boot.rst): a bzImage with a
 * 2.15 setup header, real-mode setup code, a 32-bit entry (startup_32 at 1 MiB) and a
 * 64-bit entry (startup_64, 0x200 further). Run with
 *   --append "lx-test 42" --initrd FILE (FILE holding "southbridge initrd\n")
 * Three ways in, each recorded and printed as "lx: entry N":
 *   1 the 32-bit boot protocol (a loader jumped to startup_32, EBP = EDI = EBX = 0)
 *   2 the 64-bit boot protocol (startup_64 in long mode, RSI = the zero page)
 *   3 the real-mode setup (a BIOS-side loader such as SeaBIOS's linuxboot option ROM
 *     jumped to setup + 0x200): it builds the zero page itself with INT 15h E820, enters
 *     protected mode and jumps to code32_start like Linux's own setup does.
 * The 32-bit paths switch to long mode; then the checks, failing with the exit value named:
 *   2 no "HdrS" in the zero page   3 command line != "lx-test 42"
 *   4 no e820 RAM entry at 1 MiB ending within 1 MiB below the fw_cfg RAM size
 *   5 initrd bytes differ from "southbridge initrd\n"   6 type_of_loader is 0
 *   7 EBP/EDI/EBX not 0 at the 32-bit entry   8 CS != 0x10 or DS != 0x18 at a 32-bit entry
 * It prints the zero page's e820 map for the test to compare with the machine's, and
 * exits with 0x20 (status 0x41). Output goes to the debug console (0x402). */
        .equ    DEBUG_EXIT, 0xf4
        .equ    DEBUGCON, 0x402
        .equ    FW_CFG_SEL, 0x510
        .equ    FW_CFG_DATA, 0x511
        .equ    SETUP_SECTS, 3
        .equ    ZPOFF, 0x1000           /* setup path: the zero page at setup + 4 KiB */
        .equ    SETU, 0x55544553        /* EBP marker from our own setup ("SETU") */
        .equ    SMAP, 0x534d4150

/* ---------------------------------------------------------------- real-mode setup */
        .section .setup, "ax"
        .code16
        .org    0x1f1
        .byte   SETUP_SECTS             /* setup_sects */
        .word   0                       /* root_flags */
        .long   _syssize                /* syssize */
        .word   0                       /* ram_size */
        .word   0xffff                  /* vid_mode: normal */
        .word   0                       /* root_dev */
        .word   0xaa55                  /* boot_flag */
        .byte   0xeb, hdr_end - 0x202   /* 0x200: jmp hdr_end */
        .ascii  "HdrS"                  /* 0x202 header */
        .word   0x020f                  /* version 2.15 */
        .long   0                       /* realmode_swtch */
        .word   0                       /* start_sys_seg */
        .word   kernel_version - 0x200  /* kernel_version */
        .byte   0                       /* type_of_loader: the loader sets it */
        .byte   0x01                    /* loadflags: LOADED_HIGH */
        .word   0                       /* setup_move_size */
        .long   0x100000                /* code32_start */
        .long   0, 0                    /* ramdisk_image, ramdisk_size */
        .long   0                       /* bootsect_kludge */
        .word   0                       /* heap_end_ptr */
        .byte   0, 0                    /* ext_loader_ver, ext_loader_type */
        .long   0                       /* cmd_line_ptr */
        .long   0x37ffffff              /* initrd_addr_max */
        .long   0x200000                /* kernel_alignment */
        .byte   0                       /* relocatable_kernel: no, it runs at 1 MiB */
        .byte   21                      /* min_alignment */
        .word   0x0001                  /* xloadflags: XLF_KERNEL_64 */
        .long   255                     /* cmdline_size */
        .long   0                       /* hardware_subarch */
        .quad   0                       /* hardware_subarch_data */
        .long   0, 0                    /* payload_offset, payload_length */
        .quad   0                       /* setup_data */
        .quad   0x100000                /* pref_address */
        .long   _init_size              /* init_size */
        .long   0                       /* handover_offset */
        .long   0                       /* kernel_info_offset */
hdr_end:
        /* Entered with CS = DS + 0x20, IP = 0 (boot.rst, "Running the kernel"): make CS
         * equal DS so that offsets from the setup's start address everything. */
        pushw   %ds
        pushw   $1f
        lretw
1:      cld
        mov     %ds, %ax
        mov     %ax, %es
        mov     %ax, %ss
        mov     $0xf000, %sp
        mov     $ZPOFF, %di             /* a zeroed zero page... */
        xor     %ax, %ax
        mov     $2048, %cx
        rep stosw
        mov     $0x1f1, %si             /* ...holding the header the loader filled in */
        mov     $(ZPOFF + 0x1f1), %di
        mov     $(hdr_end - 0x1f1), %cx
        rep movsb
        xor     %ebx, %ebx              /* INT 15h, AX=E820h: the BIOS's memory map */
        xor     %bp, %bp
        mov     $(ZPOFF + 0x2d0), %di
2:      mov     $0xe820, %eax
        mov     $SMAP, %edx
        mov     $20, %ecx
        int     $0x15
        jc      3f
        cmp     $SMAP, %eax
        jne     3f
        inc     %bp
        add     $20, %di
        test    %ebx, %ebx
        jz      3f
        cmp     $128, %bp
        jb      2b
3:      mov     %bp, %ax
        mov     %al, ZPOFF + 0x1e8
        xor     %eax, %eax              /* linear addresses of the zero page, GDT, pm32 */
        mov     %ds, %ax
        shl     $4, %eax
        lea     ZPOFF(%eax), %esi
        lea     gdt(%eax), %edx
        mov     %edx, gdt_ptr + 2
        lea     pm32(%eax), %edx
        mov     %edx, far_ptr
        cli
        lgdtl   gdt_ptr
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmpl   *far_ptr
        .code32
pm32:   mov     $0x18, %eax             /* boot.rst's __BOOT_DS */
        mov     %eax, %ds
        mov     %eax, %es
        mov     %eax, %ss
        mov     %eax, %fs
        mov     %eax, %gs
        mov     $SETU, %ebp
        xor     %edi, %edi
        xor     %ebx, %ebx
        jmp     *0x214(%esi)            /* code32_start, ESI = the zero page */
        .code16
        .align  8
gdt:    .quad   0, 0, 0x00cf9b000000ffff, 0x00cf93000000ffff
gdt_ptr:
        .word   31
        .long   0
far_ptr:
        .long   0
        .word   0x10
kernel_version:
        .asciz  "southbridge lx_boot"
        .org    (SETUP_SECTS + 1) * 512

/* ---------------------------------------------------------------- entries at 1 MiB */
        .section .text.head, "ax"
        .code32
        .globl  startup_32
startup_32:
        cld
        cli
        cmp     $SETU, %ebp
        jne     1f
        movl    $3, boot_path
        jmp     2f
1:      movl    $1, boot_path
        mov     %ebp, %eax              /* boot.rst: EBP, EDI and EBX must be zero */
        or      %edi, %eax
        or      %ebx, %eax
        jz      2f
        mov     $7, %eax
        jmp     exit32
2:      mov     %esi, zero_page
        mov     %cs, %eax
        cmp     $0x10, %ax
        jne     bad_seg
        mov     %ds, %eax
        cmp     $0x18, %ax
        je      1f
bad_seg:
        mov     $8, %eax
exit32: outl    %eax, $DEBUG_EXIT
        hlt
1:      mov     $pml4, %edi             /* 4 GiB identity map in 2 MiB pages */
        xor     %eax, %eax
        mov     $(6 * 1024), %ecx
        rep stosl
        movl    $(pdpt + 3), pml4
        mov     $pdpt, %edi
        mov     $(pd + 3), %eax
        mov     $4, %ecx
1:      mov     %eax, (%edi)
        add     $0x1000, %eax
        add     $8, %edi
        loop    1b
        mov     $pd, %edi
        mov     $0x83, %eax             /* present, writable, 2 MiB */
        xor     %edx, %edx
        mov     $2048, %ecx
1:      mov     %eax, (%edi)
        mov     %edx, 4(%edi)
        add     $0x200000, %eax
        adc     $0, %edx
        add     $8, %edi
        loop    1b
        mov     %cr4, %eax
        or      $0x20, %eax             /* PAE */
        mov     %eax, %cr4
        mov     $pml4, %eax
        mov     %eax, %cr3
        mov     $0xc0000080, %ecx       /* EFER.LME */
        rdmsr
        or      $0x100, %eax
        wrmsr
        lgdt    gdt64_ptr
        mov     %cr0, %eax
        or      $0x80000001, %eax
        mov     %eax, %cr0
        ljmp    $0x10, $long_entry

        .org    0x200
        .code64
        .globl  startup_64
startup_64:
        cld
        cli
        movl    $2, boot_path(%rip)
        mov     %rsi, zero_page(%rip)
        jmp     common
long_entry:
        mov     $0x18, %eax
        mov     %eax, %ds
        mov     %eax, %es
        mov     %eax, %ss
common:
        lea     stack_top(%rip), %rsp
        lea     s_entry(%rip), %rsi
        call    puts
        mov     boot_path(%rip), %eax
        add     $'0', %al
        call    putc
        mov     $'\n', %al
        call    putc
        mov     zero_page(%rip), %rbx
        cmpl    $0x53726448, 0x202(%rbx)        /* "HdrS" */
        je      1f
        mov     $2, %eax
        jmp     exit
1:      lea     s_loader(%rip), %rsi
        call    puts
        movzbl  0x210(%rbx), %eax
        call    puthex
        mov     $'\n', %al
        call    putc
        cmpb    $0, 0x210(%rbx)
        jne     1f
        mov     $6, %eax
        jmp     exit

1:      lea     s_cmdline(%rip), %rsi           /* cmd_line_ptr | ext_cmd_line_ptr << 32 */
        call    puts
        mov     0x228(%rbx), %esi
        mov     0xc8(%rbx), %eax
        shl     $32, %rax
        or      %rax, %rsi
        push    %rsi
        call    puts
        mov     $'\n', %al
        call    putc
        pop     %rsi
        lea     want_cmdline(%rip), %rdi
        call    strcmp
        je      1f
        mov     $3, %eax
        jmp     exit

1:      movzbl  0x1e8(%rbx), %r12d              /* the e820 map */
        lea     0x2d0(%rbx), %r13
        xor     %r14, %r14                      /* the end of the RAM entry at 1 MiB */
2:      test    %r12d, %r12d
        jz      3f
        lea     s_e820(%rip), %rsi
        call    puts
        mov     (%r13), %rax
        call    puthex
        mov     $' ', %al
        call    putc
        mov     8(%r13), %rax
        call    puthex
        mov     $' ', %al
        call    putc
        mov     16(%r13), %eax
        call    puthex
        mov     $'\n', %al
        call    putc
        cmpq    $0x100000, (%r13)
        jne     4f
        cmpl    $1, 16(%r13)
        jne     4f
        mov     (%r13), %r14
        add     8(%r13), %r14
4:      add     $20, %r13
        dec     %r12d
        jmp     2b
3:      mov     $3, %ax                         /* fw_cfg RAM size */
        mov     $FW_CFG_SEL, %dx
        outw    %ax, %dx
        lea     ram_size(%rip), %rdi
        mov     $8, %ecx
        mov     $FW_CFG_DATA, %dx
        rep insb
        mov     ram_size(%rip), %rax
        cmp     %rax, %r14
        ja      5f
        sub     $0x100000, %rax
        cmp     %rax, %r14
        jae     1f
5:      mov     $4, %eax
        jmp     exit

1:      lea     s_initrd(%rip), %rsi            /* ramdisk_image, ramdisk_size */
        call    puts
        mov     0x218(%rbx), %eax
        call    puthex
        mov     $' ', %al
        call    putc
        mov     0x21c(%rbx), %eax
        call    puthex
        mov     $'\n', %al
        call    putc
        cmpl    $(want_initrd_end - want_initrd), 0x21c(%rbx)
        jne     5f
        mov     0x218(%rbx), %esi
        lea     want_initrd(%rip), %rdi
        mov     $(want_initrd_end - want_initrd), %ecx
        repe cmpsb
        je      1f
5:      mov     $5, %eax
        jmp     exit

1:      lea     s_ok(%rip), %rsi
        call    puts
        mov     $0x20, %eax
exit:   outl    %eax, $DEBUG_EXIT
        cli
9:      hlt
        jmp     9b

/* puts: RSI = NUL-terminated string. Clobbers RAX, RDX, RSI. */
puts:   mov     $DEBUGCON, %dx
1:      lodsb
        test    %al, %al
        jz      2f
        outb    %al, %dx
        jmp     1b
2:      ret

/* putc: AL. Clobbers RDX. */
putc:   mov     $DEBUGCON, %dx
        outb    %al, %dx
        ret

/* puthex: RAX as 16 hex digits. Clobbers nothing. */
puthex: push    %rax
        push    %rbx
        push    %rcx
        push    %rdx
        mov     %rax, %rbx
        mov     $16, %ecx
        mov     $DEBUGCON, %dx
1:      rol     $4, %rbx
        mov     %bl, %al
        and     $0xf, %al
        add     $'0', %al
        cmp     $'9', %al
        jbe     2f
        add     $('a' - '9' - 1), %al
2:      outb    %al, %dx
        loop    1b
        pop     %rdx
        pop     %rcx
        pop     %rbx
        pop     %rax
        ret

/* strcmp: RSI, RDI NUL-terminated; ZF set when equal. Clobbers RAX, RSI, RDI. */
strcmp: lodsb
        scasb
        jne     1f
        test    %al, %al
        jnz     strcmp
1:      ret

        .data
        .align  8
gdt64:  .quad   0, 0, 0x00af9b000000ffff, 0x00cf93000000ffff
gdt64_ptr:
        .word   31
        .quad   gdt64
zero_page:      .quad 0
ram_size:       .quad 0
boot_path:      .long 0
s_entry:        .asciz "lx: entry "
s_loader:       .asciz "lx: type_of_loader "
s_cmdline:      .asciz "lx: cmdline "
s_e820:         .asciz "lx: e820 "
s_initrd:       .asciz "lx: initrd "
s_ok:           .asciz "lx: ok\n"
want_cmdline:   .asciz "lx-test 42"
want_initrd:    .ascii "southbridge initrd\n"
want_initrd_end:

        .section .bss
        .align  4096
pml4:   .skip   4096
pdpt:   .skip   4096
pd:     .skip   4 * 4096
stack:  .skip   4096
stack_top:
