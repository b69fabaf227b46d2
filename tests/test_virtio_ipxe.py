"""Network boot (`--netdev user --boot order=n`): SeaBIOS finds iPXE's pxe-virtio.rom
(Debian's ipxe-qemu, fetched by set-up) for our virtio-net function through fw_cfg
"pci1af4,1000.rom", runs it, and boots its BEV first because bootorder names the NIC
(/pci@i0cf8/ethernet@3), as under QEMU. iPXE then runs in protected mode with interrupts:
on kvm_pvm that part cannot run (the host emulates guest kernel code and has no
protected-mode IRET), so the DHCP lease through passt is checked only where KVM runs it
natively."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from southbridge.commands.virtio_opts import IPXE_DIRS, IPXE_ROM
from southbridge.host.userfile import find_in
from southbridge.kvm.testing import kvm_unavailable_reason, native_kernel_reason
from tests.seabios import MISSING, SEABIOS
from tests.waiting import run_until, text

_kvm = kvm_unavailable_reason()
_rom = find_in(IPXE_ROM, IPXE_DIRS)
pytestmark = [
    pytest.mark.kvm,
    pytest.mark.skipif(_kvm is not None, reason=_kvm or ""),
    pytest.mark.skipif(not SEABIOS.is_file(), reason=MISSING),
    pytest.mark.skipif(_rom is None, reason=f"{IPXE_ROM} is missing: run scripts/setup"),
    pytest.mark.skipif(shutil.which("passt") is None, reason="passt is missing"),
]


def boot_until(tmp_path: Path, pattern: str, limit_s: float) -> tuple[str, str]:
    """SeaBIOS network boot until its debug log or COM1 shows `pattern`; returns both."""
    com1, log = tmp_path / "com1.txt", tmp_path / "seabios.log"
    cmd = [sys.executable, "-m", "southbridge", "run", "--bios", str(SEABIOS)]
    cmd += ["--netdev", "user", "--boot", "order=n", "--serial", f"file:{com1}"]
    cmd += ["--debugcon", f"file:{log}", "--timeout", str(limit_s), "--no-reboot"]
    run_until(cmd, [log, com1], pattern)
    return text(log), text(com1)


def test_seabios_runs_ipxe_for_our_nic_and_boots_it_first(tmp_path: Path) -> None:
    log, com1 = boot_until(tmp_path, r"Booting from c080:", 120)
    assert "1: /pci@i0cf8/ethernet@3" in log  # the bootorder file, parsed
    assert "PCI: init bdf=00:03.0 id=1af4:1000" in log
    assert "Running option rom at c080:0003" in log  # iPXE's init, from fw_cfg
    assert "Booting from ROM..." in log, log[-2000:]
    assert "iPXE (http://ipxe.org) 00:03.0" in com1 or "iPXE" in com1, com1[-2000:]


_native = native_kernel_reason()


@pytest.mark.skipif(_native is not None, reason=_native or "")
def test_ipxe_configures_our_nic_through_passt(tmp_path: Path) -> None:
    _, com1 = boot_until(tmp_path, r"Configuring \(net0 52:54:00:12:34:56\)[. ]*ok", 300)
    assert re.search(r"Configuring \(net0 52:54:00:12:34:56\)[. ]*ok", com1), com1[-3000:]
