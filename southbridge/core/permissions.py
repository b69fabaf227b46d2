"""The per-domain I/O port permission bitmap: 65,536 bits, one per port."""

from __future__ import annotations

from collections.abc import Callable, Iterator

NPORTS = 0x10000


class PortPermissions:
    """Which host ports a domain may touch directly.

    A permitted port bypasses emulation and reaches the host port backend (the "enabled port"
    rule of the original design). Listeners hear about every change so buses can keep their
    O(1) routing tables in step.
    """

    def __init__(self) -> None:
        self._bits = bytearray(NPORTS // 8)
        self._listeners: list[Callable[[int, int], None]] = []

    @staticmethod
    def _check(base: int, length: int) -> None:
        if length <= 0 or base < 0 or base + length > NPORTS:
            raise ValueError(f"port range 0x{base:x}+{length} is outside 0x0-0xffff")

    def add_listener(self, fn: Callable[[int, int], None]) -> None:
        self._listeners.append(fn)

    def _set(self, base: int, length: int, allowed: bool) -> None:
        self._check(base, length)
        bits = self._bits
        for port in range(base, base + length):
            if allowed:
                bits[port >> 3] |= 1 << (port & 7)
            else:
                bits[port >> 3] &= ~(1 << (port & 7)) & 0xFF
        for fn in self._listeners:
            fn(base, length)

    def allow(self, base: int, length: int = 1) -> None:
        self._set(base, length, True)

    def deny(self, base: int, length: int = 1) -> None:
        self._set(base, length, False)

    def deny_all(self) -> None:
        self._set(0, NPORTS, False)

    def allowed(self, port: int) -> bool:
        if not 0 <= port < NPORTS:
            return False
        return bool(self._bits[port >> 3] & (1 << (port & 7)))

    def allowed_range(self, base: int, length: int) -> bool:
        """True when every port of the range is permitted (a whole access may pass through)."""
        return all(self.allowed(p) for p in range(base, base + length))

    def ranges(self) -> Iterator[tuple[int, int]]:
        """The permitted ranges as (base, length), in port order."""
        start = -1
        for port in range(NPORTS + 1):
            on = port < NPORTS and self.allowed(port)
            if on and start < 0:
                start = port
            elif not on and start >= 0:
                yield start, port - start
                start = -1

    def count(self) -> int:
        return sum(bin(b).count("1") for b in self._bits)

    def to_bytes(self) -> bytes:
        return bytes(self._bits)
