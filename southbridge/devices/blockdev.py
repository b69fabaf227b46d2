"""What a disk controller sees of its disk: the block back-end protocol and request completion.

virtio-blk and the IDE function share this: a device never opens a file or starts a thread. It
hands a request (a plain callable doing the I/O on a `BlockBackend`) to a `BlockExecutor`,
which runs it (inline for CPU-less tests and qtest, on a host worker thread under KVM) and
calls the completion back with the result or the `BlockError` the I/O raised. Host-side
executors call completions under the machine lock, so completions are ordinary device code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

SECTOR = 512

T = TypeVar("T")


class BlockError(Exception):
    """The back-end could not do the I/O (the device reports a media or I/O error)."""


class BlockBackend(Protocol):
    """A disk image: byte-addressed, fixed size."""

    @property
    def size(self) -> int:
        """Capacity in bytes."""
        ...

    @property
    def read_only(self) -> bool: ...

    @property
    def serial(self) -> str:
        """A stable identifier for the disk (virtio-blk GET_ID, ATA IDENTIFY serial)."""
        ...

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes at `offset`; raises BlockError past the end or on host errors."""
        ...

    def write(self, offset: int, data: bytes) -> None:
        """Raises BlockError when read-only, past the end, or on host errors."""
        ...

    def flush(self) -> None: ...

    def discard(self, offset: int, length: int) -> None:
        """The range may read back as anything afterwards (here: zeroes where the host can)."""
        ...

    def write_zeroes(self, offset: int, length: int) -> None: ...


class BlockExecutor(Protocol):
    """Runs back-end I/O and reports completion (see the module docstring)."""

    def submit(self, work: Callable[[], T], done: Callable[[T | BlockError], None]) -> None: ...


class InlineExecutor:
    """Runs the I/O at once on the caller's thread: deterministic, for the manual clock."""

    def submit(self, work: Callable[[], T], done: Callable[[T | BlockError], None]) -> None:
        try:
            result: T | BlockError = work()
        except BlockError as e:
            result = e
        done(result)


def check_range(size: int, offset: int, length: int) -> None:
    """Raise BlockError unless [offset, offset + length) lies inside a disk of `size` bytes."""
    if offset < 0 or length < 0 or offset + length > size:
        raise BlockError(f"range {offset}+{length} is outside the {size}-byte disk")
