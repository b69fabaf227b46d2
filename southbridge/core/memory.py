"""Guest physical memory: mmap'ed regions (shared with KVM), plus an address space that
combines them with the MMIO bus for CPU-less accesses (qtest, DMA, loaders)."""

from __future__ import annotations

import bisect
import mmap
from dataclasses import dataclass, field

from southbridge.core.device import ones
from southbridge.core.mmiobus import MmioBus


@dataclass
class RamRegion:
    gpa: int
    size: int
    name: str
    readonly: bool = False
    buf: mmap.mmap = field(repr=False, default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.buf is None:
            self.buf = mmap.mmap(-1, self.size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)

    @property
    def end(self) -> int:
        return self.gpa + self.size


class GuestMemory:
    """RAM and ROM regions at guest physical addresses; non-overlapping, sorted."""

    def __init__(self) -> None:
        self.regions: list[RamRegion] = []
        self._bases: list[int] = []

    def add(
        self, gpa: int, size: int, name: str, readonly: bool = False, buf: mmap.mmap | None = None
    ) -> RamRegion:
        if size <= 0 or gpa < 0 or gpa % mmap.PAGESIZE or size % mmap.PAGESIZE:
            raise ValueError(f"{name}: memory region 0x{gpa:x}+0x{size:x} must be page aligned")
        for r in self.regions:
            if r.gpa < gpa + size and gpa < r.end:
                raise ValueError(f"{name}: memory at 0x{gpa:x} overlaps {r.name}")
        region = RamRegion(gpa, size, name, readonly, buf)  # type: ignore[arg-type]
        i = bisect.bisect_right(self._bases, gpa)
        self._bases.insert(i, gpa)
        self.regions.insert(i, region)
        return region

    def remove(self, region: RamRegion) -> None:
        i = self.regions.index(region)
        del self.regions[i]
        del self._bases[i]

    def find(self, gpa: int) -> RamRegion | None:
        i = bisect.bisect_right(self._bases, gpa) - 1
        if i >= 0 and gpa < self.regions[i].end:
            return self.regions[i]
        return None

    def total(self) -> int:
        return sum(r.size for r in self.regions if not r.readonly)


class AddressSpace:
    """What a CPU-less bus master sees: RAM/ROM first, then the MMIO bus, else all-ones."""

    def __init__(self, memory: GuestMemory, mmio: MmioBus) -> None:
        self.memory = memory
        self.mmio = mmio

    def read(self, gpa: int, size: int) -> int:
        return int.from_bytes(self.read_bytes(gpa, size), "little")

    def write(self, gpa: int, size: int, value: int) -> None:
        self.write_bytes(gpa, (value & ones(size)).to_bytes(size, "little"))

    def read_bytes(self, gpa: int, length: int) -> bytes:
        out = bytearray()
        while length > 0:
            r = self.memory.find(gpa)
            if r is not None:
                n = min(length, r.end - gpa)
                out += r.buf[gpa - r.gpa : gpa - r.gpa + n]
            else:
                n = 1 << min(3, (length.bit_length() - 1))
                while gpa % n:
                    n //= 2
                out += self.mmio.read(gpa, n).to_bytes(n, "little")
            gpa += n
            length -= n
        return bytes(out)

    def write_bytes(self, gpa: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            r = self.memory.find(gpa)
            left = len(data) - pos
            if r is not None:
                n = min(left, r.end - gpa)
                if not r.readonly:
                    r.buf[gpa - r.gpa : gpa - r.gpa + n] = data[pos : pos + n]
            else:
                n = 1 << min(3, (left.bit_length() - 1))
                while gpa % n:
                    n //= 2
                self.mmio.write(gpa, n, int.from_bytes(data[pos : pos + n], "little"))
            gpa += n
            pos += n
