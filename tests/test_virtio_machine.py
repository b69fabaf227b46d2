"""virtio in the pc machine and on the command line: slots, fw_cfg bootorder, lspci, and
one clear error line for each bad option or image."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from southbridge.cli import main
from southbridge.core.clock import ManualClock
from southbridge.host.block import RawImage
from southbridge.host.chardev import BufferBackend
from southbridge.host.entropy import UrandomSource
from southbridge.machine.pc import PcMachine
from southbridge.machine.virtio import VirtioSetup
from tests.virtio_driver import Driver


def _img(tmp_path: Path, name: str = "d.img", fill: int = 0x5A) -> Path:
    p = tmp_path / name
    p.write_bytes(bytes([fill]) * 8192)
    return p


def test_pc_machine_slots_and_bootorder(tmp_path: Path) -> None:
    a, b = _img(tmp_path, "a.img", 1), _img(tmp_path, "b.img", 2)
    setup = VirtioSetup(
        drives=[RawImage(str(a)), RawImage(str(b))],
        rng=UrandomSource(),
        console=BufferBackend(),
        boot_order="c",
    )
    m = PcMachine(clock=ManualClock(), virtio=setup)
    try:
        assert [(f.slot, f.device_id) for f in m.virtio] == [
            (3, 0x1001),
            (4, 0x1001),
            (5, 0x1005),
            (6, 0x1003),
        ]
        key = m.fw_cfg.file_key("bootorder")
        assert key is not None
        # QEMU's format: Open Firmware paths, newline-separated, NUL-terminated.
        assert m.fw_cfg.item(key) == b"/pci@i0cf8/scsi@3/disk@0,0\n/pci@i0cf8/scsi@4/disk@0,0\0"
        d = Driver(m, 4)
        d.init(0)
        _, (data, st) = d.request(d.queues[0], [bytes(16)], [512, 1])  # T_IN sector 0
        assert st == b"\0" and data == b"\x02" * 512
    finally:
        m.close()


def test_lspci_shows_virtio_with_capabilities(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = _img(tmp_path)
    argv = ["lspci", "--drive", f"file={img}", "--device", "virtio-rng-pci"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (
        "00:03.0 SCSI storage controller [0100]: Red Hat, Inc. Virtio block device [1af4:1001]"
        in out
    )
    assert "[1af4:1005]" in out
    if shutil.which("lspci") is None:
        pytest.skip("pciutils' lspci is not installed")
    dump = tmp_path / "dump.txt"
    assert main([*argv, "--dump", str(dump)]) == 0
    vv = subprocess.run(
        ["lspci", "-F", str(dump), "-vv", "-s", "03.0"], capture_output=True, text=True, check=True
    ).stdout
    # pciutils decodes the virtio vendor capabilities (4.1.4) by their cfg_type.
    for name in ("CommonCfg", "ISR", "DeviceCfg", "Notify"):
        assert f"Vendor Specific Information: VirtIO: {name}" in vv
    assert "multiplier=00000004" in vv and "MSI-X: Enable- Count=2" in vv


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--drive", "file=/nonexistent/x.img"], "No such file"),
        (["--drive", "file={dir}"], "Is a directory"),
        (["--drive", "file={img},format=qcow2"], "only raw"),
        (["--drive", "file={img},bogus=1"], "unknown drive option"),
        (["--device", "virtio-gpu"], "unknown"),
        (["--device", "virtio-serial,speed=9"], "unknown option"),
        (["--boot", "order=z", "--drive", "file={img}"], "order=c or order=n"),
        (["--boot", "order=c"], "no --drive"),
        (["--boot", "order=n"], "no --netdev to boot from"),
        (["--netdev", "tap"], "tap needs ifname=NAME"),
        (["--netdev", "tap,ifname=a/b"], "is not an interface name"),
        (["--netdev", "tap,ifname=t0", "--netdev", "tap,ifname=t0"], "given twice"),
        (["--netdev", "socket"], "unknown"),
        (["--netdev", "user,mac=01:00:00:00:00:01"], "multicast"),
        (["--netdev", "user,mac=zz"], "expected XX:XX"),
    ],
)
def test_bad_options_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    img = _img(tmp_path)
    argv = [a.format(dir=tmp_path, img=img) for a in argv]
    assert main(["lspci", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_read_only_permission(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = _img(tmp_path)
    img.chmod(0o444)
    try:
        if os.access(img, os.W_OK):
            pytest.skip("running as root: permission bits do not stop writes")
        assert main(["lspci", "--drive", f"file={img}"]) == 2
        assert "readonly=on" in capsys.readouterr().err
        assert main(["lspci", "--drive", f"file={img},readonly=on"]) == 0
    finally:
        img.chmod(0o644)


@pytest.mark.skipif(shutil.which("passt") is None, reason="Debian's passt is not installed")
def test_lspci_with_a_passt_network_card(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lspci", "--netdev", "user", "--netdev", "user,mac=52:54:00:aa:bb:cc"]) == 0
    out = capsys.readouterr().out
    assert (
        "00:03.0 Ethernet controller [0200]: Red Hat, Inc. Virtio network device [1af4:1000]" in out
    )
    assert "00:04.0 Ethernet controller [0200]" in out


def test_missing_passt_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["lspci", "--netdev", "user"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "passt" in err[0]
