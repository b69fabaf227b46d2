"""Host port backends: where a permitted port's accesses really go."""

from __future__ import annotations

import os
import threading

from southbridge.core.device import ones


class HostPortBackend:
    """No host access at all (the default): reads float high, writes vanish."""

    name = "none"

    def read(self, port: int, size: int) -> int:
        return ones(size)

    def write(self, port: int, size: int, value: int) -> None:
        return None

    def close(self) -> None:
        return None


class FakeHostPorts(HostPortBackend):
    """In-memory host ports for tests: a byte per port, plus per-port hooks for devices.

    Simulated host devices register handlers; ports with no handler behave as plain latches.
    A log of every access lets tests prove what did and did not reach the "host".
    """

    name = "fake"

    def __init__(self) -> None:
        self.mem = bytearray(0x10003)
        self.log: list[tuple[str, int, int, int]] = []
        self._handlers: dict[int, tuple[int, object]] = {}
        self._lock = threading.Lock()

    def attach(self, base: int, length: int, device: object) -> None:
        """Route host ports base..base+length-1 to `device` (a BusDevice-like object)."""
        for p in range(base, base + length):
            self._handlers[p] = (base, device)

    def detach(self, base: int, length: int) -> None:
        for p in range(base, base + length):
            self._handlers.pop(p, None)

    def read(self, port: int, size: int) -> int:
        with self._lock:
            h = self._handlers.get(port)
            if h is not None:
                base, dev = h
                value = int(dev.read(port - base, size))  # type: ignore[attr-defined]
            else:
                value = int.from_bytes(self.mem[port : port + size], "little")
            self.log.append(("in", port, size, value))
            return value & ones(size)

    def write(self, port: int, size: int, value: int) -> None:
        with self._lock:
            self.log.append(("out", port, size, value))
            h = self._handlers.get(port)
            if h is not None:
                base, dev = h
                dev.write(port - base, size, value)  # type: ignore[attr-defined]
                return
            self.mem[port : port + size] = (value & ones(size)).to_bytes(size, "little")


class DevPortBackend(HostPortBackend):
    """Real host I/O through /dev/port (root only). Never used by tests."""

    name = "devport"

    def __init__(self, path: str = "/dev/port") -> None:
        self._fd = os.open(path, os.O_RDWR)
        self._lock = threading.Lock()

    def read(self, port: int, size: int) -> int:
        with self._lock:
            data = os.pread(self._fd, size, port)
        return int.from_bytes(data.ljust(size, b"\xff"), "little")

    def write(self, port: int, size: int, value: int) -> None:
        with self._lock:
            os.pwrite(self._fd, (value & ones(size)).to_bytes(size, "little"), port)

    def close(self) -> None:
        os.close(self._fd)


def make_backend(name: str) -> HostPortBackend:
    if name == "none":
        return HostPortBackend()
    if name == "fake":
        return FakeHostPorts()
    if name == "devport":
        return DevPortBackend()
    raise ValueError(f"unknown host port backend {name!r} (none, fake, devport)")
