"""What a virtio device type implements, independent of the transport (virtio 1.2, 2-5).

The transport (`pci.py`) owns the feature words, status, queues and interrupts; a device
type supplies its ID, feature bits, configuration space and what a queue notification does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from southbridge.virtio.queue import SplitQueue

if TYPE_CHECKING:
    from southbridge.virtio.pci import VirtioPci

# Reserved feature bits (virtio 1.2, 6).
F_NOTIFY_ON_EMPTY = 1 << 24
F_ANY_LAYOUT = 1 << 27
F_RING_INDIRECT_DESC = 1 << 28
F_RING_EVENT_IDX = 1 << 29
F_VERSION_1 = 1 << 32

# Device status bits (virtio 1.2, 2.1).
S_ACKNOWLEDGE = 1
S_DRIVER = 2
S_DRIVER_OK = 4
S_FEATURES_OK = 8
S_NEEDS_RESET = 0x40
S_FAILED = 0x80

ID_NET = 1
ID_BLOCK = 2
ID_CONSOLE = 3
ID_RNG = 4


class VirtioDevice:
    """Subclass per device type; `transport` is set when the PCI function wraps it."""

    device_id = 0
    pci_class = 0xFF0000
    queue_sizes: tuple[int, ...] = (256,)
    name = "virtio"

    def __init__(self) -> None:
        self.transport: VirtioPci | None = None

    def features(self) -> int:
        """Device-specific feature bits (the transport adds the reserved ones it supports)."""
        return 0

    def config(self) -> bytes:
        """The device configuration space as the driver reads it."""
        return b""

    def config_write(self, offset: int, data: bytes) -> None:
        """A driver write into the configuration space (most fields are read-only)."""

    def notify(self, queue: SplitQueue) -> None:
        """The driver made buffers available on `queue`."""

    def activate(self) -> None:
        """DRIVER_OK was set: features are final and the queues are set up."""

    def reset(self) -> None:
        """Device reset: drop everything in flight (completions arriving later are ignored)."""

    def save(self) -> dict[str, Any]:
        return {}

    def rewind(self) -> dict[int, int]:
        """Queue index -> chains popped but not returned, which a saved state records as
        not yet popped (the restored device pops them again)."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        return None


class StreamDevice(VirtioDevice):
    """A device whose queue 0 receives from and queue 1 transmits to a host backend
    (virtio-console's port 0, virtio-net's first pair). Guest kicks and backend callbacks
    both reach `_receive`/`_transmit`; the callbacks go through the transport's notify, which
    checks DRIVER_OK and turns guest errors into NEEDS_RESET, as a kick does."""

    RXQ = 0
    TXQ = 1

    def notify(self, queue: SplitQueue) -> None:
        if queue.index == self.TXQ:
            self._transmit()
        else:
            self._receive()

    def input_ready(self) -> None:
        """The backend has input queued for the guest."""
        if self.transport is not None:
            self.transport.notify(self.RXQ)

    def output_ready(self) -> None:
        """The backend can take output it refused before."""
        if self.transport is not None:
            self.transport.notify(self.TXQ)

    def _transmit(self) -> None:
        raise NotImplementedError

    def _receive(self) -> None:
        raise NotImplementedError
