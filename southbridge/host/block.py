"""Raw disk images on the host, and the worker that runs disk I/O off the vCPU threads.

`RawImage` implements the device-side `BlockBackend` protocol (devices/blockdev.py) with
pread/pwrite on one file descriptor. `ThreadExecutor` runs submitted requests on a worker
thread of its own and calls each completion under the machine lock, so a slow disk never
stalls a vCPU and completions are ordinary device code. Devices bound how many requests they
have in flight (a virtqueue's size, an IDE channel's one command), so the executor's queue is
bounded by its callers.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import logging
import os
import stat
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from southbridge.devices.blockdev import BlockError, check_range

logger = logging.getLogger("southbridge.block")

T = TypeVar("T")

# Zeroes are written in chunks of this size so write-zeroes/discard of a whole disk never
# allocates more than this.
_ZERO_CHUNK = 1 << 20


class ImageError(ValueError):
    """The image cannot be used (missing, not a regular file or block device, no permission):
    one line for the user."""


class RawImage:
    """A raw image file (or block device) opened read-write or read-only."""

    def __init__(self, path: str, read_only: bool = False) -> None:
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(path, flags)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EROFS) and not read_only:
                raise ImageError(f"{path}: {e.strerror} (use readonly=on)") from None
            raise ImageError(f"{path}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                size = st.st_size
            elif stat.S_ISBLK(st.st_mode):
                size = os.lseek(fd, 0, os.SEEK_END)
            else:
                raise ImageError(f"{path}: not a regular file or block device")
            os.set_blocking(fd, True)
        except ImageError:
            os.close(fd)
            raise
        except OSError as e:
            os.close(fd)
            raise ImageError(f"{path}: {e.strerror}") from None
        self.path = path
        self._fd = fd
        self._size = size
        self._read_only = read_only
        # Like QEMU's default: no serial unless given; a stable one from the path helps guests
        # that key on it (GET_ID, IDENTIFY).
        self._serial = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:20]

    @property
    def size(self) -> int:
        return self._size

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def serial(self) -> str:
        return self._serial

    def read(self, offset: int, length: int) -> bytes:
        check_range(self._size, offset, length)
        try:
            data = os.pread(self._fd, length, offset)
        except OSError as e:
            raise BlockError(f"{self.path}: read: {e.strerror}") from None
        # A file shrunk under us reads short: the missing tail reads as zeroes, like a hole.
        return data + bytes(length - len(data)) if len(data) < length else data

    def write(self, offset: int, data: bytes) -> None:
        if self._read_only:
            raise BlockError(f"{self.path}: read-only")
        check_range(self._size, offset, len(data))
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(self._fd, view, offset)
                view, offset = view[n:], offset + n
        except OSError as e:
            raise BlockError(f"{self.path}: write: {e.strerror}") from None

    def flush(self) -> None:
        if self._read_only:
            return
        try:
            os.fdatasync(self._fd)
        except OSError as e:
            raise BlockError(f"{self.path}: flush: {e.strerror}") from None

    def write_zeroes(self, offset: int, length: int) -> None:
        if self._read_only:
            raise BlockError(f"{self.path}: read-only")
        check_range(self._size, offset, length)
        zero = bytes(min(length, _ZERO_CHUNK))
        end = offset + length
        while offset < end:
            n = min(len(zero), end - offset)
            self.write(offset, zero[:n])
            offset += n

    def discard(self, offset: int, length: int) -> None:
        # Reading a discarded range back as zeroes is allowed (virtio 1.2, 5.2.6.2) and what
        # an unmapped region of a sparse raw file gives.
        self.write_zeroes(offset, length)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RawImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ThreadExecutor:
    """One worker thread running block requests in submission order; completions run under
    `lock` (the machine's device lock)."""

    def __init__(self, lock: Any, name: str = "block") -> None:
        self._lock = lock
        self._queue: collections.deque[tuple[Callable[[], Any], Callable[[Any], None]]] = (
            collections.deque()
        )
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._worker, name=f"{name}-io", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[], T], done: Callable[[T | BlockError], None]) -> None:
        with self._cond:
            if self._closed:
                return
            self._queue.append((work, done))
            self._cond.notify()

    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                work, done = self._queue.popleft()
            try:
                result: Any = work()
            except BlockError as e:
                result = e
            except Exception as e:  # a host-side bug must not kill the worker silently
                logger.exception("block request failed")
                result = BlockError(str(e))
            with self._lock:
                try:
                    done(result)
                except Exception:
                    logger.exception("block completion failed")

    def close(self) -> None:
        """Finish the queued requests, then stop the worker. Call it without holding the
        machine lock: the worker takes that lock to complete what is still queued."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join()
