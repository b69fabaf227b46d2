"""Guest-level tests of the local APIC and IOAPIC under KVM (issue 6): tiny 32-bit guests
(southbridge/guests/apic_*.S) program the APIC through its MMIO window and MSRs and report
through a probe at port 0x700; the vCPU's interrupt controller is its LAPIC model.
Skipped with the reason when this host cannot run KVM guests."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from southbridge.core.clock import HostClock
from southbridge.core.device import BusDevice
from southbridge.kvm import guestbuild
from southbridge.kvm.apic import VcpuApic
from southbridge.kvm.loader import load_bios
from southbridge.kvm.session import KvmSession
from southbridge.kvm.testing import kvm_unavailable_reason
from southbridge.kvm.vcpu import RunEnd
from southbridge.machine.pc import PcConfig, PcMachine

_reason = kvm_unavailable_reason()
pytestmark = [pytest.mark.kvm, pytest.mark.skipif(_reason is not None, reason=_reason or "")]

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


def test_lapic_one_shot_timer_fires_once_after_count_times_divisor() -> None:
    """SDM 10.5.4: one-shot mode counts the initial count down at the bus clock / divide
    configuration (1 GHz / 16 here) and interrupts once at zero; the current count then
    reads 0. 62,500,000 x 16 ns = 1 s of host time, within 1%."""
    end, probe, _, _ = run_guest("apic_timer", mode=0, param=62_500_000)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert len(probe.stamps) == 2
    assert probe.stamps[1] - probe.stamps[0] == pytest.approx(1.0, rel=0.01)
    assert probe.values == [0]


def test_lapic_periodic_timer_runs_at_the_programmed_rate() -> None:
    """SDM 10.5.4: periodic mode reloads the initial count at zero; 2,000,000 at divide-by-2
    is 250 Hz, so 250 periods take 1 s of host time within 1%. (At 1 kHz this host's
    occasional >1 ms wake-up latency makes a tick find its vector still in IRR, and an IRR
    bit holds one interrupt: the tick is lost as on hardware, and the rate drifts.)"""
    end, probe, _, _ = run_guest("apic_timer", mode=1, param=2_000_000)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert len(probe.stamps) == 2
    assert probe.stamps[1] - probe.stamps[0] == pytest.approx(1.0, rel=0.01)


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


def test_self_ipi_waits_for_the_tpr_and_moves_irr_to_isr() -> None:
    """SDM 10.8.3.1 / 10.8.4: a fixed self-IPI (ICR shorthand 01) whose priority class (4)
    does not exceed the TPR's (5) stays in IRR; lowering the TPR delivers it, the handler
    sees it in ISR with PPR = its class, and EOI clears ISR."""
    end, probe, m, _ = run_guest("apic_ipi", mode=0)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    bit = 1 << (0x41 - 64)  # IRR and ISR at +0x20 hold vectors 64-95
    assert probe.values == [bit, 0, bit, 0x40, 1, 0]
    assert m.lapics[0].isr == 0 and m.lapics[0].irr == 0


def test_x2apic_msrs_self_ipi_and_gp_on_reserved_bits() -> None:
    """SDM 10.12: IA32_APIC_BASE EXTD switches to x2APIC mode: the ID MSR reads the x2APIC
    ID, the MMIO window stops decoding (all ones), SELF IPI (0x83F) and the 64-bit ICR
    (0x830) deliver, EOI is WRMSR 0x80B, and a non-zero EOI write raises #GP (10.12.1.2)."""
    end, probe, m, _ = run_guest("apic_ipi", mode=1)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert probe.values == [0, 0xFFFFFFFF, 1, 2, 0xD]
    assert m.lapics[0].x2apic


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


def test_msi_from_the_demo_device_reaches_the_guest_handler() -> None:
    """PCI 3.0 6.8.1 / SDM 10.11: with MSI enabled the demo device signals each INT_RAISE as
    a memory write of the programmed data (vector 0x55, fixed) to 0xFEE00000 (APIC 0); the
    guest's handler runs once per raise and INT_ACK clears INT_STATUS."""
    end, probe, _, _ = run_guest("apic_ioapic", mode=1)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert probe.values == [1, 2, 0]


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
