/* Interrupt rates against host time (tests/test_kvm_guest.py). TEST+4 reads the source:
 * 0 = PIT channel 0, mode 2, divisor 1193 (1000.15 Hz) on IRQ0 -> vector 0x08;
 * 1 = RTC periodic interrupt, rate 6 (1024 Hz) on IRQ8 -> vector 0x70.
 * The guest writes TEST+5 at the first interrupt and again after COUNT more, so the test
 * device timestamps exactly COUNT periods with the host clock; then isa-debug-exit 0x10. */
        .include "_lib.S"
        .equ    TEST, 0x700
        .equ    COUNT, 1000
        .equ    TICKS, 0x500            /* in RAM, through SS = 0 */

        GUEST_ENTRY
        movl    $0, %ss:TICKS
        SET_IVT 0x08, tick_pit
        SET_IVT 0x70, tick_rtc
        mov     $0x11, %al              /* 8259 pair: ICW1-4 like a BIOS */
        outb    %al, $0x20
        outb    %al, $0xa0
        mov     $0x08, %al
        outb    %al, $0x21
        mov     $0x70, %al
        outb    %al, $0xa1
        mov     $0x04, %al
        outb    %al, $0x21
        mov     $0x02, %al
        outb    %al, $0xa1
        mov     $0x01, %al
        outb    %al, $0x21
        outb    %al, $0xa1
        mov     $TEST + 4, %dx
        inb     %dx, %al
        test    %al, %al
        jnz     use_rtc
        mov     $0xfe, %al              /* IRQ0 only */
        outb    %al, $0x21
        mov     $0xff, %al
        outb    %al, $0xa1
        mov     $0x34, %al              /* channel 0, lobyte/hibyte, mode 2 */
        outb    %al, $0x43
        mov     $(1193 & 0xff), %al
        outb    %al, $0x40
        mov     $(1193 >> 8), %al
        outb    %al, $0x40
        jmp     wait
use_rtc:
        mov     $0xfb, %al              /* cascade */
        outb    %al, $0x21
        mov     $0xfe, %al              /* IRQ8 */
        outb    %al, $0xa1
        mov     $0x0a, %al
        outb    %al, $0x70
        mov     $0x26, %al              /* divider on, rate 6: 1024 Hz */
        outb    %al, $0x71
        mov     $0x0b, %al
        outb    %al, $0x70
        inb     $0x71, %al
        or      $0x40, %al              /* PIE */
        mov     %al, %ah
        mov     $0x0b, %al
        outb    %al, $0x70
        mov     %ah, %al
        outb    %al, $0x71
        mov     $0x0c, %al
        outb    %al, $0x70
        inb     $0x71, %al
wait:   sti
1:      hlt
        cmpl    $COUNT + 1, %ss:TICKS
        jb      1b
        cli
        EXIT    0x10

/* Count one interrupt; mark the first and the (COUNT+1)th on TEST+5. */
count:  incl    %ss:TICKS
        cmpl    $1, %ss:TICKS
        je      2f
        cmpl    $COUNT + 1, %ss:TICKS
        jne     3f
2:      mov     $TEST + 5, %dx
        outb    %al, %dx
3:      ret

tick_pit:
        pushal
        call    count
        mov     $0x20, %al
        outb    %al, $0x20
        popal
        iret

tick_rtc:
        pushal
        mov     $0x0c, %al              /* read C: acknowledges the periodic flag */
        outb    %al, $0x70
        inb     $0x71, %al
        call    count
        mov     $0x20, %al
        outb    %al, $0xa0
        outb    %al, $0x20
        popal
        iret
