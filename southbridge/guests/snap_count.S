/* A guest whose result depends on all its state, for snapshot tests: 0x40000 rounds of
 * EBX = EBX * 31 + ECX with the running EBX added into RAM at 0:8000 each round, one OUT to
 * pc-testdev's scratch port per round (a real exit, so the run lasts seconds and can be
 * snapshotted mid-way), a '.' on the debug console every 0x1000 rounds; then EBX and the
 * RAM word as 8 hex digits each ("=XXXXXXXX XXXXXXXX") and isa-debug-exit 0x20. A
 * snapshotted and restored run prints the same final line as an uninterrupted one. */
        .include "_lib.S"
        .equ    DEBUGCON, 0x402
        .equ    SCRATCH, 0xe0
        .equ    ROUNDS, 0x40000

        GUEST_ENTRY
        xor     %ebx, %ebx
        xor     %ecx, %ecx
        movl    $0, %es:0x8000
1:      imul    $31, %ebx, %ebx
        add     %ecx, %ebx
        add     %ebx, %es:0x8000
        mov     %ecx, %eax
        outl    %eax, $SCRATCH
        inc     %ecx
        test    $0xfff, %ecx
        jnz     2f
        mov     $'.', %al
        mov     $DEBUGCON, %dx
        outb    %al, %dx
2:      cmp     $ROUNDS, %ecx
        jb      1b
        mov     $DEBUGCON, %dx
        mov     $'=', %al
        outb    %al, %dx
        mov     %ebx, %eax
        call    hex32
        mov     $' ', %al
        outb    %al, %dx
        mov     %es:0x8000, %eax
        call    hex32
        mov     $'\n', %al
        outb    %al, %dx
        EXIT    0x20

/* hex32: EAX as 8 hex digits on port DX. Clobbers EAX, ESI, CX. */
hex32:  mov     %eax, %esi
        mov     $8, %cx
3:      rol     $4, %esi
        mov     %esi, %eax
        and     $0xf, %al
        add     $'0', %al
        cmp     $'9', %al
        jbe     4f
        add     $('a' - '9' - 1), %al
4:      outb    %al, %dx
        loop    3b
        ret
