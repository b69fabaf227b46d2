/* Helpers of the multi-domain guests (dom_*.S): text and hex on the debug console (0x402),
 * PCI configuration mechanism #1, and a switch to flat 32-bit protected mode (the local APIC is at 0xFEE00000).
 * Include after _lib.S; the routines keep every register but the documented results. */

        .equ    DEBUGCON, 0x402

/* Print the NUL-terminated string at DS:label. */
.macro  PUTS    label
        push    %si
        mov     $\label, %si
        call    puts
        pop     %si
.endm

puts:   push    %ax
        push    %dx
        mov     $DEBUGCON, %dx
1:      lodsb
        test    %al, %al
        jz      2f
        outb    %al, %dx
        jmp     1b
2:      pop     %dx
        pop     %ax
        ret

/* Print the low CX nibbles of EAX in hex (most significant first). */
puthex: push    %eax
        push    %ebx
        push    %cx
        push    %dx
        mov     %eax, %ebx
        mov     $DEBUGCON, %dx
        push    %cx
        shl     $2, %cx                 /* rotate the wanted digits to the top */
        neg     %cx
        add     $32, %cx
        shl     %cl, %ebx
        pop     %cx
1:      rol     $4, %ebx
        mov     %bl, %al
        and     $0xf, %al
        add     $'0', %al
        cmp     $'9', %al
        jbe     2f
        add     $('a' - '9' - 1), %al
2:      outb    %al, %dx
        loop    1b
        pop     %dx
        pop     %cx
        pop     %ebx
        pop     %eax
        ret

putc:   push    %dx
        mov     $DEBUGCON, %dx
        outb    %al, %dx
        pop     %dx
        ret

/* Config dword at address EAX (0x80000000 | bus << 16 | devfn << 8 | reg) -> EAX. */
cfgrd:  push    %dx
        mov     $0xcf8, %dx
        outl    %eax, %dx
        mov     $0xcfc, %dx
        inl     %dx, %eax
        pop     %dx
        ret

/* Config dword at address EAX <- ECX. */
cfgwr:  push    %dx
        push    %eax
        mov     $0xcf8, %dx
        outl    %eax, %dx
        mov     $0xcfc, %dx
        mov     %ecx, %eax
        outl    %eax, %dx
        pop     %eax
        pop     %dx
        ret

/* Switch to flat 32-bit protected mode (interrupts must be off) and continue at `label`,
 * a .code32 label of this image: data selectors 0x08, code 0x10, stack at 0x7000. Link
 * addresses are offsets in segment F000, so 32-bit code adds IMAGE to absolute addresses.
 * Handlers in 32-bit code return by hand instead of IRET: this host's KVM emulates
 * privileged guest code, and its emulator has no protected-mode IRET. */
        .equ    IMAGE, 0xf0000
.macro  PM32    label
        mov     $gdt, %si               /* the GDT goes to RAM at 0x600 (ES = 0) first */
        mov     $0x600, %di
        mov     $(gdt_end - gdt) / 2, %cx
        rep movsw
        movw    $(gdt_end - gdt - 1), %es:0x5f8
        movl    $0x600, %es:0x5fa
        lgdtl   %es:0x5f8
        mov     %cr0, %eax
        or      $1, %al
        mov     %eax, %cr0
        ljmpl   $0x10, $(IMAGE + \label)
.endm

        .balign 8
gdt:    .quad   0
        .quad   0x00cf92000000ffff      /* 0x08: flat 4 GiB data */
        .quad   0x00cf9a000000ffff      /* 0x10: flat 4 GiB 32-bit code */
gdt_end:
