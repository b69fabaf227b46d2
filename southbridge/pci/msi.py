"""Message signalled interrupts: the message and the sink that delivers it.

An MSI is a DWORD memory write of `data` to `address` (0xFEExxxxx on x86, decoded by the
local APICs). Functions hand messages to an `MsiSink` instead of writing guest memory, so the
interrupt controller layer (the LAPIC issue) connects one callable and nothing here changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from southbridge.core.ratelog import RateLimitedLog

MsiSink = Callable[[int, int], None]
"""`sink(address, data)`: deliver one message signalled interrupt."""

logger = logging.getLogger("southbridge.pci.msi")


@dataclass(frozen=True)
class MsiMessage:
    address: int
    data: int

    def deliver(self, sink: MsiSink) -> None:
        sink(self.address, self.data)


class MsiRecorder:
    """A sink that records messages (tests) and is the default until an APIC is connected."""

    def __init__(self) -> None:
        self.messages: list[MsiMessage] = []
        self.log = RateLimitedLog(logger)

    def __call__(self, address: int, data: int) -> None:
        if len(self.messages) >= 4096:
            del self.messages[:2048]  # bounded whatever a guest provokes
        self.messages.append(MsiMessage(address, data))
        self.log.debug(
            "msi", "msi: address 0x%x data 0x%x (no interrupt controller)", address, data
        )
