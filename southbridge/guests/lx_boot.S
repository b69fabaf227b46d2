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
 *   9 the MADT's enabled CPUs differ from fw_cfg's count
 * It prints the zero page's e820 map for the test to compare with the machine's, walks the
 * ACPI tables (RSDP -> XSDT -> MADT, FADT, HPET), prints PIT/PM timer/HPET samples 40 ms
 * apart for the test to compute their rates, and powers off through \_S5 (PM1a_CNT:
 * SLP_TYP | SLP_EN, the run ends with status 0); without ACPI it exits with 0x20 (status
 * 0x41). Output goes to the debug console (0x402). */
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

1:      call    acpi_walk               /* platform tables, timer rates, S5 */
        lea     s_ok(%rip), %rsi
        call    puts
        test    %r15, %r15              /* found a PM1a control block: power off */
        jz      1f
        lea     s_s5(%rip), %rsi
        call    puts
        mov     s5_typ(%rip), %eax
        shl     $10, %eax               /* SLP_TYPx, bits 10-12 */
        or      $0x2000, %eax           /* SLP_EN */
        mov     %r15d, %edx
        outw    %ax, %dx
1:      mov     $0x20, %eax             /* no ACPI (or S5 did not take): exit */
exit:   outl    %eax, $DEBUG_EXIT
        cli
9:      hlt
        jmp     9b

/* acpi_walk: find the RSDP (the zero page's acpi_rsdp_addr, else a scan of 0xE0000-0xFFFFF
 * on 16-byte boundaries, ACPI 5.2.5.1), walk the XSDT and print what the tables say: the
 * enabled local APICs in the MADT (exit 9 if not the fw_cfg CPU count), the FADT's PM timer
 * and PM1a control ports, the HPET's base; then time the PM timer and the HPET against PIT
 * channel 2 (three trials, printed for the test to compute the rates), and take \_S5's
 * SLP_TYPa from the DSDT. Leaves R15 = the PM1a control port (0: none, no ACPI). */
acpi_walk:
        xor     %r15, %r15
        mov     0x70(%rbx), %rsi                /* boot_params.acpi_rsdp_addr */
        test    %rsi, %rsi
        jnz     2f
        mov     $0xe0000, %esi
1:      mov     $0x2052545020445352, %rax       /* "RSD PTR " */
        cmp     %rax, (%rsi)
        je      2f
        add     $16, %esi
        cmp     $0x100000, %esi
        jb      1b
        lea     s_noacpi(%rip), %rsi
        jmp     puts
2:      mov     %rsi, %r12
        lea     s_rsdp(%rip), %rsi
        call    puts
        mov     %r12, %rax
        call    puthex
        mov     $'\n', %al
        call    putc
        mov     24(%r12), %r12                  /* XsdtAddress */
        mov     4(%r12), %r13d                  /* its length */
        add     %r12, %r13
        lea     36(%r12), %r14                  /* the entries */
3:      cmp     %r13, %r14
        jae     acpi_timers
        mov     (%r14), %rdi
        add     $8, %r14
        mov     (%rdi), %eax
        cmp     $0x43495041, %eax               /* "APIC" */
        je      madt
        cmp     $0x50434146, %eax               /* "FACP" */
        je      fadt
        cmp     $0x54455048, %eax               /* "HPET" */
        je      hpet_table
        jmp     3b
madt:   mov     4(%rdi), %ecx                   /* count enabled processor local APICs */
        lea     (%rdi, %rcx), %rdx
        lea     44(%rdi), %rsi
        xor     %ecx, %ecx
4:      cmp     %rdx, %rsi
        jae     5f
        cmpb    $0, (%rsi)                      /* type 0: processor local APIC */
        jne     6f
        testb   $1, 4(%rsi)                     /* flags: enabled */
        jz      6f
        inc     %ecx
6:      movzbl  1(%rsi), %eax
        test    %eax, %eax
        jz      5f                              /* a zero-length entry ends the walk */
        add     %rax, %rsi
        jmp     4b
5:      lea     s_madt(%rip), %rsi
        call    puts
        mov     %ecx, %eax
        call    puthex
        mov     $'\n', %al
        call    putc
        push    %rcx
        mov     $5, %ax                         /* fw_cfg NB_CPUS */
        mov     $FW_CFG_SEL, %dx
        outw    %ax, %dx
        mov     $FW_CFG_DATA, %dx
        xor     %eax, %eax
        inb     %dx, %al
        pop     %rcx
        cmp     %eax, %ecx
        je      3b
        mov     $9, %eax
        jmp     exit
fadt:   mov     76(%rdi), %eax                  /* PM_TMR_BLK */
        mov     %eax, pm_tmr(%rip)
        mov     64(%rdi), %eax                  /* PM1a_CNT_BLK */
        mov     %eax, pm1a_cnt(%rip)
        mov     40(%rdi), %eax                  /* DSDT */
        mov     %rax, dsdt(%rip)
        lea     s_fadt(%rip), %rsi
        call    puts
        mov     pm_tmr(%rip), %eax
        call    puthex
        mov     $' ', %al
        call    putc
        mov     pm1a_cnt(%rip), %eax
        call    puthex
        mov     $'\n', %al
        call    putc
        jmp     3b
