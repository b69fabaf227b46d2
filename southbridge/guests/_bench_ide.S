/* The IDE read benchmark (benchmarks/ide.py): sequential reads of the primary master,
 * CHUNKS * 64 KiB from LBA 0 with the count taken from the Multiboot command line (its
 * last decimal number; 0 when absent), each chunk one command of 128 sectors, polled with nIEN
 * set: READ SECTORS with `rep insw` per 512-byte DRQ block (USE_DMA 0), or READ DMA through
 * one 64 KiB PRD entry, polling the bus master's active bit (USE_DMA 1). The PCI set-up is
 * a BIOS's (IDETIM decode, BMIBA 0xC000, I/O + bus master): QEMU needs it for the BAR and
 * ignores IDETIM. Ends with isa-debug-exit 0 (status 1); 4 on a timeout, 5 on an error. */
        .include "_mb.S"

        .equ    CFG_ADDR, 0xcf8
        .equ    CFG_DATA, 0xcfc
        .equ    IDE_FN, 0x80000900
        .equ    ATA, 0x1f0
        .equ    BM, 0xc000
        .equ    BUF, 0x200000
        .equ    SPIN, 100000000

        MB_HEADER
        MB_ENTRY
        mov     $(IDE_FN | 0x40), %eax
        mov     $CFG_ADDR, %dx
        outl    %eax, %dx
        mov     $0x8000, %ax
        mov     $CFG_DATA, %dx
        outw    %ax, %dx
        mov     $(IDE_FN | 0x20), %eax
        mov     $CFG_ADDR, %dx
        outl    %eax, %dx
        mov     $BM, %eax
        mov     $CFG_DATA, %dx
        outl    %eax, %dx
        mov     $(IDE_FN | 0x04), %eax
        mov     $CFG_ADDR, %dx
        outl    %eax, %dx
        mov     $5, %ax
        mov     $CFG_DATA, %dx
        outw    %ax, %dx
        mov     $2, %al                 /* nIEN */
        mov     $0x3f6, %dx
        outb    %al, %dx
        mov     $prd, %eax
        mov     $(BM + 4), %dx
        outl    %eax, %dx

        /* Chunks: the command line's last run of digits (loaders put the kernel's path
         * before the arguments, GRUB and ours; QEMU passes the arguments alone). */
        xor     %ebp, %ebp
        mov     boot_info, %ebx
        testl   $0x4, (%ebx)
        jz      2f
        mov     16(%ebx), %esi
1:      movzbl  (%esi), %eax
        inc     %esi
        test    %eax, %eax
        jz      2f
        sub     $'0', %eax
        cmp     $9, %eax
        jbe     3f
        xor     %ebp, %ebp              /* not a digit: a later number replaces this one */
        jmp     1b
3:      imul    $10, %ebp
        add     %eax, %ebp
        jmp     1b
2:      xor     %edi, %edi              /* EDI: the chunk's first LBA */
chunk:  test    %ebp, %ebp
        jz      done
        call    setup
        .if     USE_DMA
        mov     $0xc8, %al
        mov     $(ATA + 7), %dx
        outb    %al, %dx
        mov     $0x09, %al
        mov     $BM, %dx
        outb    %al, %dx
        mov     $SPIN, %ecx
        mov     $(BM + 2), %dx
1:      inb     %dx, %al
        test    $0x01, %al
        jz      2f
        loop    1b
        EXIT    4
2:      xor     %al, %al
        mov     $BM, %dx
        outb    %al, %dx
        call    wait_ready
        .else
        mov     $0x20, %al
        mov     $(ATA + 7), %dx
        outb    %al, %dx
        mov     $128, %ebx
        push    %edi
        mov     $BUF, %edi
3:      call    wait_ready
        mov     $256, %ecx
        mov     $ATA, %dx
        rep insw
        dec     %ebx
        jnz     3b
        pop     %edi
        call    wait_ready
        .endif
        add     $128, %edi
        dec     %ebp
        jmp     chunk
done:   EXIT    0

/* setup: LBA EDI, 128 sectors. Clobbers EAX, EDX. */
setup:  mov     %edi, %eax
        shr     $24, %eax
        and     $0x0f, %al
        or      $0xe0, %al
        mov     $(ATA + 6), %dx
        outb    %al, %dx
        mov     $128, %al
        mov     $(ATA + 2), %dx
        outb    %al, %dx
        mov     %edi, %eax
        mov     $(ATA + 3), %dx
        outb    %al, %dx
        shr     $8, %eax
        mov     $(ATA + 4), %dx
        outb    %al, %dx
        shr     $8, %eax
        mov     $(ATA + 5), %dx
        outb    %al, %dx
        ret

/* wait_ready: until BSY clears; exits 5 on ERR. Clobbers EAX, ECX, EDX. */
wait_ready:
        mov     $SPIN, %ecx
        mov     $(ATA + 7), %dx
1:      inb     %dx, %al
        test    $0x80, %al
        jz      2f
        loop    1b
        EXIT    4
2:      test    $0x01, %al
        jz      3f
        EXIT    5
3:      ret

        .align  8
prd:    .long   BUF, 0x80000000         /* 64 KiB (count 0), end of table */
