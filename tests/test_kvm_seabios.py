"""SeaBIOS (Debian's bios.bin, fetched by scripts/setup into .cache/seabios) completes its
POST on our devices under KVM and reaches "No bootable device", with the platform facts in
its debug log (port 0x402)."""

from __future__ import annotations

import re
import time

import pytest

from southbridge.core.clock import HostClock
from southbridge.host.chardev import open_debugcon
from southbridge.kvm.firmware import prepare_firmware
from southbridge.kvm.session import KvmSession
from southbridge.kvm.testing import kvm_unavailable_reason
from southbridge.machine.pc import PcConfig, PcMachine
from tests.seabios import MISSING, SEABIOS, run_until_logged

_reason = kvm_unavailable_reason()
if _reason is None and not SEABIOS.is_file():
    _reason = MISSING
pytestmark = [pytest.mark.kvm, pytest.mark.skipif(_reason is not None, reason=_reason or "")]

DONE = b"No bootable device"


@pytest.fixture(scope="module")
def post(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, float, int]:
    """Boot SeaBIOS until "No bootable device", then 0.5 s more of its idle wait; returns the
    log, the seconds to reach the message and the interrupts injected during the wait."""
    log = tmp_path_factory.mktemp("seabios") / "debugcon.log"
    m = PcMachine(PcConfig(memory_mb=128), clock=HostClock(), debugcon=open_debugcon(f"file:{log}"))
    shadow = prepare_firmware(m, SEABIOS.read_bytes())
    idle: list[int] = []
    try:
        with KvmSession(m) as session:
            shadow.on_change = session.sync_memory

            def idle_wait() -> None:
                before = session.vcpus[0].injected
                time.sleep(0.5)
                idle.append(session.vcpus[0].injected - before)

            end, post_s = run_until_logged(
                session, log, DONE, 60, "reached No bootable device", then=idle_wait
            )
    finally:
        m.close()
    text = log.read_text(errors="replace")
    assert (end.reason, end.message) == ("stopped", "reached No bootable device"), (
        f"{end.message}\n{text[-2000:]}"
    )
    assert post_s is not None
    return text, post_s, idle[0]


def test_seabios_reaches_no_bootable_device(post: tuple[str, float, int]) -> None:
    text, seconds, _ = post
    assert "No bootable device" in text
    assert seconds < 30


def test_seabios_reads_ram_size_from_cmos(post: tuple[str, float, int]) -> None:
    """CMOS 0x34/0x35: 64 KiB units above 16 MiB -> 128 MiB (QEMU pc_cmos_init layout)."""
    assert "RamSize: 0x08000000 [cmos]" in post[0]


def test_seabios_enumerates_our_pci_devices_and_assigns_bars(post: tuple[str, float, int]) -> None:
    text = post[0]
    assert "PCI: init bdf=00:00.0 id=8086:1237" in text  # i440FX
    assert "PCI: init bdf=00:01.0 id=8086:7000" in text  # PIIX3
    assert re.search(r"PCI: init bdf=00:02\.0 id=5342:0001", text)  # the demo device
    assert re.search(r"PCI: map device bdf=00:02\.0\s+bar \d, addr [0-9a-f]+", text)


def test_seabios_times_with_the_acpi_pm_timer(post: tuple[str, float, int]) -> None:
    """No kvmclock is offered; SeaBIOS finds the PIIX4 PM function (00:01.3, 8086:7113),
    enables its I/O space at PMBA and times with the PM timer at PMBA + 8, as it does on
    QEMU's pc machine (SeaBIOS src/fw/pciinit.c piix4_pm_setup, src/hw/timer.c). PMBA is
    0x600, not SeaBIOS's default 0xB000, because fw_cfg has QEMU's etc/table-loader
    (src/fw/paravirt.c qemu_cfg_init: "Moving pm_base to 0x600")."""
    text = post[0]
    assert "kvmclock" not in text
    assert "PCI: init bdf=00:01.3 id=8086:7113" in text
    assert "Moving pm_base to 0x600" in text
    assert "Using pmtimer, ioport 0x608" in text


def test_seabios_services_timer_interrupts_while_it_waits(post: tuple[str, float, int]) -> None:
    """It waits in HLT with IRQ0 at 18.2 Hz: about 9 interrupts in 0.5 s."""
    assert post[2] >= 4
