"""virtio-net (virtio 1.2, 5.1): one receive and one transmit queue on a frame backend.

Frames never vanish silently: a transmit the backend refuses stays in its chain until the
backend says it has room (`on_ready`); a received frame stays at the backend (`peek`) until
the guest has posted enough buffers for it, and only then is it taken. With MRG_RXBUF a frame
spans several chains (num_buffers in the header); chains popped for a frame that turns out
not to fit are given back by rewinding the ring position (nothing was returned yet). The
backend bounds its own queues; a frame longer than `MAX_FRAME` is refused by the backend.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

from southbridge.core.state import StateError
from southbridge.virtio import device as vd
from southbridge.virtio.queue import Chain, SplitQueue

F_MAC = 1 << 5
F_MRG_RXBUF = 1 << 15
F_STATUS = 1 << 16
S_LINK_UP = 1
HDR_LEN = 12  # struct virtio_net_hdr with num_buffers (VERSION_1 or MRG_RXBUF)
HDR_LEN_LEGACY = 10
MAX_FRAME = 65535 + 14
RXQ, TXQ = 0, 1

Callback = Any  # Callable[[], None]


class NetBackend(Protocol):
    def attach(self, on_input: Callback, on_ready: Callback) -> None:
        """`on_input` when a frame is queued, `on_ready` when a refused send may succeed."""

    def send(self, frame: bytes) -> bool:
        """Queue a frame for the host; False (nothing taken) when the queue is full."""

    def peek(self) -> bytes | None:
        """The next received frame, left queued."""

    def take(self) -> None:
        """Drop the frame `peek` returned (it was delivered)."""

    def close(self) -> None: ...


class VirtioNet(vd.StreamDevice):
    device_id = vd.ID_NET
    pci_class = 0x020000  # Ethernet controller
    queue_sizes = (256, 256)
    name = "virtio-net"

    def __init__(self, backend: NetBackend, mac: bytes, link_up: bool = True) -> None:
        super().__init__()
        if len(mac) != 6 or mac[0] & 1:
            raise ValueError("a MAC address is 6 bytes and not a multicast address")
        self.backend = backend
        self.mac = bytes(mac)
        self.link_up = link_up
        self._tx: tuple[Chain, bytes] | None = None

    def features(self) -> int:
        return F_MAC | F_STATUS | F_MRG_RXBUF

    def config(self) -> bytes:
        status = S_LINK_UP if self.link_up else 0
        return self.mac + struct.pack("<HH", status, 1)

    def set_link(self, up: bool) -> None:
        """Host side: the link changed; the driver gets a configuration interrupt (5.1.4)."""
        if up != self.link_up:
            self.link_up = up
            if self.transport is not None:
                self.transport.config_changed()
                if up:
                    self.transport.notify(RXQ)

    def reset(self) -> None:
        self._tx = None

    def save(self) -> dict[str, Any]:
        return {"link_up": self.link_up}

    def rewind(self) -> dict[int, int]:
        return {TXQ: 1} if self._tx is not None else {}

    def restore(self, state: dict[str, Any]) -> None:
        if not isinstance(state.get("link_up"), bool):
            raise StateError("virtio-net: link_up must be a boolean")
        self.link_up = state["link_up"]
        self._tx = None

    def _hdr_len(self) -> int:
        t = self.transport
        assert t is not None
        modern = t.negotiated(vd.F_VERSION_1) or t.negotiated(F_MRG_RXBUF)
        return HDR_LEN if modern else HDR_LEN_LEGACY

    # -- transmit ------------------------------------------------------------------------
    def _transmit(self) -> None:
        t = self.transport
        assert t is not None
        q, dma = t.queues[TXQ], t.dma
        hl = self._hdr_len()
        returned = False
        for _ in range(q.size):
            if self._tx is None:
                chain = q.pop(dma)
                if chain is None:
                    break
                data = SplitQueue.gather(dma, chain.readable, hl + MAX_FRAME + 1)
                self._tx = (chain, data[hl:])
            chain, frame = self._tx
            if frame and len(frame) <= MAX_FRAME and self.link_up:
                if not self.backend.send(frame):
                    break  # back-pressure: output_ready resumes with this chain
            else:
                t.log.debug("virtio-net-tx", "virtio-net: frame of %d bytes not sent", len(frame))
            self._tx = None
            q.push(dma, chain.head, 0)
            returned = True
        if returned:
            t.used(q)

    # -- receive -------------------------------------------------------------------------
    def _receive(self) -> None:
        t = self.transport
        assert t is not None
        q = t.queues[RXQ]
        if not q.enabled or not self.link_up:
            return
        hl = self._hdr_len()
        merge = t.negotiated(F_MRG_RXBUF)
        returned = False
        for _ in range(q.size):
            frame = self.backend.peek()
            if frame is None:
                break
            if not self._deliver(q, frame, hl, merge):
                break  # not enough guest buffers yet: the frame waits at the backend
            self.backend.take()
            returned = True
        if returned:
            t.used(q)

    def _deliver(self, q: SplitQueue, frame: bytes, hl: int, merge: bool) -> bool:
        t = self.transport
        assert t is not None
        dma = t.dma
        start = q.last_avail
        chains: list[Chain] = []
        room = 0
        need = hl + len(frame)
        while room < need:
            if chains and not merge:
                break
            chain = q.pop(dma)
            if chain is None:
                q.unpop(dma, start)  # give the chains back: nothing was returned
                return False
            chains.append(chain)
            room += chain.writable_len()
        if room < need:
            # Without MRG_RXBUF the driver must post buffers for the largest frame (5.1.6.3.1);
            # this one cannot take it: return it empty so the ring keeps moving, log it.
            t.log.warning("virtio-net-rx", "virtio-net: rx buffer of %d < frame %d", room, need)
            q.push(dma, chains[0].head, 0)
            return True
        hdr = struct.pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, len(chains))[:hl]
        data = hdr + frame
        pos = 0
        for chain in chains:
            n = SplitQueue.scatter(dma, chain.writable, data[pos:])
            q.push(dma, chain.head, n)
            pos += n
        return True
