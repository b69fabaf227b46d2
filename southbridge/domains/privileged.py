"""The privileged domain's PCI view: the host's functions at their host numbering.

Every visible host function answers config cycles at its own bus/devfn; hidden functions
(and anything the host does not have) read all-ones, as a master abort does. Reads pass
through to the host function; writes go through a filter: the BARs, the expansion ROM BAR
and the command register's decode bits are virtual (a size probe reads back the host BAR's
size, the host never sees the address), and every other write is dropped and logged unless
the device's permissive list opens those bytes (XSA-126, CVE-2015-4106: per-byte masks).
The view also opens the visible devices' I/O BAR ranges in the domain's port bitmap, the
"enabled port" rule of the original design.
"""

from __future__ import annotations

import logging
from typing import cast

from southbridge.core.device import ones
from southbridge.core.ratelog import RateLimitedLog
from southbridge.domains.assignment import Assignments
from southbridge.domains.sources import source_for
from southbridge.host.inventory import HostDevice
from southbridge.host.pciaddr import PciAddress
from southbridge.host.simulated import SimulatedHost
from southbridge.machine.pc import PcMachine
from southbridge.pci.bus import PciBus
from southbridge.pci.config import CMD_IO, CMD_MEMORY, COMMAND
from southbridge.pci.passthrough import ConfigSource

logger = logging.getLogger("southbridge.domains")

DECODE_BITS = CMD_IO | CMD_MEMORY


def permissive_masks(ranges: list[tuple[int, int]]) -> dict[int, int]:
    """[(offset, size)] from the configuration -> {offset: 0xff} per opened byte."""
    out: dict[int, int] = {}
    for off, size in ranges:
        for o in range(off, off + size):
            out[o] = 0xFF
    return out


def _bar_layout(dev: HostDevice) -> tuple[list[int], int]:
    """(the BAR register offsets, the ROM BAR offset) of the header type."""
    if dev.is_bridge:
        return [0x10, 0x14], 0x38
    return [0x10 + 4 * i for i in range(6)], 0x30


class MirroredFunction:
    """One host function seen by the privileged domain (see the module docstring)."""

    def __init__(
        self,
        dev: HostDevice,
        source: ConfigSource,
        permissive: dict[int, int] | None = None,
    ) -> None:
        self.dev = dev
        self.source = source
        self.permissive = dict(permissive or {})
        self.log = RateLimitedLog(logger)
        size = source.size
        self.size = size
        # Virtual bytes: their current value and writable bits; others pass through.
        self.virt: dict[int, int] = {}
        self.wmask: dict[int, int] = {}
        bars, rom = _bar_layout(dev)
        by_index = {r.index: r for r in dev.resources}
        skip = False
        for i, off in enumerate(bars):
            if skip:
                skip = False
                continue
            raw = source.read(off, 4)
            res = by_index.get(i)
            mask = 0
            width = 4
            if res is not None and res.size and res.size & (res.size - 1) == 0:
                low = 0x3 if raw & 1 else 0xF
                if not raw & 1 and raw & 0x6 == 0x4 and i + 1 < len(bars):
                    width, skip = 8, True
                    raw |= source.read(off + 4, 4) << 32
                mask = ~(res.size - 1) & ~low & ones(width)
            self._virtualize(off, width, raw, mask)
        rom_res = by_index.get(6)
        rom_mask = 0
        if rom_res is not None and rom_res.size >= 2048 and rom_res.size & (rom_res.size - 1) == 0:
            rom_mask = (~(rom_res.size - 1) & 0xFFFFF800) | 1
        self._virtualize(rom, 4, source.read(rom, 4), rom_mask)
        # Command decode bits: as the host has them, changeable only in the view.
        self.decode = source.read(COMMAND, 1) & DECODE_BITS

    def _virtualize(self, off: int, width: int, value: int, mask: int) -> None:
        for k in range(width):
            self.virt[off + k] = (value >> (8 * k)) & 0xFF
            self.wmask[off + k] = (mask >> (8 * k)) & 0xFF

    def config_read(self, offset: int, size: int) -> int:
        value = 0
        for i in range(size):
            o = offset + i
            if not 0 <= o < self.size:
                b = 0xFF
            elif o in self.virt:
                b = self.virt[o]
            else:
                b = self.source.read(o, 1) & 0xFF
                if o == COMMAND:
                    b = (b & ~DECODE_BITS) | self.decode
            value |= b << (8 * i)
        return value

    def config_write(self, offset: int, size: int, value: int) -> None:
        if size not in (1, 2, 4) or offset < 0 or offset + size > self.size:
            return
        for i in range(size):
            o = offset + i
            b = (value >> (8 * i)) & 0xFF
            if o in self.virt:
                m = self.wmask[o]
                self.virt[o] = (self.virt[o] & ~m) | (b & m)
                continue
            host = self.source.read(o, 1) & 0xFF
            allowed = self.permissive.get(o, 0) & 0xFF
            if o == COMMAND:
                # Decode bits stay in the view; the host keeps its own.
                self.decode = b & DECODE_BITS
                b = (b & ~DECODE_BITS) | (host & DECODE_BITS)
                allowed &= ~DECODE_BITS
            new = (host & ~allowed) | (b & allowed)
            if allowed and new != host:
                self.source.write(o, 1, new)
            if (b ^ host) & ~allowed & 0xFF:
                self.log.warning(
                    f"drop:{self.dev.addr}",
                    "%s: privileged write 0x%02x to config 0x%x dropped",
                    self.dev.addr,
                    b,
                    o,
                )


