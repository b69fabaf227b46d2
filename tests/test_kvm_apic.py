"""The local APIC as a vCPU's interrupt controller under KVM (issue 6).

Unit tests of the vCPU side (`southbridge.kvm.apic`: INTA order, MSR exits, the per-vCPU
xAPIC window) run anywhere on the manual clock. Guest-level tests run tiny 32-bit guests
(southbridge/guests/apic_*.S) that program the APIC through its MMIO window and MSRs and
report through a probe at port 0x700; they are skipped with the reason when this host
cannot run KVM guests."""

from __future__ import annotations

import ctypes
import struct
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.clock import HostClock, ManualClock
from southbridge.core.device import BusDevice
from southbridge.devices.apicbus import DM_NMI, ApicMessage
from southbridge.kvm import abi, guestbuild
from southbridge.kvm.apic import VcpuApic
from southbridge.kvm.loader import load_bios
from southbridge.kvm.session import KvmSession
from southbridge.kvm.testing import kvm_unavailable_reason
from southbridge.kvm.vcpu import RunEnd, dispatch_mmio
from southbridge.machine.pc import PcConfig, PcMachine

_reason = kvm_unavailable_reason()
needs_kvm = pytest.mark.skipif(_reason is not None, reason=_reason or "")

TEST_PORT = 0x700
EXIT_OK = 0x21  # isa-debug-exit 0x10: (0x10 << 1) | 1


class Probe(BusDevice):
    """The guests' test device: OUT at offset 0 appends a report value, offset 5 records a
    host timestamp; IN at offset 4 reads the mode, offset 8 a 32-bit parameter."""

    io_sizes = frozenset({1, 2, 4})

    def __init__(self, mode: int = 0, param: int = 0) -> None:
        self.mode = mode
        self.param = param
        self.values: list[int] = []
        self.stamps: list[float] = []

    def read(self, offset: int, size: int) -> int:
        if offset == 4:
            return self.mode
        if offset == 8:
            return self.param & 0xFFFFFFFF
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            self.values.append(value)
        elif offset == 5:
            self.stamps.append(time.monotonic())


def run_guest(
    guest: str,
    mode: int = 0,
    param: int = 0,
    smp: int = 1,
    timeout: float = 10.0,
    prepare: Callable[[PcMachine, Probe], None] | None = None,
) -> tuple[RunEnd, Probe, PcMachine, float]:
    """Run `guest` on a pc machine with `smp` vCPUs, each with its LAPIC as interrupt
    controller; `prepare` sees the machine once the session exists (TSC rate known)."""
    m = PcMachine(PcConfig(memory_mb=16, smp=smp), clock=HostClock())
    probe = Probe(mode, param)
    m.ports.register(TEST_PORT, 12, probe, "probe")
    load_bios(m, str(guestbuild.build(guest)))
    start = time.monotonic()
    with KvmSession(m, cpus=smp) as s:
        assert all(isinstance(v.irq, VcpuApic) for v in s.vcpus)
        if prepare is not None:
            prepare(m, probe)
        end = s.run(timeout)
    return end, probe, m, time.monotonic() - start


@pytest.mark.kvm
@pytest.mark.timing
@needs_kvm
def test_lapic_one_shot_timer_fires_once_after_count_times_divisor() -> None:
    """SDM 10.5.4: one-shot mode counts the initial count down at the bus clock / divide
    configuration (1 GHz / 16 here) and interrupts once at zero; the current count then
    reads 0. 62,500,000 x 16 ns = 1 s of host time, within 1%."""
    end, probe, _, _ = run_guest("apic_timer", mode=0, param=62_500_000)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert len(probe.stamps) == 2
    assert probe.stamps[1] - probe.stamps[0] == pytest.approx(1.0, rel=0.01)
    assert probe.values == [0]


@pytest.mark.kvm
@pytest.mark.timing
@needs_kvm
def test_lapic_periodic_timer_runs_at_the_programmed_rate() -> None:
    """SDM 10.5.4: periodic mode reloads the initial count at zero; 2,000,000 at divide-by-2
    is 250 Hz, so 250 periods take 1 s of host time within 1%. (At 1 kHz this host's
    occasional >1 ms wake-up latency makes a tick find its vector still in IRR, and an IRR
    bit holds one interrupt: the tick is lost as on hardware, and the rate drifts.)"""
    end, probe, _, _ = run_guest("apic_timer", mode=1, param=2_000_000)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert len(probe.stamps) == 2
    assert probe.stamps[1] - probe.stamps[0] == pytest.approx(1.0, rel=0.01)


