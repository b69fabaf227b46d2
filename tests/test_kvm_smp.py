"""Guest-level SMP tests under KVM (issue 6 item 5): several vCPU threads, each with its own
local APIC model; APs wait for INIT/SIPI in their threads. The guests (southbridge/guests/
smp_*.S) report through the probe of tests/test_kvm_apic.py. Skipped with the reason when
this host cannot run KVM guests."""

from __future__ import annotations

from pathlib import Path

import pytest

from southbridge.cli import main
from southbridge.core.clock import HostClock
from southbridge.host.chardev import open_debugcon
from southbridge.kvm import guestbuild
from southbridge.kvm.firmware import prepare_firmware
from southbridge.kvm.session import KvmSession
from southbridge.kvm.testing import kvm_unavailable_reason
from southbridge.machine.pc import PcConfig, PcMachine
from tests.seabios import MISSING, SEABIOS, run_until_logged
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


@pytest.mark.skipif(not SEABIOS.is_file(), reason=MISSING)
def test_seabios_finds_every_cpu(tmp_path: Path) -> None:
    """SeaBIOS's smp_scan wakes the APs with INIT-SIPI-SIPI through the xAPIC ICR, counts
    those that run its real-mode trampoline, and waits for the CMOS 0x5F count (+1): its log
    says "Found 2 cpu(s) max supported 2 cpu(s)" (fw_cfg key 0x0F) with --smp 2."""
    log = tmp_path / "debugcon.log"
    m = PcMachine(
        PcConfig(memory_mb=128, smp=2), clock=HostClock(), debugcon=open_debugcon(f"file:{log}")
    )
    shadow = prepare_firmware(m, SEABIOS.read_bytes())
    try:
        with KvmSession(m, cpus=2) as session:
            shadow.on_change = session.sync_memory
            end, _ = run_until_logged(
                session, log, b"max supported", 30, "SeaBIOS counted the CPUs"
            )
    finally:
        m.close()
    text = log.read_text(errors="replace")
    assert (end.reason, end.message) == ("stopped", "SeaBIOS counted the CPUs"), (
        f"{end.message}\n{text[-2000:]}"
    )
    assert "Found 2 cpu(s) max supported 2 cpu(s)" in text
    assert "handle_smp: apic_id=0x1" in text


def test_southbridge_run_smp_2_runs_a_two_cpu_guest(capsys: pytest.CaptureFixture[str]) -> None:
    """`southbridge run --smp 2` runs two vCPU threads: the IPI ping-pong guest exits with
    its isa-debug-exit status, (0x10 << 1) | 1 = 0x21."""
    image = guestbuild.build("smp_ipi")
    rc = main(["run", "--serial", "none", "--bios", str(image), "--smp", "2", "--timeout", "20"])
    assert rc == EXIT_OK, capsys.readouterr().err


def test_init_resets_a_running_ap_and_sipi_restarts_it() -> None:
    """SDM 8.4 / 10.4.7.3: INIT to a running AP (halted with IF clear: INIT still wakes it)
    resets it into wait-for-SIPI; the next SIPI starts it again from the vector."""
    end, probe, _, _ = run_guest("smp_boot", mode=1, param=3, smp=4)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert probe.values == [0, 4, 0x101, 0x102, 0x103]


@pytest.mark.parametrize("cpus", [2, 4])
def test_ipi_ring_across_all_vcpus_loses_nothing(cpus: int) -> None:
    """Every vCPU thread at once sends 100 IPIs around a ring (each after the previous was
    handled) while handling its predecessor's: each CPU receives exactly 100 (SDM 10.6:
    fixed IPIs to a physical destination; one IRR bit per vector, so the pacing keeps each
    IPI distinct), and the device lock serialises the LAPIC updates of N threads without a
    lost update or a deadlock."""
    end, probe, m, _ = run_guest("smp_ring", param=cpus, smp=cpus, timeout=30)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert probe.values == [100] * cpus
    assert all(lapic.isr == 0 and lapic.irr == 0 for lapic in m.lapics)


def test_ioapic_delivers_to_an_ap_and_its_eoi_clears_remote_irr() -> None:
    """82093AA 3.2.4 and SDM 10.8.5: a redirection entry's destination picks the CPU, here
    APIC 1 (physical) and logical 0x02 (the AP's flat LDR bit); the AP's handler runs on
    its own vCPU, and its EOI for the level-triggered vector is broadcast to the IOAPIC,
    clearing the entry's remote IRR. The BSP's IRR never sees the vector."""
    end, probe, m, _ = run_guest("smp_ioapic", smp=2)
    assert (end.reason, end.status) == ("exit", EXIT_OK), end.message
    assert probe.values == [2, 3, (1 << 15) | (1 << 11) | 0x70, 0]
    assert m.lapics[0].isr == 0 and m.lapics[1].isr == 0
