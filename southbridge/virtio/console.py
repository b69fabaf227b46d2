"""virtio-console (virtio 1.2, 5.3) with one port, on a character backend like the UART's.

Queue 0 (receiveq) takes host input, queue 1 (transmitq) carries guest output. Output the
backend refuses stays in the one chain being sent (it is not returned until the backend
takes it all, so nothing is lost and nothing more is popped meanwhile); input waits in the
backend until the guest posts buffers (flow control, never dropped). Each step is bounded
by the queue size and `MAX_CHUNK` bytes. The backend's callbacks must arrive under the
machine lock (the machine wraps them, as it does the UART's).
"""

from __future__ import annotations

import struct
from typing import Any

from southbridge.core.state import get_int
from southbridge.devices.chardev import CharBackend
from southbridge.virtio import device as vd
from southbridge.virtio.queue import Chain, SplitQueue

F_EMERG_WRITE = 1 << 2
MAX_CHUNK = 64 << 10
RXQ, TXQ = 0, 1


class VirtioConsole(vd.StreamDevice):
    device_id = vd.ID_CONSOLE
    pci_class = 0x078000  # simple communication controller, other (as QEMU)
    queue_sizes = (128, 128)
    name = "virtio-console"

    def __init__(self, backend: CharBackend) -> None:
        super().__init__()
        self.backend = backend
        self._tx: tuple[Chain, bytes, int] | None = None  # chain, its bytes, bytes taken
        self._skip = 0  # bytes of the next chain already sent before a restore

    def features(self) -> int:
        return F_EMERG_WRITE

    def config(self) -> bytes:
        return struct.pack("<HHII", 0, 0, 1, 0)  # cols, rows, max_nr_ports, emerg_wr

    def config_write(self, offset: int, data: bytes) -> None:
        if offset == 8 and data:  # emerg_wr (5.3.4): one character, no queue needed
            self.backend.write(data[:1])

    def reset(self) -> None:
        self._tx = None
        self._skip = 0

    def save(self) -> dict[str, Any]:
        """A chain held under back-pressure is saved as "pop it again, skip what was sent"
        (the queue's last_avail is saved one back, see `rewind`)."""
        return {"tx_sent": self._tx[2] if self._tx is not None else -1}

    def rewind(self) -> dict[int, int]:
        return {TXQ: 1} if self._tx is not None else {}

    def restore(self, state: dict[str, Any]) -> None:
        sent = get_int(state, "tx_sent", -1, MAX_CHUNK)
        self._tx = None
        self._skip = max(0, sent)

    # -- the two directions --------------------------------------------------------------
    def _transmit(self) -> None:
        t = self.transport
        assert t is not None
        q = t.queues[TXQ]
        if not q.enabled:
            return
        dma = t.dma
        returned = False
        for _ in range(q.size):
            if self._tx is None:
                chain = q.pop(dma)
                if chain is None:
                    break
                data = SplitQueue.gather(dma, chain.readable, MAX_CHUNK)
                self._tx, self._skip = (chain, data, min(self._skip, len(data))), 0
            chain, data, done = self._tx
            done += self.backend.write(data[done:]) if done < len(data) else 0
            if done < len(data):
                self._tx = (chain, data, done)
                break  # back-pressure: output_ready resumes here
            self._tx = None
            q.push(dma, chain.head, 0)
            returned = True
        if returned:
            t.used(q)

    def _receive(self) -> None:
        t = self.transport
        assert t is not None
        q = t.queues[RXQ]
        if not q.enabled:
            return
        dma = t.dma
        returned = False
        for _ in range(q.size):
            if not self.backend.pending_input():
                break
            chain = q.pop(dma)
            if chain is None:
                break  # input waits in the backend for guest buffers
            data = self.backend.read(min(chain.writable_len(), MAX_CHUNK))
            q.push(dma, chain.head, SplitQueue.scatter(dma, chain.writable, data))
            returned = True
        if returned:
            t.used(q)
