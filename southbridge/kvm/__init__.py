"""Running a machine's devices under Linux KVM: ioctls, guest memory, vCPU threads, loaders.

What this host's KVM (`kvm_pvm`, nested "pagetable virtual machine") was found to do, by
tiny experiments with the modules here (see tests/test_kvm_*.py, which keep checking it):

* API version 12. KVM_CAP_IMMEDIATE_EXIT, READONLY_MEM, SET_TSS_ADDR,
  SET_IDENTITY_MAP_ADDR, EXT_CPUID, INTERNAL_ERROR_DATA, X86_USER_SPACE_MSR and
  X86_MSR_FILTER are all present; NR_VCPUS recommends 2, MAX_VCPUS is 1024.
* A vCPU starts at the architectural reset state (CS=F000 base FFFF0000, IP=FFF0, real
  mode) and real-mode code at the reset vector runs, slowly (it is emulated); the first
  KVM_RUN costs about 0.5 ms, later exits 15-25 us.
* Without an in-kernel irqchip HLT exits to userspace (KVM_EXIT_HLT), KVM_INTERRUPT injects
  a vector when `ready_for_interrupt_injection` and IF are set, and
  `request_interrupt_window` produces KVM_EXIT_IRQ_WINDOW_OPEN.
* A signal to the vCPU thread ends KVM_RUN with EINTR; `immediate_exit` makes the next
  KVM_RUN return EINTR at once, which closes the race between "checked for work" and
  "entered the guest".
* Writes to a KVM_MEM_READONLY slot exit as KVM_EXIT_MMIO; fetching code from memory no
  slot backs ends in KVM_EXIT_INTERNAL_ERROR (emulation failure, instruction bytes given);
  a triple fault (an exception with an empty GDT/IDT in protected mode) exits as
  KVM_EXIT_SHUTDOWN.
* This host's KVM fails (emulation failure) on INT n, INT3, UD2 and a protected-mode IRET
  while it emulates privileged code, and on CMPXCHG16B and INVPCID, so CPUID hides
  CMPXCHG16B and INVPCID and the test guests avoid the others (the Multiboot guests return
  from interrupts with POPF; RET).
* A port-I/O exit costs about 14 us end to end from Python (50,000 OUTs in 0.7 s);
  SeaBIOS's POST reaches "No bootable device" in about 3 s.
* User-space MSR exits: a filter sends IA32_APIC_BASE and IA32_TSC_DEADLINE to us, but KVM
  ignores filters on the x2APIC range 0x800-0x8FF and, without its in-kernel APIC, raises
  #GP for them itself; exit reason INVAL brings them to userspace too (see `apic`).
  KVM_GET_TSC_KHZ gives the guest TSC rate; the TSC-deadline timer is exact to 1% with it.
* With --smp 4 SeaBIOS finds its APs through our LAPICs (INIT-SIPI-SIPI) in well under 1 s;
  APs wait for SIPI parked on a condition in their own threads (no KVM_SET_MP_STATE
  without an in-kernel irqchip).
* KVM offers kvmclock through CPUID 0x40000001; we hide it so guests time themselves with
  our PIT/RTC (SeaBIOS then calibrates the TSC against PIT channel 2).

Modules: `abi` (linux/kvm.h in ctypes), `system` (/dev/kvm), `vm` (memory slots), `vcpu`
(registers, CPUID, the run loop and interrupt injection), `apic` (a LAPIC model as a
vCPU's interrupt controller: INTA, MSR exits, xAPIC window), `session` (threads and how a run
ends), `loader` (BIOS images), `multiboot` (--kernel: Multiboot v1 without a BIOS),
`firmware` (the BIOS mapped and shadowed, the default guest), `guestbuild` (the bundled
assembly guests). `southbridge run` itself is `southbridge.commands.run`.
"""
