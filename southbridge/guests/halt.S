/* Halts with interrupts disabled: only the run's timeout can end it. */
        .include "_lib.S"
        GUEST_ENTRY
1:      hlt
        jmp     1b
