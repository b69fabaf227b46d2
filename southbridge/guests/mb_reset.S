/* A Multiboot kernel that resets the machine at once through the i8042 (command 0xFE
 * pulses the CPU reset line), to check that a reset boots the kernel again: there is no
 * BIOS at the reset vector, so only a reload and re-entry can run it a second time.
 * Exits with 2 when not entered with the boot magic. */
        .include "_mb.S"

        MB_HEADER
        MB_ENTRY
        cmpl    $MB_BOOT_MAGIC, boot_magic
        je      1f
        EXIT    2
1:      mov     $0xfe, %al
        outb    %al, $0x64
        cli
2:      hlt
        jmp     2b
