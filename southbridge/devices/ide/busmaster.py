"""SFF-8038i bus-master IDE DMA, one engine per channel (PIIX3 datasheet 2.7, BMIBA).

Registers (offsets in the channel's 8-byte block): 0 command (bit 0 start/stop, bit 3 the
direction: set = the engine writes memory), 2 status (bit 0 active, read-only; bit 1 error
and bit 2 interrupt, write 1 to clear; bits 5-6 "drive DMA capable", plain storage; bit 7
simplex, 0 on the PIIX3), 4-7 the PRD table address (dword aligned).

A PRD entry is 8 bytes: the region's physical address (bit 0 zero), its byte count in bits
15:1 of the second dword (0 means 64 KiB) and end-of-table in bit 31. The engine walks the
entries as the device moves data:
* the device finishes with the table exactly used up: active clears, the interrupt follows;
* the table is longer than the transfer: active stays set when the interrupt comes
  (SFF-8038i 3.1, "PRD larger than transfer");
* the table ends first: active clears and no interrupt comes (the device is still waiting
  for its data, as QEMU leaves it);
* a master abort (bus mastering off in PCI command): error set, active cleared.
The table may not cross a 64 KiB boundary (PIIX3): a table without an end bit ends there.
The interrupt bit latches every rising edge of the channel's INTRQ, DMA or not (QEMU too).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from southbridge.core.device import BusDevice
from southbridge.core.state import StateError, get_bool, get_int

if TYPE_CHECKING:
    from southbridge.devices.ide.channel import IdeChannel

CMD_START = 0x01
CMD_WRITE_MEM = 0x08
ST_ACTIVE = 0x01
ST_ERROR = 0x02
ST_INTR = 0x04
ST_CAPABLE = 0x60
PRD_EOT = 1 << 31
PRD_ENTRY = 8
TABLE_LIMIT = 1 << 16  # the table lives inside one 64 KiB page
MAX_STEPS = 1 << 20


class DmaFault(Exception):
    """The cycle did not start (a master abort: bus mastering is off)."""


class Memory(Protocol):
    """The PCI function's view of memory as a bus master; raises DmaFault."""

    def read(self, addr: int, length: int) -> bytes: ...

    def write(self, addr: int, data: bytes) -> None: ...


