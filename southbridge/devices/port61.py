"""Port 0x61, the PIIX "NMI status and control" register (the PC/AT port B).

Bit 0 gates PIT channel 2, bit 1 enables the speaker data path, bits 2/3 are the PCI SERR#
and IOCHK# NMI enables (kept, no NMI source is modelled so bits 6/7 read 0), bit 4 is the
refresh cycle toggle and bit 5 reads channel 2's OUT (PIIX/ICH datasheets, NMI_SC register).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from southbridge.core.device import BusDevice
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.state import StateError, check_header, get_int, header

if TYPE_CHECKING:
    from southbridge.devices.pit import Pit

# The refresh toggle flips once per DRAM refresh request, every 15.085 us (the PIIX's
# refresh rate; QEMU's pcspk models the same bit as a toggling "refresh clock").
REFRESH_PERIOD_NS = 15_085
RW_BITS = 0x0F  # gate 2, speaker data, SERR# enable, IOCHK# enable

_log = RateLimitedLog(logging.getLogger("southbridge.port61"))


class Port61(BusDevice):
    STATE_KIND: ClassVar[str] = "port61"
    STATE_VERSION: ClassVar[int] = 1

    io_sizes = frozenset({1})
    name = "port61"

    def __init__(self, pit: Pit) -> None:
        self.pit = pit
        self.bits = 0  # bits 1-3 (bit 0 lives in the PIT as channel 2's gate)

    def reset(self) -> None:
        self.bits = 0
        self.pit.set_gate(2, False)

    def read(self, offset: int, size: int) -> int:
        now = self.pit.clock.now()
        refresh = (now // REFRESH_PERIOD_NS) & 1
        return int(self.pit.out(2)) << 5 | refresh << 4 | self.bits | int(self.pit.channels[2].gate)

    def write(self, offset: int, size: int, value: int) -> None:
        if value & ~RW_BITS & 0xFF:
            _log.debug("port61-ro", "port61: write %#04x to read-only bits ignored", value)
        self.bits = value & (RW_BITS & ~1)
        self.pit.set_gate(2, bool(value & 1))

    def save(self) -> dict[str, Any]:
        return header(self) | {"bits": self.bits}

    def restore(self, state: Any) -> None:
        state = check_header(state, self)
        bits = get_int(state, "bits", 0, 0x0E)
        if bits & 1:
            raise StateError("port61: bit 0 is channel 2's gate, saved by the PIT")
        self.bits = bits
