"""A pc with IDE drives on in-memory images, driven through its ports as a guest would."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from southbridge.core.clock import ManualClock
from southbridge.devices.blockdev import BlockError, check_range
from southbridge.machine.ide import IdeSetup, IdeUnit
from southbridge.machine.pc import PcMachine
from southbridge.pci.piix3ide import Piix3Ide

DEVFN = (1 << 3) | 1
BM_BASE = 0xC000
PRI, SEC = 0x1F0, 0x170
PRI_CTL, SEC_CTL = 0x3F6, 0x376


class MemDisk:
    """A BlockBackend over a bytearray; `fail` makes the next I/O raise BlockError."""

    def __init__(self, data: bytes | int, read_only: bool = False, serial: str = "") -> None:
        self.data = bytearray(data)
        self._ro = read_only
        self._serial = serial or "MEMDISK"
        self.fail = False
        self.flushes = 0

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def read_only(self) -> bool:
        return self._ro

    @property
    def serial(self) -> str:
        return self._serial

    def _check(self, offset: int, length: int) -> None:
        if self.fail:
            raise BlockError("injected")
        check_range(len(self.data), offset, length)

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return bytes(self.data[offset : offset + length])

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        if self._ro:
            raise BlockError("read-only")
        self.data[offset : offset + len(data)] = data

    def flush(self) -> None:
        if self.fail:
            raise BlockError("injected")
        self.flushes += 1

    def discard(self, offset: int, length: int) -> None:
        self._check(offset, length)

    def write_zeroes(self, offset: int, length: int) -> None:
        self._check(offset, length)
        self.data[offset : offset + length] = bytes(length)


class QueuedExecutor:
    """Holds requests until `run_all` (a host worker that has not answered yet)."""

    def __init__(self) -> None:
        self.queue: list[tuple[Callable[[], Any], Callable[[Any], None]]] = []

    def submit(self, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        self.queue.append((work, done))

    def run_all(self) -> None:
        while self.queue:
            work, done = self.queue.pop(0)
            try:
                result = work()
            except BlockError as e:
                result = e
            done(result)


def pattern(sectors: int, size: int = 512) -> bytes:
    """Each sector filled with its own number, so a wrong sector shows."""
    return b"".join(
        bytes([(i * 7 + j) & 0xFF for j in range(16)]) * (size // 16) for i in range(sectors)
    )


class Rig:
    def __init__(
        self,
        units: list[IdeUnit] | None = None,
        enable: bool = True,
        executor: Any = None,
        memory_mb: int = 16,
    ) -> None:
        from southbridge.machine.pc import PcConfig

        self.clock = ManualClock()
        setup = IdeSetup(units=units or [], executor=executor)
        self.m = PcMachine(PcConfig(memory_mb=memory_mb), clock=self.clock, ide=setup)
        self.ide: Piix3Ide = self.m.ide
        if enable:
            self.cfg_w(0x40, 2, 0x8000)
            self.cfg_w(0x42, 2, 0x8000)
            self.cfg_w(0x20, 4, BM_BASE)
            self.cfg_w(0x04, 2, 0x0005)  # I/O space, bus master

    def cfg_w(self, off: int, size: int, v: int) -> None:
        self.m.ports.write(0xCF8, 4, 0x80000000 | DEVFN << 8 | off & 0xFC)
        self.m.ports.write(0xCFC + (off & 3), size, v)

    def cfg_r(self, off: int, size: int) -> int:
        self.m.ports.write(0xCF8, 4, 0x80000000 | DEVFN << 8 | off & 0xFC)
        return self.m.ports.read(0xCFC + (off & 3), size)

    def inb(self, port: int) -> int:
        return self.m.ports.read(port, 1)

    def outb(self, port: int, v: int) -> None:
        self.m.ports.write(port, 1, v)

    def inw(self, port: int) -> int:
        return self.m.ports.read(port, 2)

    def outw(self, port: int, v: int) -> None:
        self.m.ports.write(port, 2, v)

    def irq(self, n: int = 14) -> bool:
        return self.m.gsi.line(n).level

    def read_data(self, base: int, nbytes: int) -> bytes:
        return b"".join(self.inw(base).to_bytes(2, "little") for _ in range(nbytes // 2))

    def write_data(self, base: int, data: bytes) -> None:
        for i in range(0, len(data), 2):
            self.outw(base, int.from_bytes(data[i : i + 2], "little"))

    def lba28(self, base: int, lba: int, count: int, dev: int = 0) -> None:
        self.outb(base + 6, 0xE0 | dev << 4 | lba >> 24 & 0xF)
        self.outb(base + 2, count & 0xFF)
        self.outb(base + 3, lba & 0xFF)
        self.outb(base + 4, lba >> 8 & 0xFF)
        self.outb(base + 5, lba >> 16 & 0xFF)

    def lba48(self, base: int, lba: int, count: int, dev: int = 0) -> None:
        """The previous (HOB) bytes first, then the low ones (ATA-6 6.2.2)."""
        self.outb(base + 6, 0x40 | dev << 4)
        for c, a in ((count >> 8, lba >> 24), (count, lba)):
            self.outb(base + 2, c & 0xFF)
            self.outb(base + 3, a & 0xFF)
            self.outb(base + 4, a >> 8 & 0xFF)
            self.outb(base + 5, a >> 16 & 0xFF)

    def prd(self, table: int, entries: list[tuple[int, int, bool]]) -> None:
        raw = b"".join(
            a.to_bytes(4, "little") + ((n & 0xFFFF) | (1 << 31 if eot else 0)).to_bytes(4, "little")
            for a, n, eot in entries
        )
        self.m.space.write_bytes(table, raw)
