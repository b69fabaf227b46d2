"""`southbridge run` end to end through the CLI: every bad-input path gives one clear error
line and status 2 (no traceback), and the exit statuses of real runs follow the documented
convention (isa-debug-exit, --no-reboot, --timeout, KVM errors)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from southbridge import cli
from southbridge.host import userfile
from southbridge.kvm import guestbuild, loader
from southbridge.kvm.testing import kvm_unavailable_reason

_reason = kvm_unavailable_reason()
needs_kvm = pytest.mark.skipif(_reason is not None, reason=_reason or "")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(["run", "--serial", "none", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error(err: str, pattern: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("southbridge: error: "), err
    assert pattern in lines[0], err


@pytest.fixture
def image(tmp_path: Path) -> Path:
    p = tmp_path / "bios.bin"
    p.write_bytes(b"\xf4" * 4096)
    return p


# -- bad input -------------------------------------------------------------------------------
def test_missing_image(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = _run(capsys, "--bios", str(tmp_path / "missing.bin"))
    assert rc == 2
    _one_error(err, "not found")


def test_image_is_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = _run(capsys, "--bios", str(tmp_path))
    assert rc == 2
    _one_error(err, "is a directory")


def test_empty_image(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    p = tmp_path / "empty.bin"
    p.write_bytes(b"")
    rc, _, err = _run(capsys, "--bios", str(p))
    assert rc == 2
    _one_error(err, "is empty")


def test_unreadable_image(
    capsys: pytest.CaptureFixture[str], image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        image.chmod(0)
    else:  # root can read anything: fail open() the way it fails for everyone else

        def deny(*args: object, **kwargs: object) -> None:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(userfile, "_open_fd", deny)
    rc, _, err = _run(capsys, "--bios", str(image))
    assert rc == 2
    _one_error(err, "not readable")


def test_image_too_big(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    p = tmp_path / "huge.bin"
    with open(p, "wb") as f:
        f.truncate(loader.MAX_BIOS_SIZE + 4096)
    rc, _, err = _run(capsys, "--bios", str(p))
    assert rc == 2
    _one_error(err, "too big")


def test_image_too_big_for_the_flash_window(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """16 MiB would cover the pc machine's MMIO devices below 4 GiB (pc-testdev at
    0xFF000000): refused, not silently overlapped."""
    p = tmp_path / "big.bin"
    with open(p, "wb") as f:
        f.truncate(loader.MAX_BIOS_SIZE)
    rc, _, err = _run(capsys, "--bios", str(p))
    assert rc == 2
    _one_error(err, "too big")


def test_no_kvm_device(capsys: pytest.CaptureFixture[str], image: Path, tmp_path: Path) -> None:
    rc, _, err = _run(capsys, "--bios", str(image), "--kvm-device", str(tmp_path / "kvm"))
    assert rc == 2
    _one_error(err, "KVM is not available")


def test_no_kvm_device_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOUTHBRIDGE_KVM_DEVICE", str(tmp_path / "nokvm"))
    rc, _, err = _run(capsys, "--bios", str(image))
    assert rc == 2
    _one_error(err, "nokvm does not exist")


def test_kvm_device_that_is_not_kvm(capsys: pytest.CaptureFixture[str], image: Path) -> None:
    rc, _, err = _run(capsys, "--bios", str(image), "--kvm-device", "/dev/null")
    assert rc == 2
    _one_error(err, "is not a KVM device")


def test_no_permission_on_kvm(
    capsys: pytest.CaptureFixture[str], image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def deny(path: str, flags: int, *args: object) -> int:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr("southbridge.kvm.system.os.open", deny)
    rc, _, err = _run(capsys, "--bios", str(image))
    assert rc == 2
    _one_error(err, "permission denied opening /dev/kvm")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--smp", "0"], "number of vCPUs must be"),
        (["-m", "1"], "memory must be"),
        (["-m", "100000"], "memory must be"),
        (["--timeout", "0"], "must be a positive"),
        (["--timeout", "-3"], "must be a positive"),
        (["--serial", "tcp:1234"], "unknown serial backend"),
        (["--debugcon", "pipe"], "debugcon backend"),
        (["--trace", "/nonexistent-dir/trace"], "--trace"),
    ],
)
def test_bad_options(
    capsys: pytest.CaptureFixture[str], image: Path, args: list[str], message: str
) -> None:
    rc, _, err = _run(capsys, "--bios", str(image), *args)
    assert rc == 2
    _one_error(err, message)


def test_bundled_guest_cannot_be_built_without_binutils(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOUTHBRIDGE_CACHE", str(tmp_path))  # nothing cached
    monkeypatch.setattr("southbridge.kvm.guestbuild.shutil.which", lambda name: None)
    rc, _, err = _run(capsys)
    assert rc == 2
    _one_error(err, "needs 'as'")


# -- real runs -------------------------------------------------------------------------------
@needs_kvm
def test_isa_debug_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    """The io guest writes 0x21 to port 0xF4: status (0x21 << 1) | 1 = 0x43."""
    rc, _, _ = _run(capsys, "--bios", str(guestbuild.build("io")), "--timeout", "10")
    assert rc == 0x43


@needs_kvm
def test_triple_fault_with_no_reboot_exits_0_and_reports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A triple fault resets a PC; with --no-reboot (like QEMU's -no-reboot) the run ends 0."""
    rc, _, err = _run(capsys, "--bios", str(guestbuild.build("triple")), "--no-reboot")
    assert rc == 0
    assert "triple fault" in err and "RIP=" in err


@needs_kvm
def test_triple_fault_without_no_reboot_reboots_until_the_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, _, err = _run(capsys, "--bios", str(guestbuild.build("triple")), "--timeout", "1")
    assert rc == 124
    assert err.count("triple fault") == 1  # one register dump, not one per reboot
    assert re.search(r"rebooted \d+ times", err)
    assert "timeout after 1 s" in err


@needs_kvm
def test_timeout_ends_a_halted_guest(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, "--bios", str(guestbuild.build("halt")), "--timeout", "0.3")
    assert rc == 124
    assert "timeout" in err


@needs_kvm
def test_kvm_error_exits_1_with_registers(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, "--bios", str(guestbuild.build("badfetch")), "--timeout", "10")
    assert rc == 1
    assert "emulation failed" in err and "CR0=" in err


@needs_kvm
def test_trace_records_the_guests_accesses_and_replays(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--trace writes qtest commands that `southbridge qtest` replays."""
    trace = tmp_path / "run.qtest"
    rc, _, _ = _run(capsys, "--bios", str(guestbuild.build("io")), "--trace", str(trace))
    assert rc == 0x43
    text = trace.read_text()
    assert "inb 0x2f00 # 0xff\n" in text
    assert "outb 0xf4 0x21\n" in text
    assert text.startswith("clock_set ")
    assert cli.main(["qtest", str(trace)]) == 0
    replay = capsys.readouterr().out
    assert "OK 0xff" in replay


@needs_kvm
def test_default_run_boots_the_tour(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """No --bios: the bundled tour runs, resets when done and the run ends with 0."""
    com1 = tmp_path / "com1"
    rc = cli.main(["run", "--serial", f"file:{com1}", "--timeout", "20"])
    capsys.readouterr()
    assert rc == 0
    text = com1.read_text()
    assert "southbridge guest tour" in text and "Tour done" in text
