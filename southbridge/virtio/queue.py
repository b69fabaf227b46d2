"""Split virtqueues (virtio 1.2, 2.7): descriptor chains, indirect tables, used-ring updates.

The guest owns every byte read here, so each address, length, index and chain is checked
before use (Firecracker's queue.rs lessons): ring and buffer ranges must lie in RAM, a head
or `next` index must be below the queue size, a chain may not visit more descriptors than
the table holds (a loop ends there), an indirect table must be a whole number of
descriptors within the limit and may not nest. Any violation raises `QueueError`, which the
device turns into NEEDS_RESET; nothing guest-controlled allocates or loops without bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from southbridge.core.state import StateError, get_bool, get_int
from southbridge.pci.dma import Dma, DmaError

DESC_SIZE = 16
VIRTQ_DESC_F_NEXT = 1
VIRTQ_DESC_F_WRITE = 2
VIRTQ_DESC_F_INDIRECT = 4
VIRTQ_AVAIL_F_NO_INTERRUPT = 1
VIRTQ_USED_F_NO_NOTIFY = 1
MAX_QUEUE_SIZE = 32768
MAX_INDIRECT = 1024  # descriptors in one indirect table (QEMU's VIRTQUEUE_MAX_SIZE)
LEGACY_ALIGN = 4096


class QueueError(Exception):
    """The driver broke the virtqueue rules; the device must be reset."""


@dataclass(frozen=True)
class Segment:
    addr: int
    length: int
    writable: bool


@dataclass
class Chain:
    """One popped descriptor chain: its head index and its buffers in order."""

    head: int
    segments: list[Segment] = field(default_factory=list)

    @property
    def readable(self) -> list[Segment]:
        return [s for s in self.segments if not s.writable]

    @property
    def writable(self) -> list[Segment]:
        return [s for s in self.segments if s.writable]

    def readable_len(self) -> int:
        return sum(s.length for s in self.readable)

    def writable_len(self) -> int:
        return sum(s.length for s in self.writable)


def need_event(event: int, new: int, old: int) -> bool:
    """virtio 1.2, 2.7.10: notify when `event` lies in (old, new] (16-bit wrap)."""
    return (new - event - 1) & 0xFFFF < (new - old) & 0xFFFF


class SplitQueue:
    """One queue's driver-visible registers and the device's ring position."""

    def __init__(self, index: int, max_size: int) -> None:
        if not 1 <= max_size <= MAX_QUEUE_SIZE or max_size & (max_size - 1):
            raise ValueError("a queue size is a power of two up to 32768")
        self.index = index
        self.max_size = max_size
        self.reset()

    def reset(self) -> None:
        self.size = self.max_size
        self.enabled = False
        self.msix_vector = 0xFFFF
        self.desc = 0
        self.driver = 0
        self.device = 0
        self.last_avail = 0
        self.used_idx = 0
        self.signalled_used = 0
        self.signalled_valid = False
        self.event_idx = False
        self.indirect = False

    _STATE = (
        ("size", MAX_QUEUE_SIZE),
        ("msix_vector", 0xFFFF),
        ("desc", 2**64 - 1),
        ("driver", 2**64 - 1),
        ("device", 2**64 - 1),
        ("last_avail", 0xFFFF),
        ("used_idx", 0xFFFF),
        ("signalled_used", 0xFFFF),
    )
    _FLAGS = ("enabled", "signalled_valid", "event_idx", "indirect")

    def save(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k, _ in self._STATE}
        out.update({k: getattr(self, k) for k in self._FLAGS})
        return out

    def check_state(self, state: dict[str, Any]) -> Callable[[], None]:
        """Validate a saved queue (StateError) and return the function that loads it."""
        vals: dict[str, Any] = {k: get_int(state, k, 0, hi) for k, hi in self._STATE}
        vals.update({k: get_bool(state, k) for k in self._FLAGS})
        n = vals["size"]
        if vals["enabled"] and (not 1 <= n <= self.max_size or n & (n - 1)):
            raise StateError(f"queue {self.index}: saved size {n} is not valid")

        def load() -> None:
            for k, v in vals.items():
                setattr(self, k, v)

        return load

    def set_legacy_pfn(self, pfn: int) -> None:
        """Legacy layout (virtio 1.2, 2.7.2 / 4.1.5.1.1 legacy): one contiguous area."""
        base = pfn * LEGACY_ALIGN
        self.size = self.max_size
        self.desc = base
        self.driver = base + DESC_SIZE * self.size
        used = self.driver + 6 + 2 * self.size
        self.device = (used + LEGACY_ALIGN - 1) & ~(LEGACY_ALIGN - 1)
        self.enabled = pfn != 0

    # -- checks --------------------------------------------------------------------------
    def check_layout(self, dma: Dma) -> None:
        """The rings must be aligned (2.7) and lie in RAM; raises QueueError."""
        n = self.size
        if not 1 <= n <= self.max_size or n & (n - 1):
            raise QueueError(f"queue {self.index}: size {n} is not a power of two <= max")
        if self.desc % 16 or self.driver % 2 or self.device % 4:
            raise QueueError(f"queue {self.index}: ring addresses misaligned")
        _in_ram(dma, self.desc, DESC_SIZE * n)
        _in_ram(dma, self.driver, 6 + 2 * n)
        _in_ram(dma, self.device, 6 + 8 * n)

    # -- ring access ---------------------------------------------------------------------
    def avail_idx(self, dma: Dma) -> int:
        return _u16(dma, self.driver + 2)

    def pending(self, dma: Dma) -> int:
        """Available chains not yet popped; raises QueueError on an impossible index."""
        n = (self.avail_idx(dma) - self.last_avail) & 0xFFFF
        if n > self.size:
            raise QueueError(f"queue {self.index}: avail index moved by {n} > size {self.size}")
        return n

    def pop(self, dma: Dma) -> Chain | None:
        if not self.pending(dma):
            return None
        slot = self.last_avail % self.size
        head = _u16(dma, self.driver + 4 + 2 * slot)
        chain = self._walk(dma, head)
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        if self.event_idx:
            _w16(dma, self.device + 4 + 8 * self.size, self.last_avail)
        return chain

    def unpop(self, dma: Dma, to: int) -> None:
        """Give back the chains popped since `last_avail` was `to` (none returned yet),
        telling an EVENT_IDX driver the earlier position again."""
        self.last_avail = to & 0xFFFF
        if self.event_idx:
            _w16(dma, self.device + 4 + 8 * self.size, self.last_avail)

    def _walk(self, dma: Dma, head: int) -> Chain:
        if head >= self.size:
            raise QueueError(f"queue {self.index}: head {head} >= size {self.size}")
        chain = Chain(head)
        table, count, i = self.desc, self.size, head
        seen = 0
        indirect_done = False
        seen_writable = False
        while True:
            seen += 1
            if seen > count:
                raise QueueError(f"queue {self.index}: descriptor chain loops or is too long")
            raw = dma.read(table + DESC_SIZE * i, DESC_SIZE)
            addr = int.from_bytes(raw[0:8], "little")
            length = int.from_bytes(raw[8:12], "little")
            flags = int.from_bytes(raw[12:14], "little")
            nxt = int.from_bytes(raw[14:16], "little")
            if flags & VIRTQ_DESC_F_INDIRECT:
                # 2.7.5.3.1: only with the feature, never nested, never with NEXT.
                if not self.indirect or indirect_done or table != self.desc:
                    raise QueueError(f"queue {self.index}: indirect descriptor not allowed")
                if flags & VIRTQ_DESC_F_NEXT:
                    raise QueueError(f"queue {self.index}: indirect descriptor with NEXT")
                if not length or length % DESC_SIZE or length > DESC_SIZE * MAX_INDIRECT:
                    raise QueueError(f"queue {self.index}: indirect table of {length} bytes")
                if addr % 16:
                    raise QueueError(f"queue {self.index}: indirect table misaligned")
                _in_ram(dma, addr, length)
                table, count, i, seen = addr, length // DESC_SIZE, 0, 0
                indirect_done = True
                continue
            writable = bool(flags & VIRTQ_DESC_F_WRITE)
            if seen_writable and not writable:
                raise QueueError(f"queue {self.index}: readable descriptor after a writable one")
            seen_writable |= writable
            if length:
                _in_ram(dma, addr, length)
                chain.segments.append(Segment(addr, length, writable))
            if not flags & VIRTQ_DESC_F_NEXT:
                return chain
            if nxt >= count:
                raise QueueError(f"queue {self.index}: next {nxt} >= table of {count}")
            i = nxt

    def push(self, dma: Dma, head: int, written: int) -> None:
        """Return a chain: the element first, then the index the driver polls (2.7.8)."""
        slot = self.used_idx % self.size
        elem = head.to_bytes(4, "little") + (written & 0xFFFFFFFF).to_bytes(4, "little")
        dma.write(self.device + 4 + 8 * slot, elem)
        self.used_idx = (self.used_idx + 1) & 0xFFFF
        _w16(dma, self.device + 2, self.used_idx)

    def should_interrupt(self, dma: Dma) -> bool:
        """After pushes: does the driver want an interrupt (2.7.7, 2.7.10)?

        The spec wants a full barrier between storing used.idx and loading used_event /
        avail.flags (a store-load pair, which x86 may reorder). Pure Python has no fence
        instruction; here the window is the few bytecodes in between, and a missed
        interrupt only delays the driver to its next kick or timeout. A host-side fence
        (the executor's lock release is one) would close it fully."""
        old, new = self.signalled_used, self.used_idx
        valid = self.signalled_valid
        self.signalled_used, self.signalled_valid = new, True
        if self.event_idx:
            event = _u16(dma, self.driver + 4 + 2 * self.size)
            return not valid or need_event(event, new, old)
        return not _u16(dma, self.driver) & VIRTQ_AVAIL_F_NO_INTERRUPT

    # -- chain data ----------------------------------------------------------------------
    @staticmethod
    def gather(dma: Dma, segments: list[Segment], limit: int) -> bytes:
        """The bytes of `segments` in order, at most `limit` (the caller's bound)."""
        out = bytearray()
        for s in segments:
            n = min(s.length, limit - len(out))
            if n <= 0:
                break
            out += dma.read(s.addr, n)
        return bytes(out)

    @staticmethod
    def scatter(dma: Dma, segments: list[Segment], data: bytes) -> int:
        """Write `data` across `segments` in order; returns the bytes written."""
        pos = 0
        for s in segments:
            if pos >= len(data):
                break
            n = min(s.length, len(data) - pos)
            dma.write(s.addr, data[pos : pos + n])
            pos += n
        return pos


def _in_ram(dma: Dma, addr: int, length: int) -> None:
    """Raise QueueError unless [addr, addr + length) is RAM (no MMIO, no holes, no ROM)."""
    if addr < 0 or length < 0 or addr + length > 1 << 64:
        raise QueueError(f"range 0x{addr:x}+0x{length:x} is outside the address space")
    mem = dma.space.memory
    end = addr + length
    while addr < end:
        r = mem.find(addr)
        if r is None or r.readonly:
            raise QueueError(f"guest address 0x{addr:x} is not RAM")
        addr = r.end


def _u16(dma: Dma, addr: int) -> int:
    try:
        return int.from_bytes(dma.read(addr, 2), "little")
    except DmaError as e:
        raise QueueError(str(e)) from None


def _w16(dma: Dma, addr: int, value: int) -> None:
    try:
        dma.write(addr, (value & 0xFFFF).to_bytes(2, "little"))
    except DmaError as e:
        raise QueueError(str(e)) from None
