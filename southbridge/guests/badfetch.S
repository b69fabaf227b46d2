/* Jumps to 0xA0000, where no memory is mapped: KVM cannot fetch the instruction and
 * reports an emulation failure, which must end the run with a register dump. */
        .include "_lib.S"
        GUEST_ENTRY
        ljmp    $0xa000, $0
