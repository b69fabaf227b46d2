"""The snapshot file (issue 14 item 4): round trips of guest RAM and device state into a
fresh machine, sparse RAM, and one clear error for corrupt, truncated, wrong-version and
mismatched files."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from southbridge.kvm import snapshotfile
from southbridge.kvm.snapshotfile import Snapshot, SnapshotError
from southbridge.machine.pc import PcConfig, PcMachine

MiB = 1 << 20


def _machine(mb: int = 16) -> PcMachine:
    return PcMachine(PcConfig(memory_mb=mb))


def _snap(m: PcMachine) -> Snapshot:
    return Snapshot({"memory_mb": m.config.memory_mb, "smp": m.config.smp}, m.save(), [], 7)


def test_round_trip_into_a_fresh_machine(tmp_path: Path) -> None:
    """RAM (low and high regions), device state and metadata come back; afterwards the
    same port accesses answer alike in both machines."""
    a = _machine()
    a.space.write_bytes(0x1000, b"low memory page")
    a.space.write_bytes(8 * MiB + 123, b"\xff" * 5000)  # spans two pages
    a.ports.write(0x70, 1, 0x0B)
    a.ports.write(0x21, 1, 0xFB)
    a.ports.write(0x80, 1, 0x55)
    path = tmp_path / "vm.snap"
    snapshotfile.write(path, _snap(a), a.memory)
    b = _machine()
    b.space.write_bytes(0x5000, b"stale data that the snapshot must clear")
    snap = snapshotfile.read(path, b.memory)
    b.restore(snap.machine)
    assert snap.clock_ns == 7 and snap.config == {"memory_mb": 16, "smp": 1}
    assert b.space.read_bytes(0x1000, 15) == b"low memory page"
    assert b.space.read_bytes(8 * MiB + 123, 5000) == b"\xff" * 5000
    assert b.space.read_bytes(0x5000, 8) == bytes(8)
    for m in (a, b):
        assert m.memory.regions[0].buf[:] == a.memory.regions[0].buf[:]
    assert [b.ports.read(p, 1) for p in (0x21, 0x71, 0x80)] == [
        a.ports.read(p, 1) for p in (0x21, 0x71, 0x80)
    ]
    assert a.save() == b.save()


def test_memory_is_written_sparsely(tmp_path: Path) -> None:
    """A 256 MiB guest that touched 2 MiB writes those 2 MiB, an 8 KiB page bitmap and the
    device state (~270 KB, mostly pc-testdev's and the demo device's buffers in hex)."""
    m = _machine(256)
    for off in range(0, 2 * MiB, 4096):
        m.space.write(16 * MiB + off, 1, 1)
    snap = _snap(m)
    size = snapshotfile.write(tmp_path / "s", snap, m.memory)
    assert size == (tmp_path / "s").stat().st_size
    meta = len(json.dumps(snap.machine, default=snapshotfile._encode))
    assert 2 * MiB + meta < size < 2 * MiB + meta + 16 * 1024


def _damaged(tmp_path: Path, how: str) -> Path:
    m = _machine()
    m.space.write_bytes(0x2000, b"x" * 100)
    path = tmp_path / "vm.snap"
    snapshotfile.write(path, _snap(m), m.memory)
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x40
    elif how == "truncate":
        del data[len(data) - 1000 :]
    elif how == "version":
        data[8:12] = struct.pack("<I", 99)
    elif how == "magic":
        data[:8] = b"QEVM\0\0\0\3"
    elif how == "empty":
        data = bytearray()
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("flip", "checksum mismatch"),
        ("truncate", "checksum mismatch"),
        ("version", "format version 99, this is 1"),
        ("magic", "not a southbridge snapshot"),
        ("empty", "not a southbridge snapshot"),
    ],
)
def test_damaged_files_give_one_clear_error(tmp_path: Path, how: str, message: str) -> None:
    path = _damaged(tmp_path, how)
    with pytest.raises(SnapshotError, match=message) as e:
        snapshotfile.read(path, _machine().memory)
    assert "\n" not in str(e.value)


def test_a_file_with_a_valid_checksum_but_hostile_sections_is_rejected(tmp_path: Path) -> None:
    """The checksum only proves the file is whole, not that it is ours: a forged file with
    a correct digest and nonsense inside still gives a SnapshotError."""
    import hashlib

    def forge(body: bytes) -> Path:
        p = tmp_path / "forged"
        p.write_bytes(body + hashlib.sha256(body).digest())
        return p

    head = snapshotfile.MAGIC + struct.pack("<II", 1, 1)
    deep = b"[" * 100_000 + b"]" * 100_000
    for body in (
        head + struct.pack("<4sQ", b"META", 1 << 60),
        head + struct.pack("<4sQ", b"META", len(deep)) + deep,
        head + struct.pack("<4sQ", b"META", 2) + b"{}",
        head + struct.pack("<4sQ", b"XXXX", 0),
        snapshotfile.MAGIC + struct.pack("<II", 1, 0),
        head,
    ):
        with pytest.raises(SnapshotError):
            snapshotfile.read(forge(body), _machine().memory)


def test_memory_layout_and_configuration_mismatch(tmp_path: Path) -> None:
    m = _machine(16)
    path = tmp_path / "vm.snap"
    snapshotfile.write(path, _snap(m), m.memory)
    with pytest.raises(SnapshotError, match="memory layout differs"):
        snapshotfile.read(path, _machine(32).memory)
    snap = snapshotfile.read_meta(path)
    with pytest.raises(SnapshotError, match=r"memory_mb=16 \(now 32\)"):
        snapshotfile.check_config(snap.config, {"memory_mb": 32, "smp": 1}, str(path))


def test_bytes_in_device_state_survive_json(tmp_path: Path) -> None:
    """pc-testdev keeps its iomem page as bytes; the metadata round-trips them."""
    m = _machine()
    m.testdev.iomem_buf[:4] = b"\x01\x02\x03\x04"
    path = tmp_path / "vm.snap"
    snapshotfile.write(path, _snap(m), m.memory)
    snap = snapshotfile.read(path, _machine().memory)
    assert snap.machine["devices"]["pc-testdev"]["iomem"][:4] == b"\x01\x02\x03\x04"
    json.dumps(snap.config)


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    m = _machine()
    path = tmp_path / "vm.snap"
    path.write_bytes(b"previous snapshot")
    bad = _snap(m)
    bad.machine = {"x": object()}
    with pytest.raises(SnapshotError, match="cannot encode"):
        snapshotfile.write(path, bad, m.memory)
    assert path.read_bytes() == b"previous snapshot"
    with pytest.raises(SnapshotError, match="cannot write snapshot"):
        snapshotfile.write(tmp_path / "missing" / "vm.snap", _snap(m), m.memory)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vm.snap"]


def test_a_fifo_or_a_directory_is_refused_without_blocking(tmp_path: Path) -> None:
    """A snapshot is a regular file: a FIFO with no writer (which open() would wait on
    forever) and a directory are one error line."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        with pytest.raises(snapshotfile.SnapshotError, match="not a regular file"):
            snapshotfile.read_meta(path)
