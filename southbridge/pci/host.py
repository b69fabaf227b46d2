"""Host bridge config access: mechanism #1 (0xCF8/0xCFC) and the ECAM window.

Mechanism #1 (PCI 3.0, 3.2.2.3.2): a DWORD write to 0xCF8 latches the address (bit 31
enable, bus 23:16, device 15:11, function 10:8, register 7:2); accesses of any size at
0xCFC-0xCFF then reach that register plus the byte offset inside the data window. Only DWORD
accesses decode 0xCF8: narrower ones belong to the ISA bus, where 0xCF9 is the PIIX reset
control register, so byte accesses at 0xCF9 are forwarded to `reset_control` when one is
wired. ECAM (PCIe 3.0, 7.2.2) maps bus << 20 | device << 15 | function << 12 | register
into an MMIO window; both reach the same functions.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from southbridge.core.device import BusDevice, ones
from southbridge.core.mmiobus import MmioBus
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.state import check_header, get_int, header
from southbridge.pci.bus import PciBus

logger = logging.getLogger("southbridge.pci")

CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC
ENABLE = 1 << 31
# Reserved bits 30:24 and the type bits 1:0 read as zero.
ADDRESS_MASK = 0x80FFFFFC

ECAM_DEFAULT_BASE = 0xB0000000  # where QEMU's q35 puts MMCONFIG


class PciHost:
    """The host side of config space: CONFIG_ADDRESS and the two register decoders."""

    STATE_KIND: ClassVar[str] = "pci-host"
    STATE_VERSION: ClassVar[int] = 1

    def __init__(self, bus: PciBus) -> None:
        self.bus = bus
        self.address = 0
        self.reset_control: BusDevice | None = None
        self.log = RateLimitedLog(logger)
        self.address_port = ConfigAddressPort(self)
        self.data_port = ConfigDataPort(self)

    def target(self) -> tuple[int, int, int] | None:
        """(bus, devfn, register) CONFIG_ADDRESS selects, or None when disabled."""
        a = self.address
        if not a & ENABLE:
            return None
        return (a >> 16) & 0xFF, (a >> 8) & 0xFF, a & 0xFC

    def reset(self) -> None:
        self.address = 0

    def save(self) -> dict[str, Any]:
        return header(self) | {"address": self.address}

    def restore(self, state: dict[str, Any]) -> None:
        state = check_header(state, self)
        a = get_int(state, "address", 0, 0xFFFFFFFF)
        if a & ~ADDRESS_MASK:
            from southbridge.core.state import StateError

            raise StateError("pci-host: reserved CONFIG_ADDRESS bits set")
        self.address = a


class ConfigAddressPort(BusDevice):
    """0xCF8-0xCFB: CONFIG_ADDRESS for DWORD accesses; 0xCF9 bytes go to reset control."""

    io_sizes = frozenset({1, 2, 4})
    name = "pci-config-address"

    def __init__(self, host: PciHost) -> None:
        self.host = host

    def read(self, offset: int, size: int) -> int:
        if size == 4 and offset == 0:
            return self.host.address
        rc = self.host.reset_control
        if size == 1 and offset == 1 and rc is not None:
            return rc.read(0, 1) & 0xFF
        return ones(size)

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 4 and offset == 0:
            self.host.address = value & ADDRESS_MASK
            return
        rc = self.host.reset_control
        if size == 1 and offset == 1 and rc is not None:
            rc.write(0, 1, value & 0xFF)
            return
        self.host.log.debug("cf8", "pci: ignored %d-byte access at 0x%x", size, 0xCF8 + offset)


class ConfigDataPort(BusDevice):
    """0xCFC-0xCFF: the data window; all-ones and dropped writes while disabled."""

    io_sizes = frozenset({1, 2, 4})
    name = "pci-config-data"

    def __init__(self, host: PciHost) -> None:
        self.host = host

    def read(self, offset: int, size: int) -> int:
        t = self.host.target()
        if t is None:
            return ones(size)
        bus, devfn, reg = t
        return self.host.bus.config_read(bus, devfn, reg + offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        t = self.host.target()
        if t is None:
            return
        bus, devfn, reg = t
        self.host.bus.config_write(bus, devfn, reg + offset, size, value)


class Ecam(BusDevice):
    """The memory-mapped config window for `buses` buses starting at bus 0.

    An access must stay inside one function's 4 KiB; a QWORD is split into two DWORDs by
    the bus (only 1, 2 and 4 are implemented), as chipsets split it.
    """

    io_sizes = frozenset({1, 2, 4})
    name = "pci-ecam"

    def __init__(self, bus: PciBus, buses: int = 256) -> None:
        if not 1 <= buses <= 256:
            raise ValueError("ECAM covers 1 to 256 buses")
        self.bus = bus
        self.buses = buses
        self.base: int | None = None
        self.mmio: MmioBus | None = None

    @property
    def length(self) -> int:
        return self.buses << 20

    def map(self, mmio: MmioBus, base: int = ECAM_DEFAULT_BASE) -> None:
        """Decode the window at `base` (1 MiB per bus, aligned to its size)."""
        if base % self.length:
            raise ValueError(f"ECAM base 0x{base:x} must be aligned to 0x{self.length:x}")
        self.unmap()
        mmio.register(base, self.length, self, "pci-ecam")
        self.mmio, self.base = mmio, base

    def unmap(self) -> None:
        if self.mmio is not None and self.base is not None:
            self.mmio.unregister(self.base)
        self.mmio = self.base = None

    def read(self, offset: int, size: int) -> int:
        reg = offset & 0xFFF
        if reg + size > 0x1000:
            return ones(size)
        return self.bus.config_read(offset >> 20, (offset >> 12) & 0xFF, reg, size)

    def write(self, offset: int, size: int, value: int) -> None:
        reg = offset & 0xFFF
        if reg + size <= 0x1000:
            self.bus.config_write(offset >> 20, (offset >> 12) & 0xFF, reg, size, value)