@pytest.mark.kvm
@pytest.mark.timing
@needs_kvm
def test_tsc_deadline_timer_fires_at_the_guest_tsc_deadline() -> None:
    """SDM 10.5.4.1: in TSC-deadline mode the timer interrupts when the TSC reaches
    IA32_TSC_DEADLINE, which then reads 0. The deadline is RDTSC + half a second of guest
    TSC ticks (KVM_GET_TSC_KHZ): the interrupt comes 0.5 s of host time later, within 1%."""

    def half_second(m: PcMachine, probe: Probe) -> None:
        assert m.lapics[0].tsc_hz > 10_000_000  # the guest TSC rate, not the 1 GHz default
        probe.param = m.lapics[0].tsc_hz // 2

    end, probe, _, _ = run_guest("apic_timer", mode=2, prepare=half_second)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert len(probe.stamps) == 2
    assert probe.stamps[1] - probe.stamps[0] == pytest.approx(0.5, rel=0.01)
    assert probe.values == [0]


@pytest.mark.kvm
@needs_kvm
def test_self_ipi_waits_for_the_tpr_and_moves_irr_to_isr() -> None:
    """SDM 10.8.3.1 / 10.8.4: a fixed self-IPI (ICR shorthand 01) whose priority class (4)
    does not exceed the TPR's (5) stays in IRR; lowering the TPR delivers it, the handler
    sees it in ISR with PPR = its class, and EOI clears ISR."""
    end, probe, m, _ = run_guest("apic_ipi", mode=0)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    bit = 1 << (0x41 - 64)  # IRR and ISR at +0x20 hold vectors 64-95
    assert probe.values == [bit, 0, bit, 0x40, 1, 0]
    assert m.lapics[0].isr == 0 and m.lapics[0].irr == 0


@pytest.mark.kvm
@needs_kvm
def test_x2apic_msrs_self_ipi_and_gp_on_reserved_bits() -> None:
    """SDM 10.12: IA32_APIC_BASE EXTD switches to x2APIC mode: the ID MSR reads the x2APIC
    ID, the MMIO window stops decoding (all ones), SELF IPI (0x83F) and the 64-bit ICR
    (0x830) deliver, EOI is WRMSR 0x80B, and a non-zero EOI write raises #GP (10.12.1.2)."""
    end, probe, m, _ = run_guest("apic_ipi", mode=1)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert probe.values == [0, 0xFFFFFFFF, 1, 2, 0xD]
    assert m.lapics[0].x2apic


@pytest.mark.kvm
@needs_kvm
def test_ioapic_edge_level_remote_irr_and_masking_through_testdev_gsi_ports() -> None:
    """82093AA datasheet 3.2.4 and SDM 10.8.5: an edge pin delivers once per rising edge; a
    level pin sets remote IRR when delivered, the LAPIC's EOI broadcast clears it, and a
    line still asserted then delivers again (no lost interrupt); a masked pin delivers
    nothing and sets no remote IRR, and unmasking an asserted level pin delivers it. Driven
    through pc-testdev's 0x2000+N ports, which set GSI N on the PIC and the IOAPIC."""
    end, probe, m, _ = run_guest("apic_ioapic", mode=0)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    level, remote_irr, masked = 1 << 15, 1 << 14, 1 << 16
    assert probe.values == [
        2,  # two pulses on pin 10: two interrupts
        level | remote_irr | 0x51,  # first run of the pin 11 handler
        level | remote_irr | 0x51,  # re-delivered after EOI: the line was still high
        2,
        level | 0x51,  # EOI with the line low: remote IRR clear
        0,  # masked pin 12 raised: nothing delivered
        masked | level | 0x52,  # ... and no remote IRR
        1,  # unmasked while asserted: delivered once
    ]
    assert m.lapics[0].isr == 0


