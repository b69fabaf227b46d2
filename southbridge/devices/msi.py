"""Message signalled interrupts: an MSI/MSI-X address/data pair decoded per Intel SDM 10.11.

Address (10.11.1): bits 31:20 are 0xFEE, destination ID in 19:12, RH (redirection hint) in
bit 3, DM (destination mode, 1 = logical) in bit 2; bits 63:32 must be zero. Data (10.11.2):
vector 7:0, delivery mode 10:8, level 14, trigger mode 15.

Where the SDM leaves it open we follow KVM: DM selects logical or physical destinations
whatever RH says, and RH=1 turns a fixed message into lowest-priority arbitration among its
destinations. A level-triggered message with the level bit clear (a de-assert) carries no
interrupt. Reserved delivery modes (011, 110) and addresses outside 0xFEExxxxx are not
interrupts: they are logged rate-limited and dropped, as a chipset drops a stray write.
"""

from __future__ import annotations

import logging

from southbridge.core.ratelog import RateLimitedLog
from southbridge.devices.apicbus import (
    DM_FIXED,
    DM_LOWEST,
    DM_REMOTE_READ,
    DM_SIPI,
    ApicBus,
    ApicMessage,
)

logger = logging.getLogger("southbridge.msi")

MSI_BASE = 0xFEE00000
MSI_ADDR_MASK = 0xFFF00000
ADDR_RH = 1 << 3
ADDR_DM = 1 << 2
DATA_LEVEL = 1 << 14
DATA_TRIGGER = 1 << 15


class MsiError(ValueError):
    """An address/data pair that is not an interrupt message."""


def decode(address: int, data: int) -> ApicMessage:
    """The APIC bus message an MSI write means; raises `MsiError` for invalid ones."""
    if address >> 32 or address & MSI_ADDR_MASK != MSI_BASE:
        raise MsiError(f"address 0x{address:x} is not in the 0xFEExxxxx interrupt range")
    dm = (data >> 8) & 7
    if dm in (DM_REMOTE_READ, DM_SIPI):
        raise MsiError(f"data 0x{data:x} has reserved delivery mode {dm}")
    if dm == DM_FIXED and address & ADDR_RH:
        dm = DM_LOWEST
    return ApicMessage(
        vector=data & 0xFF,
        delivery_mode=dm,
        dest=(address >> 12) & 0xFF,
        logical=bool(address & ADDR_DM),
        level_triggered=bool(data & DATA_TRIGGER),
        assert_=bool(data & DATA_LEVEL) or not data & DATA_TRIGGER,
    )


class MsiRouter:
    """Where PCI MSI and MSI-X writes land: decodes them and delivers to the APIC bus.

    Callable as `router(address, data)`, the sink signature the PCI layer expects.
    """

    def __init__(self, bus: ApicBus, log: RateLimitedLog | None = None) -> None:
        self.bus = bus
        self.log = log if log is not None else RateLimitedLog(logger)
        self.dropped = 0

    def send(self, address: int, data: int) -> bool:
        """Deliver one message; returns whether some local APIC accepted it."""
        address &= (1 << 64) - 1
        data &= 0xFFFFFFFF
        try:
            msg = decode(address, data)
        except MsiError as e:
            self.dropped += 1
            self.log.warning("msi:invalid", "MSI dropped: %s", e)
            return False
        if msg.level_triggered and not msg.assert_:
            return False  # a de-assert message: nothing to deliver
        return bool(self.bus.deliver(msg))

    def __call__(self, address: int, data: int) -> None:
        self.send(address, data)
