/* Shared macros and routines of the bundled 32-bit Multiboot kernels (mb_*.S, linked at
 * 1 MiB by mb.ld). They talk to the QEMU-compatible test devices the way kvm-unit-tests and
 * QEMU's tests/multiboot programs do: isa-debug-exit at 0xF4 (status (value << 1) | 1),
 * the debug console at 0x402 for text the test compares, fw_cfg at 0x510/0x511.
 * Everything but the stack lives in .text (no paging: it is writable), so an image is one
 * contiguous file range, which the a.out-kludge guest relies on. */

        .equ    DEBUG_EXIT, 0xf4
        .equ    DEBUGCON, 0x402
        .equ    FW_CFG_SEL, 0x510
        .equ    FW_CFG_DATA, 0x511
        .equ    MB_HEADER_MAGIC, 0x1badb002
        .equ    MB_BOOT_MAGIC, 0x2badb002
        .equ    MB_PAGE_ALIGN_MEMINFO, 0x00000003

/* The Multiboot header: first in the image (section .multiboot, see mb.ld). */
.macro  MB_HEADER flags=MB_PAGE_ALIGN_MEMINFO
        .section .multiboot, "a"
        .align  4
        .long   MB_HEADER_MAGIC, \flags, -(MB_HEADER_MAGIC + \flags)
        .text
.endm

/* Entry: keep EAX/EBX (boot magic and info address) in memory, set up our own stack (the
 * spec leaves ESP undefined), clear the direction flag. */
.macro  MB_ENTRY
        .text
        .code32
        .globl  _start
_start:
        cld
        mov     $stack_top, %esp
        mov     %eax, boot_magic
        mov     %ebx, boot_info
.endm

/* End the run with status (code << 1) | 1 through a 32-bit write to isa-debug-exit. */
.macro  EXIT    code
        mov     $\code, %eax
        outl    %eax, $DEBUG_EXIT
        cli
99:     hlt
        jmp     99b
.endm

/* Return from an interrupt to the same privilege level without IRET: this host's KVM
 * emulates ring-0 code and its emulator implements IRET only in real mode (emulation
 * failure on protected-mode IRET, like INT n; see southbridge/kvm/__init__.py). The frame
 * [EIP, CS, EFLAGS] becomes [EFLAGS, EIP] for POPF; RET. CS is unchanged (one code
 * segment). An interrupt right after POPF nests cleanly on the remaining return address. */
.macro  IRET_SAME
        push    %eax
        mov     4(%esp), %eax           /* EIP */
        xchg    %eax, 12(%esp)          /* EFLAGS slot <- EIP, EAX <- EFLAGS */
        mov     %eax, 8(%esp)           /* CS slot <- EFLAGS */
        pop     %eax
        add     $4, %esp
        popfl
        ret
.endm

/* Print the NUL-terminated string `label` on the debug console. */
.macro  PUTS    label
        mov     $\label, %esi
        call    puts
.endm

        .text
        .code32
boot_magic:     .long 0
boot_info:      .long 0

/* puts: ESI = NUL-terminated string. Clobbers EAX, EDX, ESI. */
puts:   mov     $DEBUGCON, %dx
1:      lodsb
        test    %al, %al
        jz      2f
        outb    %al, %dx
        jmp     1b
2:      ret

/* putn: ESI = bytes, ECX = count (one string OUT). Clobbers ECX, EDX, ESI. */
putn:   mov     $DEBUGCON, %dx
        rep outsb
        ret

/* puthex: EAX as 8 hex digits. Clobbers nothing. */
puthex: pusha
        mov     %eax, %ebx
        mov     $8, %ecx
        mov     $DEBUGCON, %dx
1:      rol     $4, %ebx
        mov     %bl, %al
        and     $0xf, %al
        add     $'0', %al
        cmp     $'9', %al
        jbe     2f
        add     $('a' - '9' - 1), %al
2:      outb    %al, %dx
        loop    1b
        popa
        ret

/* putc: AL. Clobbers EDX. */
putc:   mov     $DEBUGCON, %dx
        outb    %al, %dx
        ret

/* strcmp: ESI, EDI NUL-terminated; ZF set when equal. Clobbers EAX, ESI, EDI. */
strcmp: lodsb
        scasb
        jne     1f
        test    %al, %al
        jnz     strcmp
1:      ret

/* fw_cfg_select: AX = key. Clobbers EDX. */
fw_cfg_select:
        mov     $FW_CFG_SEL, %dx
        outw    %ax, %dx
        ret

/* fw_cfg_read: EDI = destination, ECX = bytes, from the selected item (one string IN).
 * Clobbers ECX, EDX, EDI. */
fw_cfg_read:
        mov     $FW_CFG_DATA, %dx
        rep insb
        ret

        .section .bss
        .align  16
stack:  .skip   4096
stack_top:
        .text
