"""Reset and A20 ports of the PIIX-era PC: port 0x92 ("PS/2 system control port A") and the
PIIX Reset Control register at 0xCF9.

Port 0x92 (PIIX3 datasheet, Port 92h): bit 0 ALT_RST# - a 0->1 transition resets the CPU
("fast reset"); bit 1 ALT_A20_GATE - ORed with the keyboard controller's A20 output. QEMU
(hw/i386/port92.c) keeps the whole byte, reads it back and clears bit 0 on reset.

0xCF9 (PIIX3 datasheet, Reset Control Register): bit 1 SRST selects a hard reset (1) or a
soft reset (0, INIT only); bit 2 RCPU starts the reset when it goes 0->1. RCPU reads back 0:
the reset it starts clears it, which also makes every write with bit 2 set a 0->1 transition,
exactly what QEMU's rcr_write implements (hw/isa/piix.c: any write with bit 2 resets, only
bit 1 is kept). Both kinds become a machine "reset" request; `last_reset` says which.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from southbridge.core.device import BusDevice
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.request import Request
from southbridge.core.state import StateError, check_header, get_int, header

PORT92 = 0x92
RCR_PORT = 0xCF9

_log = RateLimitedLog(logging.getLogger("southbridge.reset"))

A20Sink = Callable[[bool], None]

P92_RESET = 0x01
P92_A20 = 0x02

RCR_SRST = 0x02
RCR_RCPU = 0x04


class Port92(BusDevice):
    STATE_KIND: ClassVar[str] = "port92"
    STATE_VERSION: ClassVar[int] = 1

    io_sizes = frozenset({1})
    name = "port92"

    def __init__(self, request: Request, a20: A20Sink | None = None) -> None:
        self._request = request
        self._a20 = a20
        self.value = 0

    @property
    def a20(self) -> bool:
        return bool(self.value & P92_A20)

    def read(self, offset: int, size: int) -> int:
        return self.value

    def write(self, offset: int, size: int, value: int) -> None:
        old = self.value
        self.value = value & 0xFF
        if self._a20 is not None:
            self._a20(self.a20)
        if value & P92_RESET and not old & P92_RESET:
            _log.debug("port92-reset", "port 0x92: fast reset requested")
            self._request("reset", 0)

    def reset(self) -> None:
        """Machine reset: ALT_RST# returns to 0 so the next 0->1 resets again."""
        self.value &= ~P92_RESET

    def save(self) -> dict[str, Any]:
        return header(self) | {"value": self.value}

    def restore(self, state: dict[str, Any]) -> None:
        state = check_header(state, self)
        self.value = get_int(state, "value", 0, 0xFF)
        if self._a20 is not None:
            self._a20(self.a20)


class ResetControl(BusDevice):
    """The 0xCF9 byte. Not registered on the port bus by itself: 0xCF9 sits inside the
    0xCF8 dword, so the PCI config-address device forwards byte accesses at 0xCF9 here."""

    STATE_KIND: ClassVar[str] = "reset-control"
    STATE_VERSION: ClassVar[int] = 1

    io_sizes = frozenset({1})
    name = "reset-control"

    def __init__(self, request: Request) -> None:
        self._request = request
        self.value = 0
        self.last_reset: str | None = None  # "hard" | "soft" once a reset was requested

    def read(self, offset: int, size: int) -> int:
        return self.value

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if value & RCR_RCPU:
            # SRST is taken from the same write, as Linux's `outb(0x06, 0xcf9)` expects.
            self.last_reset = "hard" if value & RCR_SRST else "soft"
            _log.debug("rcr-reset", "0xcf9: %s reset requested", self.last_reset)
            self._request("reset", 0)
            return
        self.value = value & RCR_SRST

    def reset(self) -> None:
        self.value = 0

    def save(self) -> dict[str, Any]:
        return header(self) | {"value": self.value}

    def restore(self, state: dict[str, Any]) -> None:
        state = check_header(state, self)
        value = get_int(state, "value", 0, 0xFF)
        if value & ~RCR_SRST:
            raise StateError(f"reset-control: bits 0x{value & ~RCR_SRST:x} cannot be latched")
        self.value = value
