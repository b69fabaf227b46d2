"""Base address registers: types, sizing masks, and mapping regions onto the buses.

A BAR's writable mask is `~(size - 1)` above its read-only type bits (QEMU `pci_register_bar`,
crosvm `add_pci_bar`), so sizing with all-ones, or with a probe that keeps the type bits,
reads back the size and type as hardware does, with no special case. Where the region is
decoded follows from the BAR value, the command register's decode bits and the windows of
the bridges above; `BarMapper` keeps one bus's registrations equal to that.
"""

from __future__ import annotations

import enum
import itertools
import logging
from dataclasses import dataclass, field

from southbridge.core.device import BusDevice, BusError
from southbridge.core.mmiobus import MmioBus
from southbridge.core.portbus import PortBus
from southbridge.core.ratelog import RateLimitedLog

logger = logging.getLogger("southbridge.pci")

# Low bits of a BAR (PCI 3.0, 6.2.5.1).
BAR_IO = 0x1
BAR_MEM64 = 0x4
BAR_PREFETCH = 0x8
ROM_ENABLE = 0x1
ROM_ADDR_MASK = 0xFFFFF800

IO_LIMIT = 1 << 16  # x86 port space
MEM32_LIMIT = 1 << 32
MEM64_LIMIT = 1 << 64


class BarKind(enum.Enum):
    IO = "io"
    MEM32 = "mem32"
    MEM64 = "mem64"


@dataclass(eq=False)
class Bar:
    """One BAR of a function (a 64-bit BAR occupies registers index and index + 1).

    `device` answers the region's accesses at offsets inside the BAR.
    """

    kind: BarKind
    size: int
    device: BusDevice
    prefetchable: bool = False
    name: str = ""
    index: int = 0
    # Bumped whenever the decoded region changes: the newest mapping wins an overlap.
    seq: int = field(default=0, compare=False)
    decoded: tuple[int, int] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        minimum = 4 if self.kind is BarKind.IO else 16
        limit = 256 if self.kind is BarKind.IO else (MEM64_LIMIT >> 1)
        if self.size < minimum or self.size & (self.size - 1) or self.size > limit:
            raise ValueError(f"BAR size 0x{self.size:x} must be a power of two >= {minimum}")
        if self.kind is BarKind.IO and self.prefetchable:
            raise ValueError("an I/O BAR cannot be prefetchable")
        if self.kind is BarKind.MEM32 and self.size > MEM32_LIMIT >> 1:
            raise ValueError("a 32-bit BAR must be smaller than 4 GiB")

    @property
    def is_io(self) -> bool:
        return self.kind is BarKind.IO

    @property
    def registers(self) -> int:
        return 2 if self.kind is BarKind.MEM64 else 1

    def type_bits(self) -> int:
        if self.kind is BarKind.IO:
            return BAR_IO
        bits = BAR_MEM64 if self.kind is BarKind.MEM64 else 0
        return bits | (BAR_PREFETCH if self.prefetchable else 0)

    def wmask(self) -> int:
        """The writable bits of the whole BAR (64 bits wide for a 64-bit BAR)."""
        low = 0x3 if self.is_io else 0xF
        width = 64 if self.kind is BarKind.MEM64 else 32
        return ~(self.size - 1) & ~low & ((1 << width) - 1)

    def address(self, raw: int) -> int:
        """The base address in a BAR value (`raw` spans both registers of a 64-bit BAR)."""
        return raw & ~(0x3 if self.is_io else 0xF)

    def region(self, raw: int) -> tuple[int, int] | None:
        """(base, size) the BAR decodes when enabled, or None when the address is unusable:
        0 (firmware's "unassigned", as QEMU treats it) or past the end of its space (an I/O
        BAR above 64 KiB, a sizing probe's all-ones)."""
        base = self.address(raw)
        limit = {BarKind.IO: IO_LIMIT, BarKind.MEM32: MEM32_LIMIT, BarKind.MEM64: MEM64_LIMIT}
        if base == 0 or base + self.size > limit[self.kind]:
            return None
        return base, self.size


@dataclass(eq=False)
class RomBar:
    """The expansion ROM BAR: bit 0 enables decoding (with the command memory bit)."""

    size: int
    device: BusDevice
    name: str = "rom"
    seq: int = field(default=0, compare=False)
    decoded: tuple[int, int] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.size < 2048 or self.size & (self.size - 1) or self.size > (1 << 24):
            raise ValueError(f"ROM size 0x{self.size:x} must be a power of two >= 2 KiB")

    def wmask(self) -> int:
        return (~(self.size - 1) & ROM_ADDR_MASK) | ROM_ENABLE

    def region(self, raw: int) -> tuple[int, int] | None:
        base = raw & ROM_ADDR_MASK
        if not raw & ROM_ENABLE or base == 0 or base + self.size > MEM32_LIMIT:
            return None
        return base, self.size


_seq = itertools.count(1)


def next_seq() -> int:
    return next(_seq)


@dataclass(frozen=True)
class Region:
    """A region some BAR wants decoded; `owner` identifies the BAR across reconciliations."""

    owner: object
    base: int
    length: int
    device: BusDevice = field(compare=False)
    name: str = field(compare=False)
    seq: int = field(compare=False)

    def overlaps(self, other: Region) -> bool:
        return self.base < other.base + other.length and other.base < self.base + self.length


class BarMapper:
    """Keeps one bus's PCI registrations equal to what the BARs ask for.

    Overlaps between BARs are the guest's business (real buses see two targets answer), so
    they are resolved deterministically and logged: the most recently programmed BAR wins and
    the one it overlaps is left undecoded until the overlap goes away. A BAR over a non-PCI
    region (a platform device, 0xCF8) cannot take it over: it stays undecoded, logged, and
    is tried again on the next reconciliation (any config write that touches decoding).
    """

    def __init__(self, bus: PortBus | MmioBus, space: str) -> None:
        self.bus = bus
        self.space = space
        self.current: dict[object, Region] = {}
        self.refused: dict[object, Region] = {}
        self.log = RateLimitedLog(logger)

    def reconcile(self, desired: list[Region]) -> None:
        accepted: list[Region] = []
        for r in sorted(desired, key=lambda r: -r.seq):
            loser = next((a for a in accepted if a.overlaps(r)), None)
            if loser is not None:
                self.log.warning(
                    f"overlap:{self.space}",
                    "pci: %s BAR %s at 0x%x+0x%x overlaps newer %s; left undecoded",
                    self.space,
                    r.name,
                    r.base,
                    r.length,
                    loser.name,
                )
                continue
            accepted.append(r)
        keep = {r.owner: r for r in accepted}
        for owner, cur in list(self.current.items()):
            new = keep.get(owner)
            if new is None or new != cur or new.device is not cur.device:
                self.bus.unregister(cur.base)
                del self.current[owner]
        self.refused = {}
        for r in accepted:
            if r.owner in self.current:
                continue
            try:
                self.bus.register(r.base, r.length, r.device, r.name)
            except BusError as e:
                self.refused[r.owner] = r
                self.log.warning(f"conflict:{self.space}", "pci: %s; left undecoded", e)
                continue
            self.current[r.owner] = r

    def clear(self) -> None:
        self.reconcile([])
