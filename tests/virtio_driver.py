"""A tiny virtio driver for tests (what QEMU's libqos virtio does): it finds the PCI
capabilities, negotiates features, lays out split queues in guest RAM and submits chains,
all through the machine's config ports, BARs and memory, on the manual clock."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from southbridge.machine.pc import PcMachine
from southbridge.pci.config import CMD_IO, CMD_MASTER, CMD_MEMORY
from southbridge.virtio import device as vd

IO_BASE = 0xC100
MSIX_BASE = 0xFEB00000
MODERN_BASE = 0xFE000000


@dataclass
class Queue:
    index: int
    size: int
    desc: int
    avail: int
    used: int
    notify: int
    avail_idx: int = 0
    used_seen: int = 0
    free: int = 0  # next descriptor index to hand out (a bump allocator; tests stay short)


class Driver:
    def __init__(self, m: PcMachine, slot: int, heap: int = 0x200000, n: int = 0) -> None:
        """`n` picks distinct BAR addresses for the n-th device under test."""
        self.m = m
        self.slot = slot
        self.heap = heap
        self.cfg_write(0x10, 4, IO_BASE + 0x100 * n)
        self.cfg_write(0x14, 4, MSIX_BASE + 0x1000 * n)
        self.modern_base = MODERN_BASE + 0x10000 * n
        self.cfg_write(0x20, 4, self.modern_base)
        self.cfg_write(0x24, 4, 0)
        self.cfg_write(0x04, 2, CMD_IO | CMD_MEMORY | CMD_MASTER)
        self.caps = self.vendor_caps()
        self.common = self._at(1)
        self.isr = self._at(3)
        self.devcfg = self._at(4)
        self.notify_base = self._at(2)
        self.notify_mult = self.cfg_read(self.caps[2] + 16, 4)
        self.queues: dict[int, Queue] = {}

    # -- config space --------------------------------------------------------------------
    def _addr(self, reg: int) -> int:
        return 0x80000000 | (self.slot << 11) | (reg & 0xFC)

    def cfg_read(self, reg: int, size: int) -> int:
        self.m.ports.write(0xCF8, 4, self._addr(reg))
        return self.m.ports.read(0xCFC + (reg & 3), size)

    def cfg_write(self, reg: int, size: int, value: int) -> None:
        self.m.ports.write(0xCF8, 4, self._addr(reg))
        self.m.ports.write(0xCFC + (reg & 3), size, value)

    def vendor_caps(self) -> dict[int, int]:
        """cfg_type -> capability offset, walking the list from 0x34 (4.1.4)."""
        out: dict[int, int] = {}
        p = self.cfg_read(0x34, 1)
        while p:
            if self.cfg_read(p, 1) == 0x09:
                out.setdefault(self.cfg_read(p + 3, 1), p)
            p = self.cfg_read(p + 1, 1)
        return out

    def _at(self, cfg_type: int) -> int:
        cap = self.caps[cfg_type]
        assert self.cfg_read(cap + 4, 1) == 4  # every structure lives in BAR4 here
        return self.modern_base + self.cfg_read(cap + 8, 4)

    # -- registers -----------------------------------------------------------------------
    def rd(self, off: int, size: int) -> int:
        return self.m.mmio.read(self.common + off, size)

    def wr(self, off: int, size: int, value: int) -> None:
        self.m.mmio.write(self.common + off, size, value)

    @property
    def status(self) -> int:
        return self.rd(0x14, 1)

    def device_features(self) -> int:
        self.wr(0x00, 4, 0)
        lo = self.rd(0x04, 4)
        self.wr(0x00, 4, 1)
        return lo | self.rd(0x04, 4) << 32

    def negotiate(self, wanted: int, mask: bool = True) -> bool:
        """3.1.1 steps 1-6: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK."""
        self.wr(0x14, 1, 0)
        assert self.status == 0
        self.wr(0x14, 1, vd.S_ACKNOWLEDGE)
        self.wr(0x14, 1, vd.S_ACKNOWLEDGE | vd.S_DRIVER)
        feats = self.device_features() & wanted if mask else wanted
        for sel in (0, 1):
            self.wr(0x08, 4, sel)
            self.wr(0x0C, 4, (feats >> (32 * sel)) & 0xFFFFFFFF)
        self.wr(0x14, 1, vd.S_ACKNOWLEDGE | vd.S_DRIVER | vd.S_FEATURES_OK)
        return bool(self.status & vd.S_FEATURES_OK)

    def alloc(self, size: int, align: int = 16) -> int:
        self.heap = (self.heap + align - 1) & ~(align - 1)
        addr = self.heap
        self.heap += size
        return addr

    def setup_queue(self, index: int, size: int | None = None) -> Queue:
        self.wr(0x16, 2, index)
        n = size or self.rd(0x18, 2)
        self.wr(0x18, 2, n)
        q = Queue(
            index,
            n,
            self.alloc(16 * n),
            self.alloc(6 + 2 * n, 2),
            self.alloc(6 + 8 * n, 4),
            self.notify_base + self.rd(0x1E, 2) * self.notify_mult,
        )
        for off, addr in ((0x20, q.desc), (0x28, q.avail), (0x30, q.used)):
            self.wr(off, 4, addr & 0xFFFFFFFF)
            self.wr(off + 4, 4, addr >> 32)
        self.wr(0x1C, 2, 1)
        self.queues[index] = q
        return q

    def driver_ok(self) -> None:
        self.wr(0x14, 1, self.status | vd.S_DRIVER_OK)

    def init(self, wanted: int, nqueues: int = 1) -> None:
        assert self.negotiate(wanted | vd.F_VERSION_1)
        for i in range(nqueues):
            self.setup_queue(i)
        self.driver_ok()

    # -- memory and chains ---------------------------------------------------------------
    def mem_write(self, addr: int, data: bytes) -> None:
        self.m.space.write_bytes(addr, data)

    def mem_read(self, addr: int, n: int) -> bytes:
        return self.m.space.read_bytes(addr, n)

    def write_desc(self, q: Queue, i: int, addr: int, length: int, flags: int, nxt: int) -> None:
        self.mem_write(q.desc + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))

    def add_chain(self, q: Queue, out: list[bytes], in_lens: list[int]) -> tuple[int, list[int]]:
        """Descriptors for `out` (readable) then `in_lens` (writable) buffers; returns the
        head and the writable buffers' addresses. Not yet made available."""
        bufs: list[tuple[int, int, bool]] = []
        for data in out:
            a = self.alloc(max(1, len(data)))
            self.mem_write(a, data)
            bufs.append((a, len(data), False))
        ins = []
        for n in in_lens:
            a = self.alloc(max(1, n))
            self.mem_write(a, b"\xee" * n)
            ins.append(a)
            bufs.append((a, n, True))
        head = q.free
        for k, (a, n, w) in enumerate(bufs):
            i = (head + k) % q.size
            last = k == len(bufs) - 1
            flags = (2 if w else 0) | (0 if last else 1)
            self.write_desc(q, i, a, n, flags, (i + 1) % q.size)
        q.free = (head + len(bufs)) % q.size
        return head, ins

    def make_available(self, q: Queue, head: int, kick: bool = True) -> None:
        self.mem_write(q.avail + 4 + 2 * (q.avail_idx % q.size), struct.pack("<H", head))
        q.avail_idx = (q.avail_idx + 1) & 0xFFFF
        self.mem_write(q.avail + 2, struct.pack("<H", q.avail_idx))
        if kick:
            self.kick(q)

    def kick(self, q: Queue) -> None:
        self.m.mmio.write(q.notify, 2, q.index)

    def used(self, q: Queue) -> list[tuple[int, int]]:
        """(id, len) of the elements returned since the last call."""
        idx = struct.unpack("<H", self.mem_read(q.used + 2, 2))[0]
        out = []
        while q.used_seen != idx:
            e = q.used + 4 + 8 * (q.used_seen % q.size)
            out.append(struct.unpack("<II", self.mem_read(e, 8)))
            q.used_seen = (q.used_seen + 1) & 0xFFFF
        return out

    def request(self, q: Queue, out: list[bytes], in_lens: list[int]) -> tuple[int, list[bytes]]:
        """Submit one chain, expect it back at once (inline executor); returns the used
        length and the contents of the writable buffers."""
        head, ins = self.add_chain(q, out, in_lens)
        self.make_available(q, head)
        got = self.used(q)
        assert [g[0] for g in got] == [head], got
        return got[0][1], [self.mem_read(a, n) for a, n in zip(ins, in_lens, strict=True)]