@pytest.mark.kvm
@needs_kvm
def test_msi_from_the_demo_device_reaches_the_guest_handler() -> None:
    """PCI 3.0 6.8.1 / SDM 10.11: with MSI enabled the demo device signals each INT_RAISE as
    a memory write of the programmed data (vector 0x55, fixed) to 0xFEE00000 (APIC 0); the
    guest's handler runs once per raise and INT_ACK clears INT_STATUS."""
    end, probe, _, _ = run_guest("apic_ioapic", mode=1)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert probe.values == [1, 2, 0]


@pytest.mark.kvm
@needs_kvm
def test_the_pic_reaches_the_cpu_through_lint0_extint() -> None:
    """SDM 10.5.1 / MP spec virtual wire mode: after reset the BSP's LINT0 is ExtINT, so the
    8259's INTR reaches the CPU through the local APIC and the vector comes from the PIC's
    INTA cycle, bypassing the APIC's IRR/ISR. The rate guest's 1001 PIT interrupts through
    the 8259 (IRQ0 -> vector 0x08) all arrive that way."""
    acks: list[int] = []

    def count_acks(m: PcMachine, probe: Probe) -> None:
        inta = m.pic.acknowledge

        def acknowledge() -> int:
            vector = inta()
            acks.append(vector)
            return vector

        m.pic.acknowledge = acknowledge  # type: ignore[method-assign]

    end, _, m, _ = run_guest("rate", mode=0, prepare=count_acks)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert acks.count(0x08) >= 1001
    assert m.lapics[0].lint0_extint()
    assert m.lapics[0].isr == 0 and m.lapics[0].irr == 0


# -- the vCPU side without a CPU (manual clock) ---------------------------------------------


class FakePic:
    """The 8259 pair's CPU side: INTA returns `vector`."""

    def __init__(self, vector: int = 0x30) -> None:
        self.vector = vector
        self.acks = 0

    def acknowledge(self) -> int:
        self.acks += 1
        return self.vector


def _cpu(smp: int = 1, index: int = 0) -> tuple[PcMachine, VcpuApic, FakePic]:
    m = PcMachine(PcConfig(memory_mb=2, smp=smp), clock=ManualClock())
    pic = FakePic()
    return m, VcpuApic(m.lapics[index], pic), pic


def _msr(apic: VcpuApic, index: int, write: bool = False, data: int = 0) -> tuple[int, int]:
    """One KVM_EXIT_X86_RDMSR/WRMSR through a kvm_run structure: (error, data)."""
    run = abi.kvm_run()
    run.exit.msr.index = index
    run.exit.msr.data = data
    run.exit.msr.error = 0xFF  # must be overwritten
    apic.handle_msr(run, write)
    return run.exit.msr.error, run.exit.msr.data


def test_inta_serves_the_apic_irr_before_the_pic() -> None:
    """QEMU's order (apic_get_interrupt first, then the PIC): with a fixed vector in IRR and
    the PIC asserting LINT0 (ExtINT), INTA returns the APIC's vector and moves it to ISR;
    the PIC's vector comes next from the PIC's own INTA, never touching IRR/ISR."""
    _, apic, pic = _cpu()
    lapic = apic.lapic
    lapic.svr = 0x1FF
    lapic.accept(0x41)
    lapic.set_lint0(True)
    assert apic.maskable_pending() and lapic.intr.level
    assert apic.acknowledge() == 0x41 and lapic.isr == 1 << 0x41
    lapic.eoi()
    assert apic.acknowledge() == 0x30 and pic.acks == 1
    assert lapic.isr == 0 and lapic.irr == 0


def test_inta_with_nothing_pending_is_the_spurious_vector() -> None:
    """SDM 10.9: an INTA that finds nothing deliverable returns the SVR's spurious vector
    and sets nothing in ISR."""
    _, apic, pic = _cpu()
    apic.lapic.svr = 0x1EF
    assert apic.acknowledge() == 0xEF
    assert apic.lapic.isr == 0 and pic.acks == 0


