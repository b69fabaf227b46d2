/* The bundled guest of `southbridge run`: a tour of the pc platform from inside, printed
 * on COM1 (0x3F8, 115200 8N1, polled):
 *   1. the PCI functions of bus 0 through configuration mechanism #1 (0xCF8/0xCFC),
 *      following the multi-function bit of the header type like an OS enumerator;
 *   2. the date and time from the MC146818 RTC (waiting while UIP is set; BCD or binary);
 *   3. for one RTC second (between two update-ended interrupts) the PIT's IRQ0 at 1000 Hz
 *      (mode 2, divisor 1193) and the RTC's periodic IRQ8 at 1024 Hz, delivered through the
 *      8259 pair programmed like a BIOS does (vectors 0x08 and 0x70);
 * then asks for a reset through the PIIX reset control register (0xCF9), which ends the
 * run (`southbridge run` implies --no-reboot for this guest). Real mode throughout. */
        .include "_lib.S"
        .equ    COM1, 0x3f8
        /* Counters in RAM, reached through SS (= 0) so handlers need no segment set-up. */
        .equ    PIT_COUNT, 0x500
        .equ    RTC_COUNT, 0x504
        .equ    UPDATES, 0x508
        .equ    PIT_START, 0x50c
        .equ    RTC_START, 0x510
        .equ    PIT_END, 0x514
        .equ    RTC_END, 0x518

        GUEST_ENTRY
        call    serial_init
        mov     $banner, %si
        call    puts
        call    pci_list
        call    rtc_date
        call    count_irqs
        mov     $bye, %si
        call    puts
        mov     $0xcf9, %dx             /* reset control: SRST | RST_CPU = hard reset */
        mov     $0x06, %al
        outb    %al, %dx
1:      cli
        hlt
        jmp     1b

/* ---- serial ---------------------------------------------------------------------- */
serial_init:
        mov     $COM1 + 3, %dx
        mov     $0x80, %al              /* DLAB */
        outb    %al, %dx
        mov     $COM1, %dx
        mov     $1, %al                 /* divisor 1: 115200 baud */
        outb    %al, %dx
        inc     %dx
        xor     %al, %al
        outb    %al, %dx
        mov     $COM1 + 3, %dx
        mov     $0x03, %al              /* 8N1, DLAB off */
        outb    %al, %dx
        mov     $COM1 + 1, %dx
        xor     %al, %al                /* no UART interrupts: we poll */
        outb    %al, %dx
        mov     $COM1 + 2, %dx
        mov     $0x07, %al              /* FIFOs on and cleared */
        outb    %al, %dx
        ret

putc:                                   /* AL = character */
        push    %dx
        push    %ax
        mov     $COM1 + 5, %dx
1:      inb     %dx, %al
        test    $0x20, %al              /* LSR.THRE */
        jz      1b
        pop     %ax
        mov     $COM1, %dx
        outb    %al, %dx
        pop     %dx
        ret

puts:                                   /* DS:SI = NUL-terminated string */
        push    %ax
        push    %si
1:      lodsb
        test    %al, %al
        jz      2f
        call    putc
        jmp     1b
2:      pop     %si
        pop     %ax
        ret

puthex:                                 /* the low CX (1-8) hex digits of EAX */
        pushal
        mov     %cx, %bx
        mov     $8, %cl
        sub     %bl, %cl
        shl     $2, %cl
        rol     %cl, %eax
        mov     %bx, %cx
1:      rol     $4, %eax
        push    %ax
        and     $0x0f, %al
        add     $'0', %al
        cmp     $'9', %al
        jbe     2f
        add     $7, %al
2:      call    putc
        pop     %ax
        loop    1b
        popal
        ret

putdec:                                 /* EAX unsigned, in decimal */
        pushal
        mov     $10, %ebx
        xor     %cx, %cx
1:      xor     %edx, %edx
        div     %ebx
        push    %dx
        inc     %cx
        test    %eax, %eax
        jnz     1b
2:      pop     %ax
        add     $'0', %al
        call    putc
        loop    2b
        popal
        ret

/* ---- PCI ------------------------------------------------------------------------- */
pci_read:                               /* EAX = config dword at bus 0, BX = devfn, CL = reg */
        push    %dx
        movzx   %bx, %eax
        shl     $8, %eax
        or      $0x80000000, %eax
        movzbl  %cl, %edx
        or      %edx, %eax
        mov     $0xcf8, %dx
        outl    %eax, %dx
        mov     $0xcfc, %dx
        inl     %dx, %eax
        pop     %dx
        ret

