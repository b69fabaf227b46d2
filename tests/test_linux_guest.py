"""Debian's Linux (linux-image-cloud-amd64 and busybox-static, fetched by set-up into
.cache/linux with an initramfs whose init prints a marker and powers off) on our devices.

Where KVM runs guest kernel code natively (kvm_intel, kvm_amd) it boots to the marker,
with one and two vCPUs, without firmware (`--kernel`) and through SeaBIOS (`--bios` too),
and the kernel log must show the platform: ACPI tables, the IOAPIC, every CPU, a calibrated
TSC and ttyS0 as the console. Under kvm_pvm (guest kernel code emulated) that part skips
with its reason, and the early-boot test shows how far the same kernel gets through our
loader: past the boot stub's decompression into setup_arch, where it prints the e820 map
we gave it, the command line, and what it read from our ACPI tables (MADT, FADT, HPET).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from southbridge.kvm.multiboot import memory_map
from southbridge.kvm.testing import kvm_unavailable_reason, native_kernel_reason
from tests.waiting import run_until, text

LINUX = Path(__file__).resolve().parent.parent / ".cache" / "linux"
VMLINUZ, INITRD = LINUX / "vmlinuz", LINUX / "initrd.img"
MARKER = "SOUTHBRIDGE-LINUX-UP"
SEABIOS = Path(__file__).resolve().parent.parent / ".cache" / "seabios" / "bios.bin"
MiB = 1 << 20

_kvm = kvm_unavailable_reason()
_missing = None if VMLINUZ.is_file() and INITRD.is_file() else f"{LINUX}: run scripts/setup"
pytestmark = [
    pytest.mark.kvm,
    pytest.mark.skipif(_kvm is not None, reason=_kvm or ""),
    pytest.mark.skipif(_missing is not None, reason=_missing or ""),
]


def boot_until(
    tmp_path: Path, argv: list[str], pattern: str | None, limit_s: float
) -> tuple[str, int | None]:
    """Run `southbridge run` with COM1 in a file until `pattern` shows there (then stop it)
    or the run ends (None: wait for that); returns the console text and the exit status
    (None: stopped)."""
    com1 = tmp_path / "com1.txt"
    cmd = [sys.executable, "-m", "southbridge", "run", "--serial", f"file:{com1}"]
    rc = run_until([*cmd, "--timeout", str(limit_s), *argv], [com1], pattern)
    return text(com1), rc


def test_early_boot_through_our_loader(tmp_path: Path) -> None:
    """The bzImage's stub decompresses the kernel and enters it at our 64-bit entry; its
    first messages on ttyS0 (earlyprintk) show our command line and our e820 map."""
    append = "console=ttyS0 earlyprintk=ttyS0 southbridge-test"
    argv = ["--kernel", str(VMLINUZ), "--append", append]
    # Emulated kernel code: about 20 s idle here, much longer next to other work.
    out, rc = boot_until(tmp_path, argv, r"smpboot: Allowing \d+ CPUs.*\n", 600)
    assert rc is None, out[-2000:]
    assert re.search(r"^\[ *0\.0+\] Linux version 6\.", out, re.M), out[:2000]
    assert f"Command line: {append}" in out
    seen = [
        (int(a, 16), int(b, 16) - int(a, 16) + 1, 1 if kind == "usable" else 2)
        for a, b, kind in re.findall(r"BIOS-e820: \[mem 0x(\w+)-0x(\w+)\] (\w+)", out)
    ]
    assert seen == memory_map([(0, 640 * 1024), (MiB, 127 * MiB)])
    # Our ACPI tables in the BIOS area (kvm/tables.py), found through acpi_rsdp_addr.
    assert re.search(r"ACPI: RSDP 0x00000000000E[0-9A-F]{4} 000024 \(v02 SBRIDG\)", out)
    for table in ("XSDT", "FACP", "DSDT", "FACS", "APIC", "HPET"):
        assert re.search(rf"ACPI: {table} 0x00000000000E[0-9A-F]{{4}} ", out), table
    assert "ACPI: PM-Timer IO Port: 0x608" in out
    assert "IOAPIC[0]: apic_id 0, version 32, address 0xfec00000, GSI 0-23" in out
    assert "ACPI: INT_SRC_OVR (bus 0 bus_irq 0 global_irq 2 dfl dfl)" in out
    assert "ACPI: INT_SRC_OVR (bus 0 bus_irq 9 global_irq 9 high level)" in out
    assert "ACPI: HPET id: 0x8086a201 base: 0xfed00000" in out
    assert "smpboot: Allowing 1 CPUs, 0 hotplug CPUs" in out


_native = native_kernel_reason()


@pytest.mark.skipif(_native is not None, reason=_native or "")
@pytest.mark.parametrize("smp", [1, 2])
@pytest.mark.parametrize("firmware", [False, True])
def test_linux_boots_to_user_space(tmp_path: Path, smp: int, firmware: bool) -> None:
    argv = ["--kernel", str(VMLINUZ), "--initrd", str(INITRD), "--smp", str(smp)]
    argv += ["--append", "console=ttyS0 panic=-1", "--no-reboot"]
    if firmware:
        argv += ["--bios", str(SEABIOS)]
    # init powers off (ACPI S5 through PM1a_CNT): the run ends with status 0.
    out, rc = boot_until(tmp_path, argv, None, 120)
    assert f"{MARKER} cpus={smp}" in out, out[-3000:]
    assert rc == 0, out[-3000:]
    assert "ACPI: RSDP" in out and "IOAPIC[0]" in out
    assert re.search(rf"smp: Brought up 1 node, {smp} CPU", out)
    assert "tsc: Detected" in out or "tsc: Refined TSC" in out
    assert re.search(r"printk: console \[ttyS0\] enabled", out)
