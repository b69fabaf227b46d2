"""Real clients on the PIIX3 IDE function under KVM, each skipping with its reason (KVM,
SeaBIOS, the GRUB tools): SeaBIOS boots GRUB from an IDE disk (the virtio test's image) and
from an El Torito ISO on the CD-ROM; a Multiboot kernel reads by PIO and DMA. The SeaBIOS
runs are slow here (kvm_pvm emulates real mode): about 10 and 15 s."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from southbridge.cli import main
from southbridge.kvm import guestbuild
from southbridge.kvm.testing import kvm_unavailable_reason
from tests import grubdisk, grubiso

SEABIOS = Path(__file__).resolve().parent.parent / ".cache" / "seabios" / "bios.bin"
_kvm = kvm_unavailable_reason()
pytestmark = [pytest.mark.kvm, pytest.mark.skipif(_kvm is not None, reason=_kvm or "")]
_bios = None if SEABIOS.is_file() else f"{SEABIOS} is missing: run scripts/setup"
_disk_reason = _bios or grubdisk.missing_tools()
_iso_reason = _bios or grubiso.missing_tools()


@pytest.mark.skipif(_disk_reason is not None, reason=_disk_reason or "")
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


@pytest.mark.skipif(_iso_reason is not None, reason=_iso_reason or "")
def test_seabios_boots_an_el_torito_iso_from_the_ide_cdrom(tmp_path: Path) -> None:
    """`run --cdrom grub.iso --boot order=d`: SeaBIOS finds the ATAPI drive on the secondary
    master and boots its El Torito image; GRUB reads its modules, grub.cfg and a file from the
    ISO9660 filesystem through int 13h (SeaBIOS's ATAPI PIO path) and runs its menu entry.
    About 18 s here."""
    iso = grubiso.build(tmp_path)
    com1, dbg = tmp_path / "com1.txt", tmp_path / "seabios.log"
    start = time.monotonic()
    status = main(
        [
            *("run", "--bios", str(SEABIOS), "--cdrom", str(iso), "--boot", "order=d"),
            *("--serial", f"file:{com1}", "--debugcon", f"file:{dbg}"),
            *("--timeout", "150", "--no-reboot"),
        ]
    )
    elapsed = time.monotonic() - start
    log = dbg.read_text(errors="replace")
    out = com1.read_text(errors="replace")
    assert "DVD/CD [ata1-0: SOUTHBRIDGE CD-ROM ATAPI-4 DVD/CD]" in log, log[-2000:]
    assert "Searching bootorder for: /pci@i0cf8/*@1,1/drive@1/disk@0" in log
    assert "Booting from DVD/CD" in log
    assert "southbridge-iso-start" in out and grubiso.MARKER in out, out
    assert "Booting `southbridge exit'" in out
    assert status == (grubiso.EXIT_VALUE << 1) | 1, (status, out[-400:])
    print(f"GRUB boot from the El Torito ISO to its exit: {elapsed:.1f} s")


def test_multiboot_kernel_reads_the_disk_by_pio_and_dma(tmp_path: Path) -> None:
    """guests/mb_ide.S, loaded by our own Multiboot loader (no BIOS, fast): READ SECTORS and
    READ DMA of the same four sectors, polled, through the worker-thread back-end; both
    byte sums must be the image's. The table is used up exactly, so the engine reports
    the interrupt with active clear (SFF-8038i)."""
    image = bytes((i * 13 + i // 512) & 0xFF for i in range(64 * 512))
    disk = tmp_path / "disk.img"
    disk.write_bytes(image)
    dbg = tmp_path / "debugcon.txt"
    status = main(
        [
            *("run", "--kernel", str(guestbuild.build("mb_ide")), "--serial", "none"),
            *("--drive", f"file={disk},if=ide", "--debugcon", f"file:{dbg}", "--timeout", "30"),
        ]
    )
    log = dbg.read_text()
    want = f"{sum(image[512 : 5 * 512]):08x}"
    assert status == (0x23 << 1) | 1, log
    assert f"pio_sum={want}" in log and f"dma_sum={want}" in log, log
    assert "bm_status=00000004" in log and "ata_status=00000050" in log, log
