"""BIOS image loading (southbridge.kvm.loader): placement like a PC's flash and QEMU -bios,
and one clear error for every bad image. No KVM needed: the regions are checked through the
machine's address space."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.device import BusDevice
from southbridge.host import userfile
from southbridge.kvm import loader
from southbridge.kvm.loader import LoadError, load_bios, map_bios, read_image
from southbridge.machine.base import Machine


def _machine() -> Machine:
    m = Machine()
    m.memory.add(0, 640 * 1024, "ram-low")
    m.memory.add(1 << 20, 15 << 20, "ram-high")
    return m


def _image(size: int) -> bytes:
    return bytes((i * 7 + 3) & 0xFF for i in range(size))


def test_image_ends_at_4gib_so_the_reset_vector_is_its_last_16_bytes() -> None:
    """x86 reset: the first fetch is at 0xFFFFFFF0, the image's last 16 bytes."""
    m = _machine()
    img = _image(64 * 1024)
    map_bios(m, img)
    assert m.space.read_bytes(0xFFFFFFF0, 16) == img[-16:]
    assert m.space.read_bytes(0xFFFF0000, 64 * 1024) == img


def test_last_128k_of_a_big_image_is_also_below_1mib() -> None:
    """QEMU -bios: the isa-bios alias is the image's last 128 KiB at 0xE0000-0xFFFFF."""
    m = _machine()
    img = _image(256 * 1024)
    map_bios(m, img)
    assert m.space.read_bytes(0xE0000, 128 * 1024) == img[-128 * 1024 :]
    assert m.space.read_bytes(0x100000 - 16, 16) == img[-16:]


def test_small_image_is_aliased_whole_just_below_1mib() -> None:
    m = _machine()
    img = _image(64 * 1024)
    map_bios(m, img)
    assert m.space.read_bytes(0xF0000, 64 * 1024) == img
    assert m.memory.find(0xEFFFF) is None  # nothing mapped below a 64 KiB alias


def test_unaligned_image_is_padded_at_its_start_with_erased_flash() -> None:
    m = _machine()
    img = _image(5000)
    high, low = map_bios(m, img)
    assert high.size % 4096 == 0 and high.end == 1 << 32
    assert m.space.read_bytes((1 << 32) - len(img), len(img)) == img
    assert m.space.read(high.gpa, 1) == 0xFF
    assert low.end == 1 << 20


def test_rom_ignores_writes() -> None:
    """Flash/ROM: writes are dropped (KVM_MEM_READONLY slots exit as MMIO writes)."""
    m = _machine()
    img = _image(4096)
    map_bios(m, img)
    m.space.write(0xFFFFF000, 4, 0x12345678)
    m.space.write(0xFF000, 1, 0x55)
    assert m.space.read_bytes(0xFFFFF000, 4) == img[:4]
    assert m.space.read_bytes(0xFF000, 1) == img[:1]


def test_image_over_an_mmio_device_is_refused_as_too_big() -> None:
    m = _machine()
    m.mmio.register(0xFFF00000, 0x1000, BusDevice(), "flash-ctl")
    with pytest.raises(LoadError, match=r"too big.*flash-ctl"):
        map_bios(m, _image(2 << 20))


def test_image_over_ram_is_refused() -> None:
    m = Machine()
    m.memory.add(0xFFD00000, 0x200000, "ram-top")
    with pytest.raises(LoadError, match=r"too big.*ram-top"):
        map_bios(m, _image(0x200000))


def test_load_bios_reads_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bios.bin"
    img = _image(8192)
    p.write_bytes(img)
    m = _machine()
    load_bios(m, str(p))
    assert m.space.read_bytes(0xFFFFE000, 8192) == img


def test_missing_image_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"BIOS image '.*nope.bin' not found"):
        read_image(str(tmp_path / "nope.bin"))


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="is a directory"):
        read_image(str(tmp_path))


def test_empty_image_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "empty.bin"
    p.write_bytes(b"")
    with pytest.raises(LoadError, match="is empty"):
        read_image(str(p))


def test_too_big_image_is_refused_without_reading_it(tmp_path: Path) -> None:
    p = tmp_path / "huge.bin"
    with open(p, "wb") as f:
        f.truncate(loader.MAX_BIOS_SIZE + 1)  # sparse: costs no disk
    with pytest.raises(LoadError, match="too big"):
        read_image(str(p))


def test_unreadable_image_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "secret.bin"
    p.write_bytes(b"x" * 16)
    if os.geteuid() != 0:
        p.chmod(0)
    else:  # root reads anything: make open() fail as it does for other users

        def deny(*args: object, **kwargs: object) -> None:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(userfile, "_open_fd", deny)
    with pytest.raises(LoadError, match="not readable"):
        read_image(str(p))


@settings(max_examples=40, deadline=None)
@given(size=st.integers(min_value=1, max_value=300 * 1024))
def test_any_image_size_maps_its_tail_at_both_places(size: int) -> None:
    """Invariant for every size: the image's last bytes are at 4 GiB and below 1 MiB."""
    m = _machine()
    img = _image(size)
    high, low = map_bios(m, img)
    tail = min(size, 16)
    assert m.space.read_bytes((1 << 32) - tail, tail) == img[-tail:]
    assert m.space.read_bytes((1 << 20) - tail, tail) == img[-tail:]
    assert low.size == min(high.size, 128 * 1024)
    assert high.readonly and low.readonly
