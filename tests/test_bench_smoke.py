"""Smoke tests of the KVM benchmarks (benchmarks/portio.py, benchmarks/seabios.py): the
pieces run and agree with each other on a short workload. Nothing here asserts a time."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import portio, seabios
from benchmarks.peers import build_c, timed_run
from southbridge.kvm.testing import kvm_unavailable_reason

_reason = kvm_unavailable_reason()
if _reason is None and shutil.which("gcc") is None:
    _reason = "gcc is needed to build the C KVM loop"
needs_kvm = pytest.mark.skipif(_reason is not None, reason=_reason or "")


def test_patched_image_carries_the_count_in_its_first_dword(tmp_path: Path) -> None:
    image = portio.patched_image(tmp_path, 1234)
    data = image.read_bytes()
    assert struct.unpack_from("<I", data, 0)[0] == 1234
    assert len(data) == 0x10000 and data[0xFFF0] == 0xEA  # the reset vector's far JMP


def test_qemu_gets_the_same_exit_port_and_image(tmp_path: Path) -> None:
    """QEMU's isa-debug-exit defaults to iobase 0x501: the benchmark must move it to 0xF4,
    where the guest (and southbridge) exit, and QEMU's debugcon must be at 0x402."""
    image = tmp_path / "g.bin"
    cmds = portio.commands(tmp_path / "floor", "qemu-system-x86_64", image)
    q = cmds["qemu -accel kvm"]
    assert "isa-debug-exit,iobase=0xf4,iosize=4" in q and q[q.index("-bios") + 1] == str(image)
    sb = cmds["southbridge run"]
    assert sb[-6:] == ["--bios", str(image), "-m", str(portio.MEMORY_MB), "--serial", "none"]
    log = tmp_path / "log"
    s = seabios.qemu_seabios_cmd("qemu-system-x86_64", "kvm,kernel-irqchip=off", image, log)
    assert "isa-debugcon,iobase=0x402,chardev=dbg" in s and f"file,id=dbg,path={log}" in s


@needs_kvm
@pytest.mark.kvm
def test_c_floor_and_southbridge_run_the_same_image_to_the_same_status(tmp_path: Path) -> None:
    """Both end through isa-debug-exit with 0: status (0 << 1) | 1 = 1, after every OUT."""
    floor = build_c("kvm_portio", tmp_path)
    image = portio.patched_image(tmp_path, 2000)
    proc = subprocess.run([str(floor), str(image)], capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stderr.strip()) == (portio.EXIT_STATUS, "outs=2000")
    cmds = portio.commands(floor, None, image)
    assert set(cmds) == {"C KVM loop (floor)", "southbridge run"}
    for cmd in cmds.values():
        timed_run(cmd, portio.EXIT_STATUS, timeout=60)


@needs_kvm
@pytest.mark.kvm
def test_portio_benchmark_prints_its_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert portio.main(["--count", "500", "--repeat", "1", "--no-qemu"]) == 0
    out = capsys.readouterr().out
    assert "C KVM loop (floor)" in out and "southbridge per OUT vs C floor" in out


def test_seabios_benchmark_without_an_image_says_so(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="missing"):
        seabios.main(["--bios", str(tmp_path / "none.bin"), "--no-qemu"])


def test_benchmarks_are_runnable_as_modules() -> None:
    for mod in ("benchmarks.portio", "benchmarks.seabios"):
        proc = subprocess.run(
            [sys.executable, "-m", mod, "--help"], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0 and "--repeat" in proc.stdout


def test_fuzz_campaign_smoke_finds_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/fuzz.py's fixed-seed campaign, a few seconds of it over every target and
    the domains: a regression that makes any device raise, hang, leak or leak across
    domains shows here at once (the 10-million run is the benchmark's default)."""
    from benchmarks import fuzz

    assert fuzz.main(["--ops", "28000", "--no-coverage"]) == 0
    out = capsys.readouterr().out
    assert "findings: 0" in out
    assert all(f"\n{t} " in out for t in ("pit", "virtio", "domains"))


def test_fuzz_benchmark_counts_lines_when_coverage_is_installed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("coverage")
    from benchmarks import fuzz

    assert fuzz.main(["--ops", "500", "--targets", "rtc"]) == 0
    assert "lines of southbridge/" in capsys.readouterr().out