class BusMaster:
    def __init__(self, channel: IdeChannel, dma: Callable[[], Memory]) -> None:
        self.channel = channel
        channel.bm = self
        self._dma = dma
        self._running = False
        self.reset()

    def reset(self) -> None:
        self.cmd = 0
        self.status = 0
        self.prd = 0
        self._rewind()

    def _rewind(self) -> None:
        self.start = self.prd  # the table this transfer walks (latched at start)
        self.cur = self.prd  # address of the next entry
        self.base = 0  # where the current region continues
        self.left = 0  # bytes left in it
        self.last = False  # the current region is the table's last

    @property
    def active(self) -> bool:
        return bool(self.status & ST_ACTIVE)

    # -- registers -------------------------------------------------------------------------
    def read_byte(self, off: int) -> int:
        if off == 0:
            return self.cmd
        if off == 2:
            return self.status
        if 4 <= off < 8:
            return self.prd >> (8 * (off - 4)) & 0xFF
        return 0

    def write_byte(self, off: int, value: int) -> None:
        if off == 0:
            self._write_cmd(value)
        elif off == 2:
            self.status &= ~(value & (ST_ERROR | ST_INTR))
            self.status = self.status & ~ST_CAPABLE | value & ST_CAPABLE
        elif 4 <= off < 8:
            shift = 8 * (off - 4)
            self.prd = (self.prd & ~(0xFF << shift) | value << shift) & 0xFFFFFFFC

    def _write_cmd(self, value: int) -> None:
        old = self.cmd
        self.cmd = value & (CMD_START | CMD_WRITE_MEM)
        if self.cmd & CMD_START and not old & CMD_START:
            self.status |= ST_ACTIVE
            self._rewind()
            self.kick()
        elif old & CMD_START and not self.cmd & CMD_START:
            self.status &= ~ST_ACTIVE  # the transfer stops; the device keeps waiting

    # -- what the device and the channel call ---------------------------------------------
    def device_interrupt(self) -> None:
        self.status |= ST_INTR

    def kick(self) -> None:
        """Run the selected device's DMA while the engine is active and the device ready. A
        completion re-entering (inline I/O) returns: the loop here keeps going."""
        if self._running:
            return
        self._running = True
        try:
            for _ in range(MAX_STEPS):
                d = self.channel.selected
                if d is None or not self.active or not d.dma_ready():
                    break
                d.dma_step()
        finally:
            self._running = False

    def _next_entry(self, dma: Memory) -> bool:
        if self.last or self.cur - (self.start & ~(TABLE_LIMIT - 1)) >= TABLE_LIMIT:
            return False
        addr, count = struct.unpack("<II", dma.read(self.cur, PRD_ENTRY))
        self.cur += PRD_ENTRY
        self.base = addr & 0xFFFFFFFE
        self.left = (count & 0xFFFE) or 0x10000
        self.last = bool(count & PRD_EOT)
        return True

    def to_memory(self, data: bytes) -> int:
        """Scatter `data` into the regions; returns how much fit before the table ended.
        Raises DmaFault on a master abort."""
        dma = self._dma()
        pos = 0
        while pos < len(data):
            if not self.left and not self._next_entry(dma):
                break
            n = min(self.left, len(data) - pos)
            dma.write(self.base, data[pos : pos + n])
            self.base += n
            self.left -= n
            pos += n
        return pos

    def from_memory(self, length: int) -> bytes:
        """Gather up to `length` bytes from the regions (less when the table ends)."""
        dma = self._dma()
        out = bytearray()
        while len(out) < length:
            if not self.left and not self._next_entry(dma):
                break
            n = min(self.left, length - len(out))
            out += dma.read(self.base, n)
            self.base += n
            self.left -= n
        return bytes(out)

    def transfer_done(self) -> None:
        """The device moved its last byte: active clears if the table is used up."""
        if self.last and not self.left:
            self.status &= ~ST_ACTIVE

    def stop_short(self) -> None:
        self.status &= ~ST_ACTIVE

    def fault(self) -> None:
        self.status = self.status & ~ST_ACTIVE | ST_ERROR

    # -- state -------------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        return {
            "cmd": self.cmd,
            "status": self.status,
            "prd": self.prd,
            "start": self.start,
            "cur": self.cur,
            "base": self.base,
            "left": self.left,
            "last": self.last,
        }

    def restore(self, state: dict[str, Any]) -> None:
        cmd = get_int(state, "cmd", 0, 0xFF)
        status = get_int(state, "status", 0, 0xFF)
        prd = get_int(state, "prd", 0, 0xFFFFFFFF)
        start = get_int(state, "start", 0, 0xFFFFFFFF)
        cur = get_int(state, "cur", 0, 0xFFFFFFFF + TABLE_LIMIT)
        base = get_int(state, "base", 0, 0xFFFFFFFF + 0x10000)
        left = get_int(state, "left", 0, 0x10000)
        last = get_bool(state, "last")
        if cmd & ~(CMD_START | CMD_WRITE_MEM) or status & 0x98 or prd & 3:
            raise StateError("ide bus master: register bits the PIIX3 does not have")
        if status & ST_ACTIVE and not cmd & CMD_START:
            raise StateError("ide bus master: active without the start bit")
        if start & 3 or not start <= cur <= (start & ~(TABLE_LIMIT - 1)) + TABLE_LIMIT:
            raise StateError("ide bus master: PRD cursor outside the table's page")
        self.cmd, self.status, self.prd, self.start = cmd, status, prd, start
        self.cur, self.base, self.left, self.last = cur, base, left, last


class BusMasterIo(BusDevice):
    """BAR4: 16 ports, the primary channel's engine at 0-7 and the secondary's at 8-15."""

    io_sizes = frozenset({1, 2, 4})

    def __init__(self, engines: list[BusMaster]) -> None:
        self.engines = engines
        self.name = "piix3-bmdma"

    def read(self, offset: int, size: int) -> int:
        value = 0
        for i in range(size):
            a = offset + i
            if a < 16:
                value |= self.engines[a >> 3].read_byte(a & 7) << (8 * i)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            a = offset + i
            if a < 16:
                self.engines[a >> 3].write_byte(a & 7, value >> (8 * i) & 0xFF)


__all__ = ["BusMaster", "BusMasterIo", "DmaFault", "Memory"]
