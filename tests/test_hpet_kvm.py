"""The HPET under KVM: a 32-bit guest (southbridge/guests/hpet.S) takes IRQ0 from the PIT with
the legacy replacement route and counts timer 0's interrupts through the IOAPIC; skipped
with the reason when this host cannot run KVM guests."""

from __future__ import annotations

import pytest

from southbridge.core.clock import HostClock
from southbridge.kvm import guestbuild
from southbridge.kvm.loader import load_bios
from southbridge.kvm.session import KvmSession
from southbridge.kvm.testing import kvm_unavailable_reason
from southbridge.machine.pc import PcConfig, PcMachine
from tests.test_kvm_apic import EXIT_OK, TEST_PORT, Probe

_reason = kvm_unavailable_reason()
needs_kvm = pytest.mark.skipif(_reason is not None, reason=_reason or "")

COUNT, PERIOD_TICKS = 50, 500_000


@pytest.mark.kvm
@pytest.mark.timing
@needs_kvm
def test_legacy_timer0_interrupts_at_the_hpet_rate_with_the_pit_disconnected() -> None:
    """IA-PC HPET 1.0a 2.3.7: with LEG_RT_CNF timer 0 owns IRQ0 (IOAPIC pin 2) and the PIT's
    1 kHz output no longer reaches it, so 49 periods of 5 ms take 245 ms of host time (not
    the 41 ms the PIT's extra edges would make of them) and the counter advances 100 per us."""
    m = PcMachine(PcConfig(memory_mb=16), clock=HostClock())
    probe = Probe()
    m.ports.register(TEST_PORT, 12, probe, "probe")
    load_bios(m, str(guestbuild.build("hpet")))
    with KvmSession(m, cpus=1) as s:
        end = s.run(20.0)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert len(probe.values) == 2 and len(probe.stamps) == 2
    ticks = (probe.values[1] - probe.values[0]) % (1 << 32)
    assert ticks == pytest.approx((COUNT - 1) * PERIOD_TICKS, rel=0.05)
    host = probe.stamps[1] - probe.stamps[0]
    assert host == pytest.approx((COUNT - 1) * PERIOD_TICKS * 10e-9, rel=0.05)
    assert m.hpet is not None and m.hpet.config == 0
