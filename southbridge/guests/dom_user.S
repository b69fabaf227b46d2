/* The first user domain's guest: finds the assigned device (10ec:8139) on bus 0, puts its
 * I/O BAR at 0xD000, reads its ID and drives its scratch register, then takes its interrupt
 * twice through INTx (PIRQ -> IRQ 11 on the 8259s, handler acks the device then EOIs), then
 * in 32-bit protected mode (the local APIC is at 0xFEE00000) once through MSI (vector 0x62)
 * and once through MSI-X (table entry 0 in BAR1 at 0xE0000000, vector 0x63). Reports
 * each step on the debug console; isa-debug-exit 0x12 when all went well, 0x31 without
 * the device, 0x32 / 0x33 without an MSI / MSI-X capability. */
        .include "_lib.S"
        .equ    BAR, 0xd000
        .equ    WANT, 0x813910ec

        GUEST_ENTRY
        jmp     main
        .include "_dom.S"

main:   SET_IVT 0x73, intx
        SET_IVT 0x62, msi
        xor     %ebx, %ebx
find:   mov     %ebx, %eax
        shl     $8, %eax
        or      $0x80000000, %eax
        call    cfgrd
        cmp     $WANT, %eax
        je      found
        add     $8, %ebx
        cmp     $0x100, %ebx
        jb      find
        PUTS    nodev
        EXIT    0x31

found:  mov     %ebx, %ebp
        shl     $8, %ebp
        or      $0x80000000, %ebp       /* config address of the device */
        PUTS    s_found
        mov     %bl, %al
        shr     $3, %al
        mov     $2, %cx
        call    puthex
        PUTS    nl

        mov     %ebp, %eax              /* BAR0 = 0xD000, then I/O, memory, bus master */
        or      $0x10, %al
        mov     $BAR, %ecx
        call    cfgwr
        mov     %ebp, %eax
        or      $0x04, %al
        mov     $7, %ecx
        call    cfgwr

        mov     $BAR, %dx
        inl     %dx, %eax
        PUTS    s_id
        mov     $8, %cx
        call    puthex
        PUTS    nl
        mov     $BAR + 4, %dx
        mov     $0x5a5aa5a5, %eax
        outl    %eax, %dx
        xor     %eax, %eax
        inl     %dx, %eax
        PUTS    s_scratch
        call    puthex
        PUTS    nl

        /* 8259s: vectors 0x08 / 0x70, only the cascade and IRQ 11 unmasked, IRQ 11 level */
        mov     $0x11, %al
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
        mov     $0xfb, %al
        outb    %al, $0x21
        mov     $0xf7, %al
        outb    %al, $0xa1
        mov     $0x4d1, %dx
        mov     $0x08, %al
        outb    %al, %dx
        mov     $0x80000860, %eax       /* PIIX3 PIRQA-D route -> IRQ 11 */
        mov     $0x0b0b0b0b, %ecx
        call    cfgwr

        xor     %di, %di                /* interrupts taken */
        call    ring
w1:     cli
        cmp     $1, %di
        jae     g1
        sti
        hlt
        jmp     w1
g1:     PUTS    s_intx1
        call    ring
w2:     cli
        cmp     $2, %di
        jae     g2
        sti
        hlt
        jmp     w2
g2:     PUTS    s_intx2

        mov     $0x05, %cl              /* MSI (capability ID 5) */
        call    findcap
        test    %esi, %esi
        jnz     gotmsi
        PUTS    s_nomsi
        EXIT    0x32
gotmsi: mov     %esi, %es:0x5000        /* kept in RAM for the 32-bit part */
        mov     %ebp, %eax
        or      %esi, %eax
        add     $4, %eax
        mov     $0xfee00000, %ecx       /* address: APIC 0, physical */
        call    cfgwr
        add     $4, %eax
        xor     %ecx, %ecx
        call    cfgwr
        add     $4, %eax
        mov     $0x62, %ecx             /* data: fixed, vector 0x62 */
        call    cfgwr
        mov     %ebp, %eax
        or      %esi, %eax
        call    cfgrd
        mov     %eax, %ecx
        or      $0x10000, %ecx          /* MSI enable, one vector */
        mov     %ebp, %eax
        or      %esi, %eax
        call    cfgwr
        mov     $0x11, %cl              /* MSI-X (ID 0x11): its table is in BAR1 */
        call    findcap
        mov     %esi, %es:0x5004
        mov     %ebp, %eax
        or      $0x14, %al
        mov     $0xe0000000, %ecx
        call    cfgwr
        cli
        PM32    pm

        .code32
.macro  GATE    vector, handler
        mov     $(IMAGE + \handler), %eax
        mov     %ax, 0x8000 + \vector * 8
        movw    $0x10, 0x8000 + \vector * 8 + 2
        movw    $0x8e00, 0x8000 + \vector * 8 + 4
        shr     $16, %eax
        mov     %ax, 0x8000 + \vector * 8 + 6
