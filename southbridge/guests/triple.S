/* A triple fault: in protected mode with empty GDT and IDT (limit 0), loading DS with a
 * selector beyond the GDT limit raises #GP, which cannot be delivered (#DF), nor can the
 * #DF: the CPU shuts down. (INT n and UD2 would not do: this host's KVM fails to emulate
 * them while it emulates privileged code.) */
        .include "_lib.S"
        GUEST_ENTRY
        lgdt    %cs:empty_table
        lidt    %cs:empty_table
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        mov     $0x10, %ax
        mov     %ax, %ds
        EXIT    0x7f                    /* not reached */
empty_table:
        .word   0
        .long   0
