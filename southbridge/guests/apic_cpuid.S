/* CPUID.01H:EDX[9] follows IA32_APIC_BASE.EN (SDM vol. 3, 10.4.3; tests/test_kvm_apic.py).
 * Real mode: reports CPUID.01H:EDX as a dword OUT to TEST+0, then clears EN by WRMSR 0x1B
 * and reports it again, sets EN back and reports a third time; then isa-debug-exit 0x10
 * (status 0x21). */
        .include "_lib.S"
        .equ    TEST, 0x700

        GUEST_ENTRY
        call    report
        mov     $0x1b, %ecx
        rdmsr
        and     $~0x800, %eax           /* EN off: the APIC is globally disabled */
        wrmsr
        call    report
        mov     $0x1b, %ecx
        rdmsr
        or      $0x800, %eax            /* EN on again (xAPIC mode) */
        wrmsr
        call    report
        EXIT    0x10

report:
        mov     $1, %eax
        xor     %ecx, %ecx
        cpuid
        mov     %edx, %eax
        mov     $TEST, %dx
        outl    %eax, %dx
        ret