hpet_table:
        mov     44(%rdi), %rax                  /* the base address's GAS address */
        mov     %rax, hpet_base(%rip)
        lea     s_hpet(%rip), %rsi
        call    puts
        mov     hpet_base(%rip), %rax
        call    puthex
        mov     $'\n', %al
        call    putc
        jmp     3b

acpi_timers:
        mov     hpet_base(%rip), %rdi           /* HPET: ENABLE_CNF */
        test    %rdi, %rdi
        jz      1f
        movq    $1, 0x10(%rdi)
1:      mov     $3, %r13d                       /* three trials */
2:      mov     $0xb0, %al                      /* PIT ch2: lobyte/hibyte, mode 0 */
        outb    %al, $0x43
        mov     $0xff, %al
        outb    %al, $0x42
        outb    %al, $0x42
        inb     $0x61, %al                      /* gate 2 on (a rising gate loads it) */
        and     $0xfc, %al
        outb    %al, $0x61
        or      $1, %al
        outb    %al, $0x61
        call    sample
        mov     %eax, t0_pit(%rip)
        mov     %edx, t0_pm(%rip)
        mov     %rcx, t0_hpet(%rip)
3:      mov     pm_tmr(%rip), %edx              /* spin 40 ms by the PM timer */
        in      %dx, %eax
        sub     t0_pm(%rip), %eax
        and     $0xffffff, %eax
        cmp     $143182, %eax
        jb      3b
        call    sample
        lea     s_timer(%rip), %rsi
        push    %rcx
        push    %rdx
        push    %rax
        call    puts
        mov     t0_pit(%rip), %eax
        call    puthex
        mov     $' ', %al
        call    putc
        pop     %rax
        call    puthex
        mov     $' ', %al
        call    putc
        mov     t0_pm(%rip), %eax
        call    puthex
        mov     $' ', %al
        call    putc
        pop     %rax
        call    puthex
        mov     $' ', %al
        call    putc
        mov     t0_hpet(%rip), %rax
        call    puthex
        mov     $' ', %al
        call    putc
        pop     %rax
        call    puthex
        mov     $'\n', %al
        call    putc
        dec     %r13d
        jnz     2b

        mov     dsdt(%rip), %rsi                /* \_S5: Name(_S5_, Package(){typ, ...}) */
        test    %rsi, %rsi
        jz      9f
        mov     4(%rsi), %ecx
        lea     -8(%rsi, %rcx), %rdx
4:      cmp     %rdx, %rsi
        jae     9f
        cmpl    $0x5f35535f, (%rsi)             /* "_S5_" */
        je      5f
        inc     %rsi
        jmp     4b
5:      cmpb    $0x12, 4(%rsi)                  /* PackageOp */
        jne     9f
        lea     5(%rsi), %rdi                   /* PkgLength: 1 + (lead >> 6) bytes */
        movzbl  (%rdi), %eax
        shr     $6, %eax
        lea     2(%rdi, %rax), %rdi             /* past PkgLength and NumElements */
        movzbl  (%rdi), %eax
        cmp     $0x0a, %al                      /* BytePrefix */
        jne     6f
        movzbl  1(%rdi), %eax
        jmp     7f
6:      cmp     $1, %al                         /* ZeroOp 0 or OneOp 1 */
        ja      9f
7:      mov     %eax, s5_typ(%rip)
        mov     pm1a_cnt(%rip), %r15d
9:      ret

/* sample: EAX = PIT channel 2's count (latched), EDX = the PM timer, RCX = the HPET main
 * counter (0 without one), read back to back. */
sample: mov     $0x80, %al                      /* latch channel 2 */
        outb    %al, $0x43
        inb     $0x42, %al
        mov     %al, %cl
        inb     $0x42, %al
        mov     %al, %ch
        movzwl  %cx, %r8d
        mov     pm_tmr(%rip), %edx
        in      %dx, %eax
        mov     %eax, %r9d
        xor     %ecx, %ecx
        mov     hpet_base(%rip), %rdi
        test    %rdi, %rdi
        jz      1f
        mov     0xf0(%rdi), %rcx
1:      mov     %r8d, %eax
        mov     %r9d, %edx
        ret

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
dsdt:           .quad 0
hpet_base:      .quad 0
t0_hpet:        .quad 0
pm_tmr:         .long 0
pm1a_cnt:       .long 0
s5_typ:         .long 0
t0_pit:         .long 0
t0_pm:          .long 0
ram_size:       .quad 0
boot_path:      .long 0
s_entry:        .asciz "lx: entry "
s_loader:       .asciz "lx: type_of_loader "
s_cmdline:      .asciz "lx: cmdline "
s_e820:         .asciz "lx: e820 "
s_initrd:       .asciz "lx: initrd "
s_ok:           .asciz "lx: ok\n"
s_noacpi:       .asciz "lx: no acpi\n"
s_rsdp:         .asciz "lx: rsdp "
s_madt:         .asciz "lx: madt cpus "
s_fadt:         .asciz "lx: fadt pm_tmr,pm1a_cnt "
s_hpet:         .asciz "lx: hpet "
s_timer:        .asciz "lx: timers "
s_s5:           .asciz "lx: s5\n"
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
