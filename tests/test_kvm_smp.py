"""Guest-level SMP tests under KVM (issue 6 item 5): several vCPU threads, each with its own
local APIC model; APs wait for INIT/SIPI in their threads. The guests (southbridge/guests/
smp_*.S) report through the probe of tests/test_kvm_apic.py. Skipped with the reason when
this host cannot run KVM guests."""

from __future__ import annotations

import pytest

from southbridge.kvm.testing import kvm_unavailable_reason
from tests.test_kvm_apic import EXIT_OK, run_guest

_reason = kvm_unavailable_reason()
pytestmark = [pytest.mark.kvm, pytest.mark.skipif(_reason is not None, reason=_reason or "")]


def test_init_sipi_brings_up_three_aps_that_report_their_apic_ids() -> None:
    """SDM 8.4.4.1 (MP initialization): INIT then SIPI to all-excluding-self starts every AP
    in real mode at vector << 12 (CS = vector << 8, IP = 0); a second SIPI to a running AP is
    ignored. With --smp 4 the three APs report initial APIC IDs 1, 2, 3 (CPUID.1:EBX[31:24])
    and the BSP's xAPIC ID register reads 0."""
    end, probe, m, _ = run_guest("smp_boot", param=3, smp=4)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert probe.values == [0, 3, 0x101, 0x102, 0x103]
    assert not any(lapic.waiting_for_sipi for lapic in m.lapics)


def test_ipis_between_two_vcpus_physical_logical_and_nmi() -> None:
    """SDM 10.6.1-10.6.2: a fixed IPI reaches the APIC named by the ICR destination,
    physical (APIC ID) or logical (flat model: LDR bit match), and each vCPU runs its own
    handler and EOIs its own APIC; an NMI IPI is delivered as an NMI (vector 2, KVM_NMI)
    to the other vCPU. With --smp 2: 10 ping-pong rounds, then one NMI."""
    end, probe, m, _ = run_guest("smp_ipi", smp=2)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert probe.values == [10, 10, 1]
    assert m.lapics[1].ldr == 0x02000000
    assert all(lapic.isr == 0 for lapic in m.lapics)
