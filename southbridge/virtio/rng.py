"""virtio-rng (virtio 1.2, 5.4): fills each writable buffer from an entropy source.

The source is host I/O, so it sits behind `EntropySource` (`host/entropy.py` has the
`os.urandom` one); a request is filled up to `MAX_REQUEST` bytes (the used length says
how many), so a huge buffer costs bounded host memory and time.
"""

from __future__ import annotations

from typing import Protocol

from southbridge.virtio import device as vd
from southbridge.virtio.queue import SplitQueue

MAX_REQUEST = 64 << 10


class EntropySource(Protocol):
    def read(self, n: int) -> bytes:
        """Up to `n` random bytes (fewer when the source is exhausted for now)."""
        ...


class VirtioRng(vd.VirtioDevice):
    device_id = vd.ID_RNG
    pci_class = 0xFF0000  # unclassified, as QEMU's virtio-rng-pci
    queue_sizes = (64,)
    name = "virtio-rng"

    def __init__(self, source: EntropySource) -> None:
        super().__init__()
        self.source = source

    def notify(self, queue: SplitQueue) -> None:
        t = self.transport
        assert t is not None
        dma = t.dma
        returned = False
        for _ in range(queue.size):  # a racing driver cannot keep one notify going
            if (chain := queue.pop(dma)) is None:
                break
            want = min(chain.writable_len(), MAX_REQUEST)
            data = self.source.read(want)[:want] if want else b""
            written = SplitQueue.scatter(dma, chain.writable, data)
            queue.push(dma, chain.head, written)
            returned = True
        if returned:
            t.used(queue)
