"""Multiboot kernels under KVM through `southbridge run --kernel`: the bundled mb_*.S guests,
written like kvm-unit-tests / QEMU's tests/multiboot programs, check from inside what the
loader and the QEMU-compatible test devices promise and end through isa-debug-exit, whose
value v the process returns as (v << 1) | 1. What they print on the debug console is
compared with the arguments. Skipped with the reason when this host has no KVM or binutils.
Each run takes about 0.1-0.2 s here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from southbridge import cli
from southbridge.kvm import guestbuild
from southbridge.kvm.multiboot import find_header
from southbridge.kvm.testing import kvm_unavailable_reason

_reason = kvm_unavailable_reason()
pytestmark = [pytest.mark.kvm, pytest.mark.skipif(_reason is not None, reason=_reason or "")]

MODULE = b"southbridge module 0\n"


def status(value: int) -> int:
    """isa-debug-exit: the exit status is (value << 1) | 1 (QEMU hw/misc/debugexit.c)."""
    return ((value << 1) | 1) & 0xFF


def run(tmp_path: Path, guest: str | Path, *argv: str) -> tuple[int, str]:
    kernel = guest if isinstance(guest, Path) else guestbuild.build(guest)
    console = tmp_path / "debugcon.txt"
    rc = cli.main(
        [
            "run",
            "--serial",
            "none",
            "--timeout",
            "20",
            "--kernel",
            str(kernel),
            "--debugcon",
            f"file:{console}",
            *argv,
        ]
    )
    return rc, console.read_text() if console.exists() else ""


@pytest.fixture
def initrd(tmp_path: Path) -> Path:
    p = tmp_path / "module0.txt"
    p.write_bytes(MODULE)
    return p


# -- (a) the Multiboot information --------------------------------------------------------------
@pytest.mark.parametrize("memory_mb", [128, 64])
def test_info_structure_seen_by_the_kernel(tmp_path: Path, initrd: Path, memory_mb: int) -> None:
    """Spec 3.2/3.3: EAX = 0x2BADB002, EBX -> info; mem_upper = KiB above 1 MiB (-m), the
    command line is QEMU's "KERNEL APPEND", module 0 is --initrd with its name as string;
    the guest also reloads the boot segments from the GDT and checks CR0/IF at entry."""
    kernel = guestbuild.build("mb_info")
    rc, out = run(
        tmp_path, "mb_info", "-m", str(memory_mb), "--append", "mb-test 42", "--initrd", str(initrd)
    )
    assert rc == status(0x20), out
    lines = out.splitlines()
    upper = (memory_mb - 1) * 1024
    assert lines[:4] == [
        "mem_lower=00000280",
        f"mem_upper={upper:08x}",
        f"cmdline={kernel} mb-test 42",
        f"mod0={initrd}",
    ]
    start = int(lines[4].removeprefix("mod0_start="), 16)
    end = int(lines[5].removeprefix("mod0_end="), 16)
    assert start % 4096 == 0 and end - start == len(MODULE)
    assert lines[6:10] == [
        "mmap 0000000000000000 00000000000a0000 00000001",
        "mmap 00000000000a0000 0000000000060000 00000002",
        f"mmap 0000000000100000 {upper * 1024:016x} 00000001",
        "mmap 00000000fec00000 0000000001400000 00000002",
    ]
    assert lines[10] == "loader=southbridge"


def test_module_arguments_are_part_of_its_string(tmp_path: Path, initrd: Path) -> None:
    """QEMU's -initrd "FILE ARGS": the module is FILE, its string the whole entry."""
    rc, out = run(tmp_path, "mb_info", "--append", "mb-test 42", "--initrd", f"{initrd} a=1")
    assert rc == status(0x20), out
    assert f"mod0={initrd} a=1" in out.splitlines()


def test_a_different_command_line_fails_the_guest_check(tmp_path: Path, initrd: Path) -> None:
    """The guest really compares: another --append gives its exit value 6."""
    rc, _ = run(tmp_path, "mb_info", "--append", "mb-test 43", "--initrd", str(initrd))
    assert rc == status(6)


def test_a_different_module_fails_the_guest_check(tmp_path: Path) -> None:
    other = tmp_path / "other.txt"
    other.write_bytes(b"southbridge module 1\n")
    rc, _ = run(tmp_path, "mb_info", "--append", "mb-test 42", "--initrd", str(other))
    assert rc == status(9)


def test_no_initrd_means_no_module(tmp_path: Path) -> None:
    rc, _ = run(tmp_path, "mb_info", "--append", "mb-test 42")
    assert rc == status(7)  # mods_count != 1