def test_msr_exits_answer_from_the_model_and_gp_where_the_cpu_faults() -> None:
    """SDM 10.4.4 / 10.12: IA32_APIC_BASE reads 0xFEE00000 | EN | BSP; x2APIC MSRs fault
    (#GP: exit error 1) in xAPIC mode and answer after EXTD is set; an MSR that is not the
    APIC's faults as KVM would have."""
    _, apic, _ = _cpu()
    assert _msr(apic, 0x1B) == (0, 0xFEE00900)
    assert _msr(apic, 0x802)[0] == 1
    assert _msr(apic, 0x1B, True, 0xFEE00D00)[0] == 0
    assert apic.lapic.x2apic
    assert _msr(apic, 0x802) == (0, 0)
    assert _msr(apic, 0x80B, True, 1)[0] == 1  # EOI takes only 0
    assert _msr(apic, 0x1B, True, 0xFEE00900)[0] == 1  # x2APIC -> xAPIC must pass disabled
    assert _msr(apic, 0x1234)[0] == 1


def test_the_xapic_window_follows_ia32_apic_base_per_vcpu() -> None:
    """SDM 10.4.5: the window moves with IA32_APIC_BASE, is not decoded when the APIC is
    disabled or in x2APIC mode; each vCPU's MMIO exit reaches its own LAPIC (APIC ID 1
    reads 0x01000000 on vCPU 1 at the same address as CPU 0's window)."""
    m, apic, _ = _cpu(smp=2, index=1)
    assert apic.window(0xFEE00020) == 0x20
    assert apic.window(0xFEE01000) is None
    buf = bytearray(ctypes.sizeof(abi.kvm_run))
    off = abi.kvm_run.exit.offset
    struct.pack_into("<Q8sIB", buf, off, 0xFEE00020, bytes(8), 4, 0)
    dispatch_mmio(m, buf, apic)
    assert int.from_bytes(buf[off + 8 : off + 12], "little") == 0x01000000
    assert _msr(apic, 0x1B, True, 0xFED00800)[0] == 0  # relocate (AP: no BSP bit)
    assert apic.window(0xFED00030) == 0x30 and apic.window(0xFEE00030) is None
    assert _msr(apic, 0x1B, True, 0xFED00000)[0] == 0  # hardware disable
    assert apic.window(0xFED00030) is None


def test_halt_wakes_for_maskable_interrupts_only_with_if_set() -> None:
    """SDM vol. 2 HLT: an INTR wakes a halted CPU only with IF set; NMI and INIT always."""
    _, apic, _ = _cpu()
    lapic = apic.lapic
    lapic.svr = 0x1FF
    assert not apic.wakes_from_halt(True)
    lapic.accept(0x50)
    assert apic.wakes_from_halt(True) and not apic.wakes_from_halt(False)
    lapic.ack()
    lapic.pending_nmi = True
    assert apic.wakes_from_halt(False)


