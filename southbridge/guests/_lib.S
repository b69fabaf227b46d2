/* Shared macros of the bundled real-mode guests (included with .include "_lib.S").
 * The image is the top 64 KiB of the "BIOS"; the reset vector far-jumps to F000:start, so
 * CS = DS = 0xF000 reach the image through its alias at 0xF0000. */

        .equ    DEBUG_EXIT, 0xf4        /* isa-debug-exit: status = (value << 1) | 1 */

/* The reset vector and the usual real-mode set-up: interrupts off, stack at 0:7000,
 * DS = the image, ES = 0 (RAM). */
.macro  GUEST_ENTRY
        .section .reset, "ax"
        .code16
        ljmp    $0xf000, $_start
        .text
        .code16
_start:
        cli
        cld
        xor     %ax, %ax
        mov     %ax, %ss
        mov     %ax, %es
        mov     $0x7000, %sp
        mov     $0xf000, %ax
        mov     %ax, %ds
.endm

/* End the run with status (code << 1) | 1 through isa-debug-exit, then stay stopped. */
.macro  EXIT    code
        mov     $\code, %al
        outb    %al, $DEBUG_EXIT
1:      cli
        hlt
        jmp     1b
.endm

/* Install real-mode IVT entry `vector` -> F000:handler (ES must be 0). */
.macro  SET_IVT vector, handler
        movw    $\handler, %es:(\vector * 4)
        movw    $0xf000, %es:(\vector * 4 + 2)
.endm
