"""The real client: SeaBIOS finds our virtio-blk disk (modern interface), boots GRUB from
its MBR, and GRUB reads grub.cfg from the FAT partition through biosdisk, all under KVM
through the `run` command (worker-thread block I/O, completions under the machine lock).

Slow here (kvm_pvm emulates real mode: about 20-30 s), so this is the only such test."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from southbridge.cli import main
from southbridge.kvm import guestbuild
from southbridge.kvm.testing import kvm_unavailable_reason
from tests import grubdisk

SEABIOS = Path(__file__).resolve().parent.parent / ".cache" / "seabios" / "bios.bin"
_reason = kvm_unavailable_reason() or grubdisk.missing_tools()
if _reason is None and not SEABIOS.is_file():
    _reason = f"{SEABIOS} is missing: run scripts/setup"
pytestmark = [pytest.mark.kvm, pytest.mark.skipif(_reason is not None, reason=_reason or "")]


def test_seabios_boots_grub_from_virtio_blk(tmp_path: Path) -> None:
    disk = grubdisk.build(tmp_path)
    com1 = tmp_path / "com1.txt"
    dbg = tmp_path / "seabios.log"
    start = time.monotonic()
    status = main(
        [
            *("run", "--bios", str(SEABIOS), "--drive", f"file={disk},if=virtio,format=raw"),
            *("--boot", "order=c", "--serial", f"file:{com1}", "--debugcon", f"file:{dbg}"),
            *("--timeout", "150", "--no-reboot"),
        ]
    )
    elapsed = time.monotonic() - start
    log = dbg.read_text(errors="replace")
    out = com1.read_text(errors="replace")
    # SeaBIOS drove the modern interface and took the disk from our bootorder file.
    assert "using modern (1.0) virtio mode" in log
    assert "Searching bootorder for: /pci@i0cf8/*@3" in log
    assert "Booting from Hard Disk" in log
    # GRUB's own serial terminal, then grub.cfg read from FAT, then its isa-debug-exit.
    assert "southbridge-grub-start" in out
    assert f"# {grubdisk.MARKER}" in out, out
    assert status == (grubdisk.EXIT_VALUE << 1) | 1, (status, out[-400:])
    print(f"GRUB boot from virtio-blk to its exit: {elapsed:.1f} s")


def test_modsum_kernel_reports_the_module_checksum(tmp_path: Path) -> None:
    """The checksum kernel itself, booted by southbridge's own Multiboot loader (fast), so a
    wrong sum in the GRUB test below points at the disk path, not the kernel."""
    module = tmp_path / "module.bin"
    module.write_bytes(bytes(range(256)) * 5 + b"\xff")
    dbg = tmp_path / "debugcon.txt"
    kernel = guestbuild.build("mb_modsum")
    status = main(
        [
            *("run", "--kernel", str(kernel), "--initrd", str(module), "--serial", "none"),
            *("--debugcon", f"file:{dbg}", "--timeout", "30"),
        ]
    )
    log = dbg.read_text()
    assert status == (0x20 << 1) | 1
    assert "loader=southbridge" in log and "mod0_len=00000501" in log
    assert f"mod0_sum={sum(module.read_bytes()):08x}" in log


@pytest.mark.slow
def test_grub_loads_a_multiboot_kernel_and_module_from_virtio_blk(tmp_path: Path) -> None:
    """GRUB's multiboot and module commands read a kernel and a module from the FAT
    partition on our disk; the kernel (guests/mb_modsum.S) reports the module's checksum.
    About 75 s here: the multiboot module set makes GRUB's core image 150 KB."""
    module = bytes((i * 7 + 3) & 0xFF for i in range(6000))
    disk = grubdisk.build(tmp_path, guestbuild.build("mb_modsum"), module)
    com1, dbg = tmp_path / "com1.txt", tmp_path / "debugcon.txt"
    start = time.monotonic()
    status = main(
        [
            *("run", "--bios", str(SEABIOS), "--drive", f"file={disk}", "--boot", "order=c"),
            *("--serial", f"file:{com1}", "--debugcon", f"file:{dbg}"),
            *("--timeout", "240", "--no-reboot"),
        ]
    )
    elapsed = time.monotonic() - start
    log = dbg.read_text(errors="replace")
    assert f"# {grubdisk.MARKER}" in com1.read_text(errors="replace")
    assert "loader=GRUB" in log and "mods=00000001" in log
    assert f"mod0_len={len(module):08x}" in log
    assert f"mod0_sum={sum(module):08x}" in log, log[-300:]
    assert status == (0x20 << 1) | 1
    print(f"GRUB -> Multiboot kernel with a module from virtio-blk: {elapsed:.1f} s")