class PrivilegedView:
    """The config space the privileged domain's 0xCF8/0xCFC reaches: host numbering."""

    def __init__(
        self,
        assignments: Assignments,
        sim: SimulatedHost | None = None,
        permissive: dict[PciAddress, list[tuple[int, int]]] | None = None,
        segment: int = 0,
    ) -> None:
        self.assignments = assignments
        self.segment = segment
        self.functions: dict[tuple[int, int], MirroredFunction] = {}
        perm = permissive or {}
        for dev in assignments.visible():
            if dev.addr.domain != segment:
                continue  # mechanism #1 reaches one segment only
            src = source_for(dev, sim)
            masks = permissive_masks(perm.get(dev.addr, []))
            self.functions[(dev.addr.bus, dev.addr.devfn)] = MirroredFunction(dev, src, masks)
        self.opened: list[tuple[int, int]] = []

    def function(self, addr: PciAddress) -> MirroredFunction | None:
        if addr.domain != self.segment:
            return None
        return self.functions.get((addr.bus, addr.devfn))

    # The PciBus interface the host bridge's config mechanism uses.
    def config_read(self, bus: int, devfn: int, offset: int, size: int) -> int:
        fn = self.functions.get((bus, devfn))
        if fn is None or self.assignments.is_hidden(
            PciAddress(self.segment, bus, devfn >> 3, devfn & 7)
        ):
            return ones(size)
        return fn.config_read(offset, size) & ones(size)

    def config_write(self, bus: int, devfn: int, offset: int, size: int, value: int) -> None:
        fn = self.functions.get((bus, devfn))
        if fn is not None:
            fn.config_write(offset, size, value & ones(size))

    def install(self, machine: PcMachine) -> None:
        """Point the machine's config mechanism at the host view and open the visible
        devices' I/O ranges in its port bitmap."""
        machine.pci_host.bus = cast(PciBus, self)
        if machine.pci_ecam is not None:
            machine.pci_ecam.bus = cast(PciBus, self)
        for fn in self.functions.values():
            for res in fn.dev.io_ranges():
                if res.start > 0 and res.end < 0x10000:
                    machine.permissions.allow(res.start, res.size)
                    self.opened.append((res.start, res.size))

    def uninstall(self, machine: PcMachine) -> None:
        for base, length in self.opened:
            machine.permissions.deny(base, length)
        self.opened = []
