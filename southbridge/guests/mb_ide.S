/* IDE disk reads through PIO and bus-master DMA (ATA/ATAPI-6, SFF-8038i), polled: the
 * kernel enables the PIIX3 IDE function's decode (IDETIM 0x8000, BMIBA 0xC000, command I/O
 * + bus master, as a BIOS would), reads LBA 1-4 with READ SECTORS into 0x200000 (nIEN set)
 * and with READ DMA through a one-entry PRD table into 0x300000, prints
 * "pio_sum=HEX\ndma_sum=HEX\nbm_status=HEX\nata_status=HEX\n" (32-bit byte sums) on the
 * debug console, then exits with 0x23 (status 0x47).
 * Failures: 4 BSY never clears, 5 no DRQ for a PIO block, 6 the DMA interrupt never came. */
        .include "_mb.S"

        .equ    CFG_ADDR, 0xcf8
        .equ    CFG_DATA, 0xcfc
        .equ    IDE_FN, 0x80000900      /* bus 0, device 1, function 1 */
        .equ    ATA, 0x1f0
        .equ    ATA_CTL, 0x3f6
        .equ    BM, 0xc000
        .equ    PIO_BUF, 0x200000
        .equ    DMA_BUF, 0x300000
        .equ    SECTORS, 4
        .equ    SPIN, 20000000

        MB_HEADER
        MB_ENTRY
        mov     $(IDE_FN | 0x40), %eax  /* IDETIM primary: IDE decode enable */
        mov     $CFG_ADDR, %dx
        outl    %eax, %dx
        mov     $0x8000, %ax
        mov     $CFG_DATA, %dx
        outw    %ax, %dx
        mov     $(IDE_FN | 0x20), %eax  /* BMIBA */
        mov     $CFG_ADDR, %dx
        outl    %eax, %dx
        mov     $BM, %eax
        mov     $CFG_DATA, %dx
        outl    %eax, %dx
        mov     $(IDE_FN | 0x04), %eax  /* command: I/O space, bus master */
        mov     $CFG_ADDR, %dx
        outl    %eax, %dx
        mov     $5, %ax
        mov     $CFG_DATA, %dx
        outw    %ax, %dx
        mov     $2, %al                 /* nIEN: polled */
        mov     $ATA_CTL, %dx
        outb    %al, %dx

        /* PIO: READ SECTORS, LBA 1, 4 sectors, one DRQ block each. */
        call    setup_lba
        mov     $0x20, %al
        mov     $(ATA + 7), %dx
        outb    %al, %dx
        mov     $PIO_BUF, %edi
        mov     $SECTORS, %ebx
1:      call    wait_not_busy
        test    $0x08, %al
        jnz     2f
        EXIT    5
2:      mov     $256, %ecx
        mov     $ATA, %dx
        rep insw
        dec     %ebx
        jnz     1b
        call    wait_not_busy

        /* DMA: one PRD entry, READ DMA, start the engine (write to memory), poll its
         * interrupt bit. That bit latches INTRQ's rising edge, so nIEN is cleared first
         * (EFLAGS.IF stays clear and the 8259 is not programmed: no interrupt reaches the
         * CPU). */
        xor     %al, %al
        mov     $ATA_CTL, %dx
        outb    %al, %dx
        mov     $prd, %eax
        mov     $(BM + 4), %dx
        outl    %eax, %dx
        call    setup_lba
        mov     $0xc8, %al
        mov     $(ATA + 7), %dx
        outb    %al, %dx
        mov     $0x09, %al
        mov     $BM, %dx
        outb    %al, %dx
        mov     $SPIN, %ecx
        mov     $(BM + 2), %dx
3:      inb     %dx, %al
        test    $0x04, %al
        jnz     4f
        loop    3b
        EXIT    6
4:      movzbl  %al, %eax
        mov     %eax, bm_status
        xor     %al, %al                /* stop the engine */
        mov     $BM, %dx
        outb    %al, %dx
        call    wait_not_busy
        movzbl  %al, %eax
        mov     %eax, ata_status

        PUTS    s_pio
        mov     $PIO_BUF, %esi
        call    sum
        call    puthex
        PUTS    s_dma
        mov     $DMA_BUF, %esi
        call    sum
        call    puthex
        PUTS    s_bm
        mov     bm_status, %eax
        call    puthex
        PUTS    s_ata
        mov     ata_status, %eax
        call    puthex
        mov     $'\n', %al
        call    putc
        EXIT    0x23

/* setup_lba: LBA 1, SECTORS sectors, device 0, LBA mode. Clobbers EAX, EDX. */
setup_lba:
        mov     $0xe0, %al
        mov     $(ATA + 6), %dx
        outb    %al, %dx
        mov     $SECTORS, %al
        mov     $(ATA + 2), %dx
        outb    %al, %dx
        mov     $1, %al
        mov     $(ATA + 3), %dx
        outb    %al, %dx
        xor     %al, %al
        mov     $(ATA + 4), %dx
        outb    %al, %dx
        mov     $(ATA + 5), %dx
        outb    %al, %dx
        ret

/* wait_not_busy: AL = the status once BSY is clear. Clobbers ECX, EDX. */
wait_not_busy:
        mov     $SPIN, %ecx
        mov     $(ATA + 7), %dx
1:      inb     %dx, %al
        test    $0x80, %al
        jz      2f
        loop    1b
        EXIT    4
2:      ret

/* sum: EAX = the 32-bit sum of the SECTORS * 512 bytes at ESI. Clobbers ECX, EDX, ESI. */
sum:    mov     $(SECTORS * 512), %ecx
        xor     %edx, %edx
        xor     %eax, %eax
1:      lodsb
        add     %eax, %edx
        loop    1b
        mov     %edx, %eax
        ret

        .align  8
prd:    .long   DMA_BUF, 0x80000000 | (SECTORS * 512)
bm_status:      .long 0
ata_status:     .long 0
s_pio:  .asciz "pio_sum="
s_dma:  .asciz "\ndma_sum="
s_bm:   .asciz "\nbm_status="
s_ata:  .asciz "\nata_status="
