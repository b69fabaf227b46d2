"""In-memory, bounded backends for the fuzzed virtio functions: no host I/O, no threads,
and nothing a guest can make grow (output is counted and dropped)."""

from __future__ import annotations

import random

from southbridge.devices.blockdev import BlockError, check_range
from southbridge.devices.chardev import Callback

DISK_BYTES = 64 << 10  # a small disk: every sector reachable by a short input


class RamDisk:
    """A fixed-size disk in a bytearray (BlockBackend)."""

    def __init__(self, size: int = DISK_BYTES, read_only: bool = False) -> None:
        self.data = bytearray(size)
        self._ro = read_only

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def read_only(self) -> bool:
        return self._ro

    @property
    def serial(self) -> str:
        return "fuzz-disk"

    def read(self, offset: int, length: int) -> bytes:
        check_range(len(self.data), offset, length)
        return bytes(self.data[offset : offset + length])

    def write(self, offset: int, data: bytes) -> None:
        if self._ro:
            raise BlockError("read-only")
        check_range(len(self.data), offset, len(data))
        self.data[offset : offset + len(data)] = data

    def flush(self) -> None:
        return None

    def discard(self, offset: int, length: int) -> None:
        self.write_zeroes(offset, length)

    def write_zeroes(self, offset: int, length: int) -> None:
        check_range(len(self.data), offset, length)
        self.data[offset : offset + length] = bytes(length)


class SeededEntropy:
    """Deterministic 'entropy' so a replay sees the same bytes (EntropySource)."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def read(self, n: int) -> bytes:
        return self._rng.randbytes(max(0, n))


class SinkChar:
    """A console that takes all output and has a little fixed input (CharBackend)."""

    def __init__(self, input_bytes: bytes = b"fuzz\n") -> None:
        self._input = bytearray(input_bytes)
        self.written = 0

    def attach(self, on_input: Callback, on_ready: Callback) -> None:
        return None

    def write(self, data: bytes) -> int:
        self.written += len(data)
        return len(data)

    def read(self, n: int) -> bytes:
        out = bytes(self._input[: max(0, n)])
        del self._input[: len(out)]
        return out

    def pending_input(self) -> int:
        return len(self._input)

    def close(self) -> None:
        return None


class SinkNet:
    """A link that swallows frames and offers one queued frame (NetBackend)."""

    def __init__(self) -> None:
        self._rx: list[bytes] = [bytes(range(60))]
        self.sent = 0

    def attach(self, on_input: Callback, on_ready: Callback) -> None:
        return None

    def send(self, frame: bytes) -> bool:
        self.sent += 1
        return True

    def peek(self) -> bytes | None:
        return self._rx[0] if self._rx else None

    def take(self) -> None:
        if self._rx:
            self._rx.pop(0)

    def close(self) -> None:
        return None