# -- (b) fw_cfg ----------------------------------------------------------------------------------
@pytest.mark.parametrize("memory_mb", [128, 32])
def test_fw_cfg_signature_cpus_ram_and_file_directory(tmp_path: Path, memory_mb: int) -> None:
    """QEMU docs/specs/fw_cfg.rst: "QEMU" at key 0, CPUs at 0x05, RAM size at 0x03 (equal to
    what Multiboot reports), and the directory at 0x19 lists etc/boot-fail-wait."""
    rc, out = run(tmp_path, "mb_fwcfg", "-m", str(memory_mb))
    assert rc == status(0x21), out
    lines = out.splitlines()
    assert lines[0] == "cpus=00000001"
    assert lines[1] == f"ram={memory_mb << 20:016x}"
    assert "file etc/boot-fail-wait" in lines
    # etc/boot-fail-wait's key: files from FW_CFG_FILE_FIRST (0x20) in name order, after
    # etc/acpi/rsdp and etc/acpi/tables.
    assert lines[-1] == "key=00000022"


def test_fw_cfg_cpu_count_follows_smp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Key 0x05 is the -smp count; the application processors wait for INIT/SIPI as on a
    PC after firmware, so the kernel on the BSP runs alone."""
    rc, out = run(tmp_path, "mb_fwcfg", "--smp", "2")
    if rc == 2 and "--smp" in capsys.readouterr().err:
        pytest.skip("this runner does not support --smp 2 yet")
    assert rc == status(0x21), out
    assert out.splitlines()[0] == "cpus=00000002"


# -- (c) pc-testdev ------------------------------------------------------------------------------
def test_pc_testdev_scratch_mmio_and_gsi_interrupts_through_the_pic(tmp_path: Path) -> None:
    """hw/misc/pc-testdev.c: the 0xE0 scratch register, the 0xFF000000 window, and a byte
    written to 0x2000+N setting GSI N, which an unmasked 8259 input delivers through the
    guest's IDT (IRQ 5 on the master, IRQ 10 through the cascade), ISR empty after EOI."""
    rc, out = run(tmp_path, "mb_testdev")
    assert rc == status(0x22), out


# -- the a.out kludge ----------------------------------------------------------------------------
def test_aout_kludge_kernel_boots_as_elf_and_as_a_flat_image(tmp_path: Path) -> None:
    """Spec 3.1.3 flag 16: the header's addresses place the image, so the same kernel
    stripped of its ELF headers (a flat binary from header_addr - load_addr on) boots."""
    elf = guestbuild.build("mb_aout")
    rc, out = run(tmp_path, elf)
    assert rc == status(0x23) and out == "a.out kludge ok\n"
    data = elf.read_bytes()
    h = find_header(data)
    flat = tmp_path / "aout.bin"
    flat.write_bytes(data[h.offset - (h.header_addr - h.load_addr) :])
    assert not flat.read_bytes().startswith(b"\x7fELF")
    (tmp_path / "debugcon.txt").unlink()
    rc, out = run(tmp_path, flat)
    assert rc == status(0x23) and out == "a.out kludge ok\n"


# -- (d) the exit status ------------------------------------------------------------------------
def test_exit_status_is_the_debug_exit_value_shifted_with_bit_0_set(tmp_path: Path) -> None:
    """Every guest above ends with `outl` to 0xF4; the statuses differ per value: 0x20 ->
    0x41, 0x21 -> 0x43, failure 6 -> 13, 7 -> 15 (checked against the runs above here)."""
    assert [status(v) for v in (0x20, 0x21, 0x22, 0x23, 6, 7, 9)] == [65, 67, 69, 71, 13, 15, 19]
    rc, _ = run(tmp_path, "mb_fwcfg")
    assert rc == 67


# -- reset --------------------------------------------------------------------------------------
def test_reset_boots_the_kernel_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With no BIOS at the reset vector a reset can only continue by loading and entering
    the kernel again (like a PC running its boot loader again): the run keeps rebooting
    until the timeout; with --no-reboot the first reset ends it with status 0."""
    kernel = str(guestbuild.build("mb_reset"))
    base = ["run", "--serial", "none", "--kernel", kernel]
    assert cli.main([*base, "--no-reboot", "--timeout", "20"]) == 0
    capsys.readouterr()
    # A few reboots take milliseconds idle; 5 s leaves room for a loaded host.
    assert cli.main([*base, "--timeout", "5"]) == 124
    err = capsys.readouterr().err
    m = re.search(r"the guest was rebooted (\d+) times", err)
    assert m is not None and int(m.group(1)) > 2, err
    assert "internal error" not in err
