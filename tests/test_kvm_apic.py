"""Guest-level tests of the local APIC and IOAPIC under KVM (issue 6): tiny 32-bit guests
(southbridge/guests/apic_*.S) program the APIC through its MMIO window and MSRs and report
through a probe at port 0x700; the vCPU's interrupt controller is its LAPIC model.
Skipped with the reason when this host cannot run KVM guests."""

from __future__ import annotations

import time

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
    guest: str, mode: int = 0, param: int = 0, smp: int = 1, timeout: float = 10.0
) -> tuple[RunEnd, Probe, PcMachine, float]:
    m = PcMachine(PcConfig(memory_mb=16, smp=smp), clock=HostClock())
    probe = Probe(mode, param)
    m.ports.register(TEST_PORT, 12, probe, "probe")
    load_bios(m, str(guestbuild.build(guest)))
    start = time.monotonic()
    with KvmSession(m, cpus=smp) as s:
        assert all(isinstance(v.irq, VcpuApic) for v in s.vcpus)
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
