"""The i440FX PAM registers given effect on guest memory: the 0xC0000-0xFFFFF window.

82441FX datasheet 3.2.18 (PAM0-PAM6): each segment of the window (0xF0000-0xFFFFF in PAM0's
high nibble, then 16 KiB segments from 0xC0000 in PAM1-PAM6, low nibble first) has RE
(read enable, bit 0 of the nibble) and WE (write enable, bit 1):

* RE=0 WE=0: accesses go to PCI/ISA: the BIOS ROM alias at 0xE0000-0xFFFFF (as mapped by
  the loader), nothing (all-ones) for the option-ROM area 0xC0000-0xDFFFF;
* RE=1 WE=1: the shadow DRAM behind the window, read/write;
* RE=1 WE=0: the DRAM read-only; writes go to PCI (the ROM ignores them), done with a
  KVM_MEM_READONLY slot whose write exits the run loop drops;
* RE=0 WE=1: reads from ROM, writes to DRAM. Memory slots cannot split reads from writes,
  so this mode is approximated as DRAM read/write (SeaBIOS never uses it; logged).

SeaBIOS's make_bios_writable sets every segment to read/write and copies itself from the
4 GiB alias into the shadow DRAM; make_bios_readonly later sets read-only.

The decode is a machine concern: it changes the regions of the machine's `GuestMemory`.
Whatever mirrors those regions (the KVM session's memory slots) is told through
`on_change` after each PAM write that changed a segment (`KvmSession.sync_memory`).
"""

from __future__ import annotations

import logging
import mmap
from collections.abc import Callable

from southbridge.core.memory import GuestMemory, RamRegion
from southbridge.core.ratelog import RateLimitedLog

logger = logging.getLogger("southbridge.pam")

WINDOW_BASE = 0xC0000
WINDOW_END = 0x100000

# (PAM register index, nibble shift, base, size)
SEGMENTS: list[tuple[int, int, int, int]] = [(0, 4, 0xF0000, 0x10000)] + [
    (1 + i // 2, 4 * (i % 2), 0xC0000 + i * 0x4000, 0x4000) for i in range(12)
]
RE, WE = 1, 2


class PamShadow:
    """Owns the regions of `memory` inside 0xC0000-0xFFFFF and remaps them on PAM writes."""

    def __init__(self, memory: GuestMemory, on_change: Callable[[], None] | None = None) -> None:
        self.memory = memory
        self.on_change = on_change
        self._log = RateLimitedLog(logger)
        rom = bytearray(b"\xff" * (WINDOW_END - WINDOW_BASE))
        self._rom_present = bytearray(WINDOW_END - WINDOW_BASE)
        for r in list(memory.regions):
            if r.gpa >= WINDOW_BASE and r.end <= WINDOW_END:
                if r.readonly:
                    rom[r.gpa - WINDOW_BASE : r.end - WINDOW_BASE] = r.buf[:]
                    self._rom_present[r.gpa - WINDOW_BASE : r.end - WINDOW_BASE] = b"\1" * r.size
                memory.remove(r)
            elif r.gpa < WINDOW_END and r.end > WINDOW_BASE:
                raise ValueError(f"{r.name} straddles the PAM window")
        self._ram: dict[int, mmap.mmap] = {}
        self._rom: dict[int, mmap.mmap | None] = {}
        for _, _, base, size in SEGMENTS:
            self._ram[base] = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            off = base - WINDOW_BASE
            if any(self._rom_present[off : off + size]):
                buf = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
                buf[:] = bytes(rom[off : off + size])
                self._rom[base] = buf
            else:
                self._rom[base] = None
        self._mode: dict[int, int] = {}
        self._region: dict[int, RamRegion | None] = {}
        for _, _, base, _ in SEGMENTS:
            self._region[base] = None
            self._apply(base, 0)

    def mode(self, base: int) -> int:
        return self._mode[base]

    def set_pam(self, index: int, value: int) -> None:
        """Listener for `I440fx.on_pam`: register `index` (0-6) now holds `value`."""
        changed = False
        for reg, shift, base, _ in SEGMENTS:
            if reg == index:
                mode = (value >> shift) & 3
                if mode != self._mode[base]:
                    self._apply(base, mode)
                    changed = True
        if changed and self.on_change is not None:
            self.on_change()

    def _apply(self, base: int, mode: int) -> None:
        old = self._region[base]
        if old is not None:
            self.memory.remove(old)
        size = len(self._ram[base])
        region: RamRegion | None
        if mode == 0:
            rom = self._rom[base]
            region = (
                None
                if rom is None
                else self.memory.add(base, size, f"rom-{base:x}", readonly=True, buf=rom)
            )
        else:
            if mode == WE:
                self._log.warning(
                    "pam-wo", "PAM write-only for 0x%x approximated as read/write DRAM", base
                )
            region = self.memory.add(
                base, size, f"shadow-{base:x}", readonly=mode == RE, buf=self._ram[base]
            )
        self._region[base] = region
        self._mode[base] = mode
