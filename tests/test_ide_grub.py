"""Real clients on the PIIX3 IDE function under KVM: SeaBIOS finds our ATA disk on the
primary channel (its ata.c: PIO through the legacy ports), boots GRUB from its MBR through
our bootorder path, and GRUB reads grub.cfg from the FAT partition through int 13h.

Slow here (kvm_pvm emulates real mode), so the disk image is the virtio test's."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from southbridge.cli import main
from southbridge.kvm.testing import kvm_unavailable_reason
from tests import grubdisk

SEABIOS = Path(__file__).resolve().parent.parent / ".cache" / "seabios" / "bios.bin"
_reason = kvm_unavailable_reason() or grubdisk.missing_tools()
if _reason is None and not SEABIOS.is_file():
    _reason = f"{SEABIOS} is missing: run scripts/setup"
pytestmark = [pytest.mark.kvm, pytest.mark.skipif(_reason is not None, reason=_reason or "")]


def test_seabios_boots_grub_from_an_ide_disk(tmp_path: Path) -> None:
    disk = grubdisk.build(tmp_path)
    com1 = tmp_path / "com1.txt"
    dbg = tmp_path / "seabios.log"
    start = time.monotonic()
    status = main(
        [
            *("run", "--bios", str(SEABIOS), "--drive", f"file={disk},if=ide,format=raw"),
            *("--boot", "order=c", "--serial", f"file:{com1}", "--debugcon", f"file:{dbg}"),
            *("--timeout", "150", "--no-reboot"),
        ]
    )
    elapsed = time.monotonic() - start
    log = dbg.read_text(errors="replace")
    out = com1.read_text(errors="replace")
    assert "ata0-0: SOUTHBRIDGE HARDDISK ATA-7 Hard-Disk" in log, log[-2000:]
    assert "Searching bootorder for: /pci@i0cf8/*@1,1/drive@0/disk@0" in log
    assert "Booting from Hard Disk" in log
    assert "southbridge-grub-start" in out
    assert f"# {grubdisk.MARKER}" in out, out
    assert status == (grubdisk.EXIT_VALUE << 1) | 1, (status, out[-400:])
    print(f"GRUB boot from the IDE disk to its exit: {elapsed:.1f} s")
