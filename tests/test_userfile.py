"""The one way user files are read and written (host/userfile.py): only regular files are
read, never blocking, bounded, text checked; outputs never wait for a FIFO's reader."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.host.userfile import (
    InputFileError,
    open_output_binary,
    open_output_fd,
    read_bytes,
    read_text,
)


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert read_bytes(p, "file", 3) == b"abc"
    assert read_text(p, "file", 3) == "abc"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, "not found"),
        (lambda p: p.mkdir(), "is a directory, not a regular file"),
        (lambda p: os.mkfifo(p), "is a FIFO, not a regular file"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_bytes(b"12345"), "is too big: 5 bytes, at most 4"),
    ],
    ids=["missing", "directory", "fifo", "empty", "too-big"],
)
def test_what_is_refused_and_why(tmp_path: Path, make: object, reason: str) -> None:
    p = tmp_path / "input"
    make(p)  # type: ignore[operator]
    with pytest.raises(InputFileError) as e:
        read_bytes(p, "BIOS image", 4)
    assert e.value.reason == reason
    assert str(e.value) == f"BIOS image {str(p)!r} {reason}"


def test_a_device_that_never_ends_is_refused() -> None:
    # /dev/zero would fill memory if read "whole"; it is no regular file (stat(2): S_ISCHR).
    with pytest.raises(InputFileError, match="is a character device"):
        read_bytes("/dev/zero", "kernel", 1 << 20)


def test_a_symlink_to_a_fifo_is_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(tmp_path / "fifo")
    with pytest.raises(InputFileError, match="is a FIFO"):
        read_bytes(tmp_path / "link", "config", 10)


def test_empty_may_be_allowed_and_nul_in_a_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "e").write_bytes(b"")
    assert read_text(tmp_path / "e", "script", 10, allow_empty=True) == ""
    with pytest.raises(InputFileError, match="NUL byte"):
        read_bytes("a\0b", "script", 10)


def test_undecodable_text_names_the_first_bad_byte(tmp_path: Path) -> None:
    p = tmp_path / "t"
    p.write_bytes("héllo".encode() + b"\xc3(")  # RFC 3629: 0xc3 needs a continuation byte
    with pytest.raises(InputFileError, match=r"not UTF-8 text \(byte 0xc3 at offset 6\)"):
        read_text(p, "config", 100)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=64), limit=st.integers(0, 80))
def test_any_bytes_are_returned_or_refused_never_raise_otherwise(data: bytes, limit: int) -> None:
    fd, name = tempfile.mkstemp()
    try:
        os.write(fd, data)
        os.close(fd)
        try:
            text = read_text(name, "input", limit)
        except InputFileError:
            return
        assert text.encode() == data and 0 < len(data) <= limit
    finally:
        os.unlink(name)


def test_output_to_a_fifo_without_reader_is_refused_at_once(tmp_path: Path) -> None:
    """open(2) O_WRONLY|O_NONBLOCK on a FIFO with no reader fails with ENXIO instead of
    waiting for one (fifo(7))."""
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="a FIFO with no reader"):
        open_output_fd(tmp_path / "fifo")


def test_output_to_a_fifo_with_a_reader_works_and_blocks_normally(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with open_output_binary(path) as out:
            assert os.get_blocking(out.fileno())
            out.write(b"hi")
            got: list[bytes] = []
            t = threading.Thread(target=lambda: got.append(os.read(rfd, 2)))
            t.start()
            t.join(5)
        assert got == [b"hi"]
    finally:
        os.close(rfd)


def test_output_truncates_a_regular_file_and_refuses_a_directory(tmp_path: Path) -> None:
    p = tmp_path / "out"
    p.write_bytes(b"old contents")
    with open_output_binary(p) as f:
        f.write(b"new")
    assert p.read_bytes() == b"new"
    with pytest.raises(IsADirectoryError):
        open_output_fd(tmp_path)