.endm
/* Wait with interrupts enabled until EDI (the handler's count) reaches n. */
.macro  WAIT32  n
1:      cli
        cmp     $\n, %edi
        jae     2f
        sti
        hlt
        jmp     1b
2:
.endm

pm:     mov     $0x08, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     %ax, %fs
        mov     %ax, %gs
        mov     $0x7000, %esp
        mov     $0x8000, %edi           /* IDT in RAM, 32-bit gates for 0x62 and 0x63 */
        xor     %eax, %eax
        mov     $0x200, %ecx
        rep stosl
        GATE    0x62, msi
        GATE    0x63, msi
        lidt    IMAGE + idt_desc
        movl    $0x1ff, 0xfee000f0      /* local APIC software enable */
        xor     %edi, %edi
        call    ring32                  /* MSI is on: the device signals vector 0x62 */
        WAIT32  1
        mov     $(IMAGE + s_msi), %esi
        call    puts32

        mov     0x5004, %esi            /* MSI-X: entry 0 -> vector 0x63, MSI off, MSI-X on */
        test    %esi, %esi
        jnz     msix
        mov     $(IMAGE + s_nomsix), %esi
        call    puts32
        EXIT    0x33
msix:   movl    $0xfee00000, 0xe0000000
        movl    $0, 0xe0000004
        movl    $0x63, 0xe0000008
        movl    $0, 0xe000000c          /* unmask the entry */
        mov     %ebp, %eax
        or      0x5000, %eax
        call    cfgrd32
        mov     %eax, %ecx
        and     $~0x10000, %ecx
        mov     %ebp, %eax
        or      0x5000, %eax
        call    cfgwr32
        mov     %ebp, %eax
        or      0x5004, %eax
        call    cfgrd32
        mov     %eax, %ecx
        or      $0x80000000, %ecx
        mov     %ebp, %eax
        or      0x5004, %eax
        call    cfgwr32
        xor     %edi, %edi
        call    ring32
        WAIT32  1
        mov     $(IMAGE + s_msix), %esi
        call    puts32
        EXIT    0x12

msi:    inc     %edi
        movl    $0, 0xfee000b0          /* local APIC EOI */
        pop     %ecx                    /* IRET by hand (see _dom.S): EIP, CS, EFLAGS */
        add     $4, %esp
        popfl
        jmp     *%ecx

ring32: xor     %eax, %eax              /* doorbell, vector 0 */
        mov     $BAR + 8, %dx
        outl    %eax, %dx
        ret

puts32: mov     $DEBUGCON, %dx
1:      lodsb
        test    %al, %al
        jz      2f
        outb    %al, %dx
        jmp     1b
2:      ret

cfgrd32:
        mov     $0xcf8, %dx
        outl    %eax, %dx
        mov     $0xcfc, %dx
        inl     %dx, %eax
        ret

cfgwr32:
        mov     $0xcf8, %dx
        outl    %eax, %dx
        mov     $0xcfc, %dx
        mov     %ecx, %eax
        outl    %eax, %dx
        ret

idt_desc:
        .word   0x800 - 1
        .long   0x8000
        .code16

/* Capability offset of ID CL of the device at EBP -> ESI (0 when absent). */
findcap:
        push    %eax
        mov     %ebp, %eax
        or      $0x34, %al
        call    cfgrd
        movzbl  %al, %esi
1:      and     $0xfc, %si
        jz      2f
        mov     %ebp, %eax
        or      %esi, %eax
        call    cfgrd
        cmp     %cl, %al
        je      2f
        movzbl  %ah, %esi
        jmp     1b
2:      pop     %eax
        ret

ring:   push    %eax
        push    %dx
        mov     $BAR + 8, %dx
        xor     %eax, %eax
        outl    %eax, %dx
        pop     %dx
        pop     %eax
        ret

intx:   push    %eax
        push    %dx
        mov     $BAR + 12, %dx          /* ack the device, then EOI slave and master */
        outl    %eax, %dx
        inc     %di
        mov     $0x20, %al
        outb    %al, $0xa0
        outb    %al, $0x20
        pop     %dx
        pop     %eax
        iret

nodev:  .asciz  "no device\n"
s_found: .asciz "found 00:"
s_id:   .asciz  "id "
s_scratch: .asciz "scratch "
s_intx1: .asciz "intx 1\n"
s_intx2: .asciz "intx 2\n"
s_nomsi: .asciz "no msi\n"
s_msi:  .asciz  "msi 1\n"
s_msix: .asciz  "msix 1\n"
s_nomsix: .asciz "no msi-x\n"
nl:     .asciz  "\n"
