"""virtio-blk (virtio 1.2, 5.2) on the block back-end.

A request is a readable header (type, reserved, sector), data, and a writable status byte
last. The I/O runs through the `BlockExecutor` (a host worker under KVM, inline on the manual
clock); its completion writes the data and status into the guest buffers and returns the
chain. A completion from before a device reset is dropped (the buffers belong to a new
driver now). In-flight requests are bounded per device in count and bytes, and each request
by `seg_max` segments of at most `size_max` bytes, so a guest cannot make the VMM allocate
without limit; a request that breaks the limits is answered with VIRTIO_BLK_S_IOERR.
"""

from __future__ import annotations

import struct
from typing import Any

from southbridge.core.state import StateError
from southbridge.devices.blockdev import SECTOR, BlockBackend, BlockError, BlockExecutor
from southbridge.pci.dma import DmaError
from southbridge.virtio import device as vd
from southbridge.virtio.queue import Chain, QueueError, SplitQueue

F_SIZE_MAX = 1 << 1
F_SEG_MAX = 1 << 2
F_RO = 1 << 5
F_BLK_SIZE = 1 << 6
F_FLUSH = 1 << 9
F_DISCARD = 1 << 13
F_WRITE_ZEROES = 1 << 14

T_IN = 0
T_OUT = 1
T_FLUSH = 4
T_GET_ID = 8
T_DISCARD = 11
T_WRITE_ZEROES = 13

S_OK = 0
S_IOERR = 1
S_UNSUPP = 2

ID_BYTES = 20
SEG_MAX = 126  # queue size - 2, as QEMU: header and status take two descriptors
SIZE_MAX = 1 << 16
MAX_REQUEST = SEG_MAX * SIZE_MAX
MAX_INFLIGHT_BYTES = 64 << 20
MAX_DISCARD_SECTORS = 1 << 22
MAX_DISCARD_SEG = 1
QUEUE_SIZE = 256
WZ_UNMAP = 1


