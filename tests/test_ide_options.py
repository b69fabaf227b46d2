"""--drive if=ide, --cdrom and --boot order=c|d in QEMU's words: index assignment, the fw_cfg
bootorder paths SeaBIOS matches (src/boot.c build_ata_path), one error line per bad option."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from southbridge.cli import main
from southbridge.commands import virtio_opts
from southbridge.core.clock import ManualClock
from southbridge.machine.pc import PcMachine


def _img(tmp_path: Path, name: str = "d.img", size: int = 1 << 20) -> Path:
    p = tmp_path / name
    p.write_bytes(bytes(size))
    return p


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    virtio_opts.add_options(p)
    return p.parse_args(list(argv))


def _machine(*argv: str) -> PcMachine:
    setup = virtio_opts.open_setup(virtio_opts.check(_args(*argv)), threads=False)
    return PcMachine(clock=ManualClock(), virtio=setup)


def _bootorder(m: PcMachine) -> bytes:
    key = m.fw_cfg.file_key("bootorder")
    assert key is not None
    data = m.fw_cfg.item(key)
    assert data is not None
    return data


def test_indexes_follow_qemu(tmp_path: Path) -> None:
    """Drives without index= take the free places in order; --cdrom is index 2 (QEMU)."""
    a, b = _img(tmp_path, "a.img"), _img(tmp_path, "b.img")
    opts = virtio_opts.check(
        _args("--drive", f"file={a},if=ide", "--cdrom", str(b), "--drive", f"file={a},if=ide")
    )
    assert [(i, s.media) for i, s in opts.ide] == [(0, "disk"), (1, "disk"), (2, "cdrom")]


def test_bootorder_disk_and_cdrom(tmp_path: Path) -> None:
    a, iso = _img(tmp_path, "a.img"), _img(tmp_path, "c.iso")
    m = _machine("--drive", f"file={a},if=ide", "--cdrom", str(iso), "--boot", "order=d")
    try:
        assert _bootorder(m) == (
            b"/pci@i0cf8/ide@1,1/drive@1/disk@0\n/pci@i0cf8/ide@1,1/drive@0/disk@0\0"
        )
        assert m.ide.drive(0) is not None and m.ide.drive(2) is not None
        assert m.ide.drive(2).kind == "atapi"  # type: ignore[union-attr]
    finally:
        m.close()
    m = _machine("--drive", f"file={a},if=ide,index=1", "--drive", f"file={a}", "--boot", "order=c")
    try:
        assert _bootorder(m) == (b"/pci@i0cf8/ide@1,1/drive@0/disk@1\n/pci@i0cf8/scsi@3/disk@0,0\0")
    finally:
        m.close()


def test_lspci_lists_the_ide_function(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lspci", "--drive", f"file={_img(tmp_path)},if=ide"]) == 0
    assert "00:01.1 IDE interface [0101]" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--drive", "file={img},if=ide,index=4"], "IDE has indexes 0-3"),
        (["--drive", "file={img},if=ide,index=2", "--cdrom", "{img}"], "index 2 is taken"),
        (["--drive", "file={img},media=cdrom"], "needs if=ide"),
        (["--drive", "file={small},if=ide"], "too small for an IDE disk"),
        (["--cdrom", "{small}"], "too small for an IDE CD-ROM"),
        (["--cdrom", "/nonexistent/x.iso"], "No such file"),
        (["--boot", "order=d", "--drive", "file={img},if=ide"], "no CD-ROM"),
        (["--boot", "order=c", "--cdrom", "{img}"], "no --drive"),
        (["--drive", "file={img},if=ide"] * 5, "all 4 IDE places are taken"),
    ],
)
def test_bad_options_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    img, small = _img(tmp_path), _img(tmp_path, "s.img", 100)
    argv = [a.format(img=img, small=small) for a in argv]
    assert main(["lspci", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
