"""The bundled-guest builder: as/ld into a cache keyed on the sources' hash."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from southbridge.kvm import guestbuild
from southbridge.kvm.guestbuild import GuestBuildError, build

pytestmark = pytest.mark.skipif(
    shutil.which("as") is None or shutil.which("ld") is None, reason="needs binutils"
)


@pytest.fixture
def guests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    src = tmp_path / "guests"
    src.mkdir()
    for name in ("_lib.S", "guest.ld", "halt.S"):
        shutil.copy(guestbuild.GUEST_DIR / name, src / name)
    monkeypatch.setattr(guestbuild, "GUEST_DIR", src)
    monkeypatch.setenv("SOUTHBRIDGE_CACHE", str(tmp_path / "cache"))
    return src


def test_image_is_64k_with_the_reset_vector_in_its_last_16_bytes(guests: Path) -> None:
    data = build("halt").read_bytes()
    assert len(data) == 0x10000
    assert data[0xFFF0] == 0xEA  # ljmp ptr16:16 at F000:FFF0
    assert data[0xFFF3:0xFFF5] == b"\x00\xf0"  # ... to segment 0xF000


def test_second_build_comes_from_the_cache(guests: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = build("halt")

    def no_tools(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(subprocess, "run", no_tools)
    assert build("halt") == first


def test_changed_source_or_include_is_rebuilt(guests: Path) -> None:
    first = build("halt")
    (guests / "_lib.S").write_text((guests / "_lib.S").read_text() + "\n/* changed */\n")
    second = build("halt")
    assert second != first and second.read_bytes() == first.read_bytes()


def test_assembler_errors_are_reported(guests: Path) -> None:
    (guests / "bad.S").write_text('        .include "_lib.S"\n        GUEST_ENTRY\n  bogus %ax\n')
    with pytest.raises(GuestBuildError, match=r"(?s)building guest 'bad'.*bogus"):
        build("bad")


def test_unknown_guest_names_the_available_ones(guests: Path) -> None:
    with pytest.raises(GuestBuildError, match=r"no bundled guest named 'nope'.*halt"):
        build("nope")


def test_bundled_guests_all_build() -> None:
    for name in guestbuild.available():
        assert build(name).stat().st_size == 0x10000