_MSR_INDEXES = st.one_of(
    st.sampled_from([0x1B, 0x6E0, 0x10, 0x3A]),
    st.integers(0x800, 0x8FF),
    st.integers(0, 0xFFFFFFFF),
)
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("rdmsr"), _MSR_INDEXES, st.just(0)),
        st.tuples(st.just("wrmsr"), _MSR_INDEXES, st.integers(0, (1 << 64) - 1)),
        st.tuples(st.just("mmio-r"), st.integers(0, 0xFFF), st.sampled_from([1, 2, 4, 8])),
        st.tuples(st.just("mmio-w"), st.integers(0, 0xFFF), st.integers(0, 0xFFFFFFFF)),
        st.tuples(st.just("inta"), st.just(0), st.just(0)),
        st.tuples(st.just("lint0"), st.booleans(), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(_OPS)
def test_any_exit_sequence_never_raises_and_state_round_trips(
    ops: list[tuple[str, int, int]],
) -> None:
    """Whatever MSR, MMIO and INTA exits a guest causes: nothing raises, an MSR exit's error
    is 0 or 1 and a successful RDMSR returns what the model holds, vectors 0-15 never enter
    IRR/ISR, and the LAPIC's saved state restores to the same state."""
    m, apic, _ = _cpu()
    lapic = apic.lapic
    buf = bytearray(ctypes.sizeof(abi.kvm_run))
    off = abi.kvm_run.exit.offset
    for op, a, b in ops:
        if op == "rdmsr":
            expected = lapic.read_msr(a)
            error, data = _msr(apic, a)
            assert error == (1 if expected is None else 0)
            if expected is not None:
                assert data == expected
        elif op == "wrmsr":
            assert _msr(apic, a, True, b)[0] in (0, 1)
        elif op == "mmio-r":
            struct.pack_into("<Q8sIB", buf, off, lapic.base_address + a, bytes(8), b, 0)
            dispatch_mmio(m, buf, apic)
        elif op == "mmio-w":
            struct.pack_into(
                "<Q8sIB", buf, off, lapic.base_address + a, b.to_bytes(8, "little"), 4, 1
            )
            dispatch_mmio(m, buf, apic)
        elif op == "inta":
            assert 0 <= apic.acknowledge() <= 0xFF
        else:
            lapic.set_lint0(bool(a))
        assert (lapic.irr | lapic.isr) & 0xFFFF == 0
    saved = lapic.save()
    fresh = PcMachine(PcConfig(memory_mb=2), clock=m.clock).lapics[0]
    fresh.restore(saved)
    assert fresh.save() == saved


def test_nmi_latched_while_intr_is_already_high_still_wakes_the_vcpu() -> None:
    """SDM 6.7 / HLT: an NMI must reach a CPU that has IF clear and a maskable interrupt
    pending (INTR already high, so no edge): the LAPIC's event hook, which the run loop
    points at `Vcpu.kick`, fires when the NMI is latched."""
    _, apic, _ = _cpu()
    lapic = apic.lapic
    lapic.svr = 0x1FF
    lapic.accept(0x50)
    assert lapic.intr.level
    kicks: list[int] = []
    lapic.event_hook = lambda: kicks.append(1)
    lapic.receive(ApicMessage(vector=0, delivery_mode=DM_NMI))
    assert kicks and apic.wakes_from_halt(False)


@pytest.mark.kvm
@needs_kvm
def test_cpu0_window_leaves_the_mmio_bus_while_vcpus_own_their_windows() -> None:
    """SDM 10.4.1: each processor decodes its own APIC window. Under KVM a vCPU whose APIC is
    relocated or disabled must not reach CPU 0's registers through the CPU-less bus
    registration, so the session takes it off the bus and puts it back when closed."""
    m = PcMachine(PcConfig(memory_mb=16, smp=2), clock=HostClock())
    assert m.mmio.lookup(0xFEE00020) is not None
    with KvmSession(m, cpus=2):
        assert m.mmio.lookup(0xFEE00020) is None
        assert m.mmio.read(0xFEE00020, 4) == 0xFFFFFFFF
    route = m.mmio.lookup(0xFEE00020)
    assert route is not None and route.device is m.lapics[0]


@pytest.mark.kvm
@needs_kvm
def test_the_pic_reaches_the_cpu_through_ioapic_pin0_extint() -> None:
    """MP spec 3.6.2.2 (virtual wire via the I/O APIC): with LINT0 masked and IOAPIC pin 0
    programmed ExtINT, the 8259's INTR travels as an ExtINT message and the CPU takes the
    vector from the 8259's INTA (0x20 + IRQ3); GSI 3 also reaches the masked pin 3, which
    delivers nothing and keeps its remote IRR clear."""
    acks: list[int] = []

    def count_acks(m: PcMachine, probe: Probe) -> None:
        inta = m.pic.acknowledge

        def acknowledge() -> int:
            acks.append(inta())
            return acks[-1]

        m.pic.acknowledge = acknowledge  # type: ignore[method-assign]

    end, probe, m, _ = run_guest("apic_ioapic", mode=2, prepare=count_acks)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert probe.values == [1, 2, 1 << 16]
    assert acks == [0x23, 0x23]
    assert not m.lapics[0].lint0_extint() and m.lapics[0].isr == 0


@pytest.mark.kvm
@needs_kvm
def test_cpuid_apic_bit_follows_the_global_enable() -> None:
    """SDM vol. 3 10.4.3: with IA32_APIC_BASE.EN clear, CPUID.01H:EDX[9] reads 0; setting EN
    again brings it back (issue 10 item 6)."""
    end, probe, m, _ = run_guest("apic_cpuid")
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    apic_bit = [bool(v >> 9 & 1) for v in probe.values]
    assert apic_bit == [True, False, True], [hex(v) for v in probe.values]
    assert m.lapics[0].hw_enabled
