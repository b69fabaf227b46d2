"""A host function seen through the config model, as Xen's vPCI shows assigned devices.

The registers that must be virtual (the standard header with its BARs, command decode bits
and interrupt line, plus any capability the model emulates such as MSI and MSI-X) are
answered by the `PciFunction` model; every other byte is read from the host function; guest
writes to those other bytes are dropped unless a per-device permissive mask allows the bits
(XSA-126: decode bits and BARs never reach the host; CVE-2015-4106: masks apply per byte).
The source is anything that reads and writes config space: a sysfs config file, a simulated
host device, an lspci dump.
"""

from __future__ import annotations

import logging
from typing import Protocol

from southbridge.core.ratelog import RateLimitedLog
from southbridge.pci.bar import Bar, RomBar
from southbridge.pci.capabilities import (
    CAP_MSI,
    CAP_MSIX,
    Capability,
    MsiCapability,
    MsixCapability,
    MsixRegion,
    walk_capabilities,
)
from southbridge.pci.config import (
    BAR0,
    CLASS,
    COMMAND,
    DEVICE_ID,
    HEADER_TYPE,
    INT_LINE,
    PCI_CONFIG_SIZE,
    PCIE_CONFIG_SIZE,
    PROG_IF,
    REVISION,
    ROM_BAR,
    SUBCLASS,
    VENDOR_ID,
    ConfigSpace,
)
from southbridge.pci.function import PciFunction

logger = logging.getLogger("southbridge.pci.passthrough")

HEADER_END = 0x40


class ConfigSource(Protocol):
    """The host side of an assigned function's config space."""

    size: int

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


def msi_from_config(cs: ConfigSpace, offset: int) -> MsiCapability:
    """An emulated MSI capability with the host structure's vector count and format."""
    ctrl = cs.get(offset + 2, 2)
    mmc = min((ctrl >> 1) & 7, 5)  # 6 and 7 are reserved encodings
    return MsiCapability(1 << mmc, bool(ctrl & 0x80), bool(ctrl & 0x100))


def msix_from_config(cs: ConfigSpace, offset: int) -> MsixCapability:
    """An emulated MSI-X capability with the host's table size and locations."""
    ctrl = cs.get(offset + 2, 2)
    table, pba = cs.get(offset + 4, 4), cs.get(offset + 8, 4)
    if (table & 7) != (pba & 7):
        raise ValueError("MSI-X table and PBA in different BARs are not supported")
    return MsixCapability((ctrl & 0x7FF) + 1, table & 7, table & ~7, pba & ~7)


class FilteredFunction(PciFunction):
    """An assigned host function: a virtual header and emulated capabilities over host bytes.

    `bars` maps BAR index to the region the guest may place (its device passes accesses to
    the host resource); `permissive` maps config offsets to the bits guest writes may change
    on the host. Every other write to a pass-through byte is dropped and logged.
    """

    STATE_KIND = "assigned"

    def __init__(
        self,
        source: ConfigSource,
        bars: dict[int, Bar] | None = None,
        rom: RomBar | None = None,
        permissive: dict[int, int] | None = None,
        emulate_msi: bool = True,
        name: str = "assigned",
    ) -> None:
        if source.size not in (PCI_CONFIG_SIZE, PCIE_CONFIG_SIZE):
            raise ValueError(f"{name}: config space of {source.size} bytes")
        if source.read(HEADER_TYPE, 1) & 0x7F != 0:
            raise ValueError(f"{name}: only type 0 functions can be assigned")
        code = source.read(PROG_IF, 1) | source.read(SUBCLASS, 1) << 8 | source.read(CLASS, 1) << 16
        super().__init__(
            source.read(VENDOR_ID, 2),
            source.read(DEVICE_ID, 2),
            code,
            source.read(REVISION, 1),
            None,
            source.size == PCIE_CONFIG_SIZE,
            name,
        )
        self.source = source
        self.flog = RateLimitedLog(logger)
        cs = self.config
        # The guest sees the host's header bytes except where the model owns the value:
        # BARs (guest-chosen), command (decode off), interrupt line.
        for o in range(0, HEADER_END, 4):
            cs.set(o, 4, source.read(o, 4))
        cs.set(BAR0, 0x18, 0)
        cs.set(ROM_BAR, 4, 0)
        cs.set(COMMAND, 2, 0)
        cs.set(INT_LINE, 1, 0)
        cs.set(HEADER_TYPE, 1, 0)
        # Capabilities keep the host chain; their bytes are copied so the chain reads back.
        for o in range(HEADER_END, source.size, 4):
            cs.set(o, 4, source.read(o, 4))
        self.virtual = bytearray(source.size)
        self.virtual[:HEADER_END] = b"\xff" * HEADER_END
        for index, bar in sorted((bars or {}).items()):
            self.add_bar(index, bar)
        if rom is not None:
            self.add_rom(rom)
        self.permissive = dict(permissive or {})
        if emulate_msi:
            for off, cid in walk_capabilities(cs):
                cap: Capability | None = None
                if cid == CAP_MSI:
                    cap = msi_from_config(cs, off)
                elif cid == CAP_MSIX:
                    cap = msix_from_config(cs, off)
                if cap is not None:
                    self.add_capability(cap, off, link=False)
                    self.virtual[off : off + cap.length] = b"\xff" * cap.length
        msix = self.msix
        if msix is not None:
            # The table and PBA are emulated inside the host BAR that holds them (XSA-164:
            # the guest never writes the host's table); the rest of the BAR passes on.
            holder = self.bars[msix.bar]
            if holder is None:
                raise ValueError(f"{name}: MSI-X lives in BAR {msix.bar}, which is not given")
            holder.device = MsixRegion(msix, rest=holder.device)

    def config_read(self, offset: int, size: int) -> int:
        value = 0
        for i in range(size):
            o = offset + i
            if not 0 <= o < self.config.size:
                b = 0xFF
            elif self.virtual[o]:
                b = self.config.data[o]
            else:
                b = self.source.read(o, 1) & 0xFF
            value |= b << (8 * i)
        return value

    def config_write(self, offset: int, size: int, value: int) -> None:
        if size not in (1, 2, 4) or offset < 0 or offset + size > self.config.size:
            return
        # Contiguous virtual bytes go to the model as one access (a BAR moves once).
        i = 0
        while i < size:
            o = offset + i
            j = i
            while j < size and bool(self.virtual[offset + j]) == bool(self.virtual[o]):
                j += 1
            part = (value >> (8 * i)) & ((1 << (8 * (j - i))) - 1)
            if self.virtual[o]:
                super().config_write(o, j - i, part)
            else:
                self._write_host(o, j - i, part)
            i = j

    def _write_host(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            o = offset + i
            b = (value >> (8 * i)) & 0xFF
            allowed = self.permissive.get(o, 0) & 0xFF
            host = self.source.read(o, 1) & 0xFF
            new = (host & ~allowed) | (b & allowed)
            if allowed and new != host:
                self.source.write(o, 1, new)
            if b & ~allowed & 0xFF and (b ^ host) & ~allowed & 0xFF:
                self.flog.warning(
                    f"drop:{self.name}",
                    "%s: guest write 0x%02x to config 0x%x dropped",
                    self.name,
                    b,
                    o,
                )