class VirtioBlk(vd.VirtioDevice):
    device_id = vd.ID_BLOCK
    pci_class = 0x010000  # mass storage, SCSI (what QEMU's virtio-blk-pci reports)
    queue_sizes = (QUEUE_SIZE,)
    name = "virtio-blk"

    def __init__(self, backend: BlockBackend, executor: BlockExecutor) -> None:
        super().__init__()
        self.backend = backend
        self.executor = executor
        self.inflight = 0
        self.inflight_bytes = 0
        self._busy = False

    def features(self) -> int:
        f = F_SIZE_MAX | F_SEG_MAX | F_BLK_SIZE | F_FLUSH | F_DISCARD | F_WRITE_ZEROES
        return f | (F_RO if self.backend.read_only else 0)

    def config(self) -> bytes:
        """struct virtio_blk_config (5.2.4) up to write_zeroes_may_unmap."""
        cap = self.backend.size // SECTOR
        return (
            struct.pack("<QII", cap, SIZE_MAX, SEG_MAX)
            + struct.pack("<HBB", 0, 0, 0)  # geometry
            + struct.pack("<I", SECTOR)  # blk_size
            + struct.pack("<BBHI", 0, 0, 0, 0)  # topology
            + struct.pack("<BBH", 0, 0, 1)  # writeback, unused, num_queues
            + struct.pack("<III", MAX_DISCARD_SECTORS, MAX_DISCARD_SEG, 1)
            + struct.pack("<III", MAX_DISCARD_SECTORS, MAX_DISCARD_SEG, 1)
            + struct.pack("<B3x", 1)
        )

    def save(self) -> dict[str, Any]:
        # Requests in flight hold guest buffers the state cannot describe: the caller
        # saves after the executor has drained (it completes under the machine lock).
        if self.inflight:
            raise StateError(f"virtio-blk: {self.inflight} requests still in flight")
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        self.inflight = self.inflight_bytes = 0

    def reset(self) -> None:
        self.inflight = 0
        self.inflight_bytes = 0

    # -- requests ------------------------------------------------------------------------
    def notify(self, queue: SplitQueue) -> None:
        if self._busy:
            return  # an inline completion re-entered: the outer loop keeps popping
        t = self.transport
        assert t is not None
        self._busy = True
        try:
            for _ in range(queue.size):  # a racing driver cannot keep one notify going
                if self.inflight >= queue.size or self.inflight_bytes >= MAX_INFLIGHT_BYTES:
                    break
                chain = queue.pop(t.dma)
                if chain is None:
                    break
                self._start(queue, chain)
        finally:
            self._busy = False

    def _start(self, q: SplitQueue, chain: Chain) -> None:
        t = self.transport
        assert t is not None
        dma = t.dma
        w = chain.writable
        if chain.readable_len() < 16 or not w or w[-1].length < 1:
            # 5.2.6.1: no room for the header or status; nothing can be reported back.
            t.needs_reset(f"blk request {chain.head} without header or status")
            return
        readable = chain.readable
        head = SplitQueue.gather(dma, readable, 16)
        rtype, _, sector = struct.unpack("<IIQ", head)
        # Data buffers: writable ones but the status byte (the last writable byte).
        status_seg = w[-1]
        data_w = list(w[:-1])
        if status_seg.length > 1:
            data_w.append(type(status_seg)(status_seg.addr, status_seg.length - 1, True))
        status_addr = status_seg.addr + status_seg.length - 1
        out_len = chain.readable_len() - 16
        in_len = sum(s.length for s in data_w)
        nsegs = len(chain.segments) - 2
        gen = t.generation
        be = self.backend

        def finish(status: int, data: bytes = b"") -> None:
            if t.generation != gen:
                return  # the device was reset meanwhile
            self.inflight -= 1
            self.inflight_bytes -= cost
            try:
                written = SplitQueue.scatter(dma, data_w, data) if data else 0
                dma.write(status_addr, bytes([status]))
                q.push(dma, chain.head, written + 1)
            except (QueueError, DmaError, RuntimeError) as e:  # guest memory moved away
                t.needs_reset(f"blk completion: {e}")
                return
            t.used(q)
            if not self._busy:
                t.notify(q.index)  # resume what the in-flight bound held back (guarded)

        cost = in_len if rtype == T_IN else out_len if rtype == T_OUT else 0
        self.inflight += 1
        self.inflight_bytes += cost
        offset = sector * SECTOR
        if nsegs > SEG_MAX or max(out_len, in_len) > MAX_REQUEST:
            finish(S_IOERR)
        elif rtype in (T_IN, T_OUT) and (cost % SECTOR or (rtype == T_OUT and be.read_only)):
            finish(S_IOERR)  # whole sectors only (QEMU too); no writes to a read-only disk
        elif rtype == T_IN:
            self._submit(lambda: be.read(offset, in_len), finish, True)
        elif rtype == T_OUT:
            data = _gather_after(dma, readable, 16, out_len)
            self._submit(lambda: be.write(offset, data), finish, False)
        elif rtype == T_FLUSH:
            self._submit(be.flush, finish, False)
        elif rtype == T_GET_ID:
            ident = be.serial.encode("ascii", "replace")[:ID_BYTES].ljust(ID_BYTES, b"\0")
            finish(S_OK, ident[:in_len])
        elif rtype in (T_DISCARD, T_WRITE_ZEROES):
            self._ranges(rtype, _gather_after(dma, readable, 16, min(out_len, 16)), finish)
        else:
            finish(S_UNSUPP)

    def _ranges(self, rtype: int, seg: bytes, finish: Any) -> None:
        """One struct virtio_blk_discard_write_zeroes (5.2.6: max_*_seg = 1)."""
        be = self.backend
        if len(seg) != 16 or be.read_only:
            finish(S_IOERR if be.read_only else S_UNSUPP)
            return
        sector, num, flags = struct.unpack("<QII", seg)
        if num > MAX_DISCARD_SECTORS or flags & ~WZ_UNMAP or (rtype == T_DISCARD and flags):
            finish(S_UNSUPP)  # 5.2.6.2: flags other than unmap (write-zeroes only)
            return
        off, n = sector * SECTOR, num * SECTOR
        if rtype == T_DISCARD:
            self._submit(lambda: be.discard(off, n), finish, False)
        else:
            self._submit(lambda: be.write_zeroes(off, n), finish, False)

    def _submit(self, work: Any, finish: Any, returns_data: bool) -> None:
        def done(result: Any) -> None:
            if isinstance(result, BlockError):
                finish(S_IOERR)
            elif returns_data:
                finish(S_OK, result)
            else:
                finish(S_OK)

        self.executor.submit(work, done)


def _gather_after(dma: Any, segs: list[Any], skip: int, length: int) -> bytes:
    data = SplitQueue.gather(dma, segs, skip + length)
    return data[skip:]
