"""Whole-VM snapshots under KVM (`run --snapshot FILE` + SIGUSR1, `run --restore FILE`):
the snap_count guest, snapshotted mid-run in one process and resumed in another, ends with
the same result as an uninterrupted run (its registers, RAM and the devices' state all
carried over), printing only the rest of its progress; bad files and a different
configuration are one error line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from southbridge import cli
from southbridge.kvm import guestbuild
from southbridge.kvm.testing import kvm_unavailable_reason
from tests import waiting

_reason = kvm_unavailable_reason()
pytestmark = [pytest.mark.kvm, pytest.mark.skipif(_reason is not None, reason=_reason or "")]
BOUND_S = 120.0  # how long to wait for what must happen (never a rate)
DOTS = 64  # snap_count's progress marks
OK = (0x20 << 1) | 1


def wait_for(cond: Any) -> bool:
    return waiting.wait_for(cond, BOUND_S)


def argv(tmp_path: Path, console: str, *extra: str) -> list[str]:
    image = guestbuild.build("snap_count")
    debugcon = f"file:{tmp_path / console}"
    return ["run", "--serial", "none", "--bios", str(image), "--debugcon", debugcon, *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("ref")
    assert cli.main(argv(tmp, "ref.txt")) == OK
    out = (tmp / "ref.txt").read_text()
    assert out.count(".") == DOTS and out.endswith("\n")
    return out


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("snap")
    snap = tmp / "vm.snap"
    cmd = [sys.executable, "-m", "southbridge", *argv(tmp, "first.txt", "--snapshot", str(snap))]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    try:
        first = tmp / "first.txt"
        assert wait_for(lambda: first.exists() and first.read_text().count(".") >= 8)
        os.kill(proc.pid, signal.SIGUSR1)
        assert wait_for(snap.exists)  # written to a temporary file, then renamed
    finally:
        proc.kill()
        proc.wait()
    return snap


def test_restored_run_finishes_like_an_uninterrupted_one(
    tmp_path: Path, reference: str, snapshot: Path
) -> None:
    assert cli.main(argv(tmp_path, "rest.txt", "--restore", str(snapshot))) == OK
    rest = (tmp_path / "rest.txt").read_text()
    assert rest.rsplit("=", 1)[1] == reference.rsplit("=", 1)[1]  # the same final sums
    assert 0 < rest.count(".") <= DOTS - 8  # it went on from the snapshot, not from reset


def test_snapshot_file_holds_ram_sparsely(snapshot: Path) -> None:
    # 128 MiB of RAM of which the guest touched a few pages (plus the 64 KiB image).
    assert snapshot.stat().st_size < 2 << 20


def run_one_line(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, list[str]]:
    rc = cli.main(args)
    return rc, capsys.readouterr().err.strip().splitlines()


def test_corrupt_truncated_and_mismatched_snapshots_are_one_line(
    tmp_path: Path, snapshot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = snapshot.read_bytes()
    corrupt = tmp_path / "corrupt.snap"
    corrupt.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    short = tmp_path / "short.snap"
    short.write_bytes(data[: len(data) // 2])
    for bad in (corrupt, short, tmp_path / "missing.snap"):
        rc, err = run_one_line(capsys, argv(tmp_path, "x.txt", "--restore", str(bad)))
        assert rc == 2 and len(err) == 1 and err[0].startswith("southbridge"), err
    rc, err = run_one_line(capsys, argv(tmp_path, "x.txt", "-m", "64", "--restore", str(snapshot)))
    assert rc == 2 and len(err) == 1 and "memory_mb" in err[0], err


def test_the_tour_snapshotted_while_counting_resumes_its_counts(tmp_path: Path) -> None:
    """The bundled tour snapshotted during its one-RTC-second interrupt count and resumed
    in a new process goes on from there (no banner again) and still counts the PIT's
    1000 and the RTC's 1024 interrupts in that second: timers, interrupt controllers,
    reinjection state and the guest's own counters all carried over."""
    snap, com1 = tmp_path / "tour.snap", tmp_path / "first.txt"
    cmd = [sys.executable, "-m", "southbridge", "run", "--serial", f"file:{com1}"]
    proc = subprocess.Popen([*cmd, "--snapshot", str(snap)], stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: com1.exists() and "Counting interrupts" in com1.read_text())
        os.kill(proc.pid, signal.SIGUSR1)
        assert wait_for(snap.exists)
    finally:
        proc.kill()
        proc.wait()
    rest = tmp_path / "rest.txt"
    assert cli.main(["run", "--serial", f"file:{rest}", "--restore", str(snap)]) == 0
    out = rest.read_text()
    assert "southbridge guest tour" not in out and "Tour done" in out, out
    pit = re.search(r"PIT IRQ0: (\d+) interrupts", out)
    rtc = re.search(r"RTC IRQ8: (\d+) periodic", out)
    assert pit is not None and rtc is not None, out  # the count was still running
    assert abs(int(pit.group(1)) - 1000) <= 2 and abs(int(rtc.group(1)) - 1024) <= 2, out
