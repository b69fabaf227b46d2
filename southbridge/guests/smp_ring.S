/* All vCPUs at once (tests/test_kvm_smp.py): the BSP starts the APs (INIT, SIPI to all
 * excluding self); every CPU, the BSP included, then sends ROUNDS fixed IPIs (vector 0x60)
 * to the next APIC ID in a ring, each after the previous one was handled, while it
 * receives as many from its predecessor, once all have enabled their APICs. RECV[id] counts a CPU's received IPIs (only its
 * own handler writes it), DONE the CPUs that finished. The BSP waits for DONE = N (TEST+8),
 * reports RECV[0..N-1] on TEST+0 and exits (isa-debug-exit 0x10). Lost or duplicated IPIs,
 * lost EOIs or a deadlock among the vCPU threads show as a wrong count or a timeout. */
        .include "_lib.S"
        .include "_apic.S"
        .equ    TEST, 0x700
        .equ    NCPU, 0x5f0
        .equ    DONE, 0x5f4
        .equ    READY, 0x5f8
        .equ    RECV, 0x600
        .equ    ROUNDS, 100

        GUEST_ENTRY
        PM_SWITCH pm
        .code32
pm:     PM_SEGMENTS 0x7000
        IDT_FILL
        SET_GATE 0x60, ping
        mov     $RECV, %edi
        xor     %eax, %eax
        mov     $16, %ecx
        rep stosl
        movl    $0, DONE
        movl    $0, READY
        mov     $TEST + 8, %dx
        inl     %dx, %eax
        mov     %eax, NCPU
        movl    $0xc4500, APIC_ICR_LO           /* INIT, all excluding self */
        movl    $0xc46f5, APIC_ICR_LO           /* SIPI: F500:0000 */
        call    ring
1:      pause
        mov     NCPU, %eax
        cmp     %eax, DONE
        jb      1b
        xor     %ebx, %ebx
2:      mov     RECV(,%ebx,4), %eax
        PUTL    TEST, %eax
        inc     %ebx
        cmp     NCPU, %ebx
        jb      2b
        cli
        EXIT    0x10

/* One CPU's part. A software-disabled APIC drops fixed IPIs, so nobody sends before every
 * CPU has enabled its APIC (READY = N). */
ring:   movl    $0x1ff, APIC_SVR
        lock incl READY
6:      pause
        mov     NCPU, %eax
        cmp     %eax, READY
        jb      6b
        mov     APIC_ID, %esi
        shr     $24, %esi
        lea     1(%esi), %eax                   /* EDI = successor's APIC ID */
        xor     %edx, %edx
        divl    NCPU
        mov     %edx, %edi
        sti
        mov     $1, %ebx
3:      mov     %edi, %eax
        shl     $24, %eax
        mov     %eax, APIC_ICR_HI
        movl    $0x0060, APIC_ICR_LO
4:      pause
        cmp     %ebx, RECV(,%edi,4)
        jb      4b
        inc     %ebx
        cmp     $ROUNDS, %ebx
        jbe     3b
        lock incl DONE
        ret

ping:   push    %eax
        mov     APIC_ID, %eax
        shr     $24, %eax
        incl    RECV(,%eax,4)
        movl    $0, APIC_EOI
        pop     %eax
        IRET32

ap_pm:  PM_SEGMENTS 0x7000
        mov     APIC_ID, %eax                   /* a stack per CPU below 0x7000 */
        shr     $24, %eax
        shl     $10, %eax
        sub     %eax, %esp
        call    ring
5:      hlt
        jmp     5b

        PM_TABLES

/* The APs' start-up code: CS = 0xF500, IP = 0, real mode. */
        .code16
        .org    0x5000
ap_start:
        ljmp    $0xf000, $ap_real
ap_real:
        PM_SWITCH ap_pm