pci_list:
        mov     $pci_title, %si
        call    puts
        xor     %bx, %bx                /* devfn */
        xor     %di, %di                /* functions found */
next_fn:
        mov     $0x00, %cl
        call    pci_read
        cmp     $0xffff, %ax
        je      absent
        inc     %di
        mov     %eax, %ebp              /* device:vendor */
        mov     $pci_indent, %si
        call    puts
        mov     %bx, %ax
        shr     $3, %ax
        mov     $2, %cx
        call    puthex
        mov     $'.', %al
        call    putc
        mov     %bx, %ax
        and     $7, %ax
        mov     $1, %cx
        call    puthex
        mov     $' ', %al
        call    putc
        mov     %ebp, %eax
        mov     $4, %cx
        call    puthex
        mov     $':', %al
        call    putc
        mov     %ebp, %eax
        shr     $16, %eax
        mov     $4, %cx
        call    puthex
        mov     $pci_class, %si
        call    puts
        mov     $0x08, %cl
        call    pci_read
        shr     $16, %eax               /* class:subclass */
        mov     $4, %cx
        call    puthex
        mov     $crlf, %si
        call    puts
        test    $7, %bx
        jnz     advance
        mov     $0x0c, %cl
        call    pci_read
        test    $0x00800000, %eax       /* header type bit 7: multi-function */
        jnz     advance
        jmp     skip_device
absent: test    $7, %bx
        jnz     advance
skip_device:                            /* function 0 absent or single-function */
        or      $7, %bx
advance:
        inc     %bx
        cmp     $256, %bx
        jb      next_fn
        mov     %di, %ax
        movzwl  %ax, %eax
        mov     $pci_count, %si
        call    puts
        call    putdec
        mov     $pci_count2, %si
        call    puts
        ret

/* ---- RTC ------------------------------------------------------------------------- */
cmos_read:                              /* AL = index -> AL = value */
        outb    %al, $0x70
        inb     $0x71, %al
        ret

cmos_write:                             /* AH = index, AL = value */
        xchg    %al, %ah
        outb    %al, $0x70
        xchg    %al, %ah
        outb    %al, $0x71
        ret

rtc_field:                              /* AL = index: print it as two decimal digits */
        call    cmos_read
        test    $0x04, %bl              /* register B DM: binary; else BCD */
        jz      1f
        xor     %ah, %ah
        mov     $10, %dl
        div     %dl                     /* AL = tens, AH = units */
        shl     $4, %al
        or      %ah, %al
1:      mov     $2, %cx
        call    puthex
        ret

rtc_date:
        mov     $rtc_title, %si
        call    puts
1:      mov     $0x0a, %al
        call    cmos_read
        test    $0x80, %al              /* UIP: an update is about to change the time */
        jnz     1b
        mov     $0x0b, %al
        call    cmos_read
        mov     %al, %bl
        mov     $0x32, %al              /* century */
        call    rtc_field
        mov     $0x09, %al
        call    rtc_field
        mov     $'-', %al
        call    putc
        mov     $0x08, %al
        call    rtc_field
        mov     $'-', %al
        call    putc
        mov     $0x07, %al
        call    rtc_field
        mov     $' ', %al
        call    putc
        mov     $0x04, %al
        call    rtc_field
        mov     $':', %al
        call    putc
        mov     $0x02, %al
        call    rtc_field
        mov     $':', %al
        call    putc
        mov     $0x00, %al
        call    rtc_field
        mov     $crlf, %si
        call    puts
        ret

/* ---- interrupts ------------------------------------------------------------------ */
irq0:   incl    %ss:PIT_COUNT
        push    %ax
        mov     $0x20, %al              /* non-specific EOI to the master */
        outb    %al, $0x20
        pop     %ax
        iret

irq8:   pushal
        mov     $0x0c, %al              /* register C: which flags, and clears them */
        call    cmos_read
        test    $0x40, %al              /* PF */
        jz      1f
        incl    %ss:RTC_COUNT
