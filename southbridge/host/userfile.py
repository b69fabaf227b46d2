"""Reading a file the user named (an image, a configuration, a dump, a script) safely.

Files are untrusted input like everything else: the path may name a FIFO (a plain open
would block until a writer comes, forever), a directory, a device that never ends
(/dev/zero), a file far too big, or bytes that are not text. Every such case becomes one
error line, and nothing blocks:

* the open is non-blocking (O_NONBLOCK: a FIFO opens at once with no writer) and the type is
  checked on the open descriptor (fstat, so a path swapped after a check is still caught);
  only regular files are read;
* at most `limit` bytes are read (one more tells "too big" from "exactly the limit", since a
  file may grow after fstat);
* text must be UTF-8; the error names the offset of the first bad byte.

Errors are `InputFileError`: str() is "<what> '<path>' <reason>"; callers that word their
own messages use `.reason`.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, TextIO


class InputFileError(ValueError):
    """A user's file cannot be used: one line naming the file and why."""

    def __init__(self, what: str, path: str, reason: str) -> None:
        super().__init__(f"{what} {path!r} {reason}")
        self.path = path
        self.reason = reason


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


_os_open = os.open  # bound at import: tests that fake os.open for /dev/kvm leave this be


def _open_fd(path: str) -> int:
    return _os_open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_bytes(
    path: str | os.PathLike[str],
    what: str,
    limit: int,
    allow_empty: bool = False,
) -> bytes:
    """The contents of the regular file at `path`, at most `limit` bytes; InputFileError
    for anything else. `what` names the file in messages ("BIOS image")."""
    name = os.fsdecode(path)

    def error(reason: str) -> InputFileError:
        return InputFileError(what, name, reason)

    if "\0" in name:
        raise error("has a NUL byte in its path")
    try:
        fd = _open_fd(name)
    except FileNotFoundError:
        raise error("not found") from None
    except PermissionError:
        raise error("is not readable (permission denied)") from None
    except OSError as e:
        raise error(f"cannot be opened: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise error(f"is too big: {st.st_size} bytes, at most {limit}")
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as e:
        raise error(f"cannot be read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise error(f"is too big: more than {limit} bytes")
    if not data and not allow_empty:
        raise error("is empty")
    return data


def read_text(
    path: str | os.PathLike[str],
    what: str,
    limit: int,
    allow_empty: bool = False,
) -> str:
    """`read_bytes`, decoded as UTF-8 (a bad byte is InputFileError, not UnicodeDecodeError)."""
    data = read_bytes(path, what, limit, allow_empty)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        reason = f"is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
        raise InputFileError(what, os.fsdecode(path), reason) from None


def find_in(name: str, dirs: Sequence[Path]) -> Path | None:
    """The first `dir/name` that is a regular file (the firmware search paths)."""
    return next((d / name for d in dirs if (d / name).is_file()), None)


def open_output_fd(path: str | os.PathLike[str]) -> int:
    """Create or truncate the file at `path` for writing without blocking: a FIFO nobody
    reads from is refused (ENXIO) instead of waiting for a reader forever. Raises OSError
    (its strerror a clear reason); the descriptor is blocking again when returned, so a slow
    reader back-pressures as with any file."""
    name = os.fsdecode(path)
    if "\0" in name:
        raise OSError(errno.EINVAL, "the path has a NUL byte", name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = _os_open(name, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ENXIO:
            raise OSError(errno.ENXIO, "a FIFO with no reader", name) from None
        raise
    os.set_blocking(fd, True)
    return fd


def open_output_text(path: str | os.PathLike[str]) -> TextIO:
    """`open_output_fd` as a UTF-8 text stream."""
    return open(open_output_fd(path), "w", encoding="utf-8")


def open_output_binary(path: str | os.PathLike[str]) -> BinaryIO:
    """`open_output_fd` as an unbuffered binary stream."""
    return open(open_output_fd(path), "wb", buffering=0)