1:      test    $0x10, %al              /* UF: a second has passed */
        jz      3f
        incl    %ss:UPDATES
        mov     %ss:PIT_COUNT, %eax
        mov     %ss:RTC_COUNT, %ebx
        cmpl    $1, %ss:UPDATES
        jne     2f
        mov     %eax, %ss:PIT_START
        mov     %ebx, %ss:RTC_START
        jmp     3f
2:      cmpl    $2, %ss:UPDATES
        jne     3f
        mov     %eax, %ss:PIT_END
        mov     %ebx, %ss:RTC_END
3:      mov     $0x20, %al
        outb    %al, $0xa0
        outb    %al, $0x20
        popal
        iret

count_irqs:
        mov     $irq_title, %si
        call    puts
        xor     %eax, %eax
        mov     %eax, %ss:PIT_COUNT
        mov     %eax, %ss:RTC_COUNT
        mov     %eax, %ss:UPDATES
        SET_IVT 0x08, irq0
        SET_IVT 0x70, irq8
        mov     $0x11, %al              /* ICW1: edge, cascade, ICW4 */
        outb    %al, $0x20
        outb    %al, $0xa0
        mov     $0x08, %al              /* ICW2: vector bases 0x08 and 0x70 */
        outb    %al, $0x21
        mov     $0x70, %al
        outb    %al, $0xa1
        mov     $0x04, %al              /* ICW3: slave on IR2 */
        outb    %al, $0x21
        mov     $0x02, %al
        outb    %al, $0xa1
        mov     $0x01, %al              /* ICW4: 8086 mode */
        outb    %al, $0x21
        outb    %al, $0xa1
        mov     $0xfa, %al              /* OCW1: IRQ0 and the cascade; IRQ8 */
        outb    %al, $0x21
        mov     $0xfe, %al
        outb    %al, $0xa1
        mov     $0x34, %al              /* PIT channel 0, lobyte/hibyte, mode 2 */
        outb    %al, $0x43
        mov     $(1193 & 0xff), %al     /* 1193182 Hz / 1193 = 1000.15 Hz */
        outb    %al, $0x40
        mov     $(1193 >> 8), %al
        outb    %al, $0x40
        mov     $0x0a, %al
        call    cmos_read
        and     $0xf0, %al
        or      $0x06, %al              /* rate 6: 1024 Hz */
        mov     %al, %ah
        mov     $0x0a, %al
        xchg    %al, %ah
        call    cmos_write
        mov     $0x0b, %al
        call    cmos_read
        or      $0x50, %al              /* PIE | UIE */
        mov     $0x0b, %ah
        call    cmos_write
        mov     $0x0c, %al
        call    cmos_read               /* clear stale flags */
        sti
1:      hlt
        cmpl    $2, %ss:UPDATES
        jb      1b
        cli
        mov     $0xff, %al              /* mask everything again */
        outb    %al, $0x21
        outb    %al, $0xa1
        mov     $0x0b, %al
        call    cmos_read
        and     $0xaf, %al              /* PIE and UIE off */
        mov     $0x0b, %ah
        call    cmos_write
        mov     $pit_result, %si
        call    puts
        mov     %ss:PIT_END, %eax
        sub     %ss:PIT_START, %eax
        call    putdec
        mov     $pit_result2, %si
        call    puts
        mov     $rtc_result, %si
        call    puts
        mov     %ss:RTC_END, %eax
        sub     %ss:RTC_START, %eax
        call    putdec
        mov     $rtc_result2, %si
        call    puts
        ret

banner:     .asciz "\r\nsouthbridge guest tour: real mode, COM1 at 0x3f8\r\n"
pci_title:  .asciz "PCI bus 0 (config mechanism #1 at 0xcf8/0xcfc):\r\n"
pci_indent: .asciz "  00:"
pci_class:  .asciz " class "
pci_count:  .asciz "  "
pci_count2: .asciz " functions\r\n"
rtc_title:  .asciz "RTC date and time: "
irq_title:  .asciz "Counting interrupts for one RTC second (8259: IRQ0 -> 0x08, IRQ8 -> 0x70)\r\n"
pit_result: .asciz "  PIT IRQ0: "
pit_result2: .asciz " interrupts (programmed 1000.15 Hz)\r\n"
rtc_result: .asciz "  RTC IRQ8: "
rtc_result2: .asciz " periodic interrupts (programmed 1024 Hz)\r\n"
crlf:       .asciz "\r\n"
bye:        .asciz "Tour done; resetting through 0xcf9.\r\n"
