"""A PCI-to-PCI bridge (type 1 header), after the PCI-to-PCI Bridge Architecture 1.2.

It forwards config cycles for buses secondary..subordinate, and memory/I/O cycles inside its
windows while the matching command bit is set; the root bus asks `forwarded_windows` when
it maps the BARs below. I/O windows are 16-bit (x86 has 64 KiB of ports); the prefetchable
window is 64-bit.
"""

from __future__ import annotations

from southbridge.pci.bus import PciBus, Window
from southbridge.pci.config import CMD_IO, CMD_MEMORY, STS_RW1C
from southbridge.pci.function import PciFunction

PRIMARY_BUS = 0x18
SECONDARY_BUS = 0x19
SUBORDINATE_BUS = 0x1A
SEC_LATENCY = 0x1B
IO_BASE = 0x1C
IO_LIMIT = 0x1D
SEC_STATUS = 0x1E
MEM_BASE = 0x20
MEM_LIMIT = 0x22
PREF_BASE = 0x24
PREF_LIMIT = 0x26
PREF_BASE_UPPER = 0x28
PREF_LIMIT_UPPER = 0x2C
BRIDGE_CONTROL = 0x3E

PREF_64 = 0x1
SECONDARY_RESET = 1 << 6
# Bridge control: parity response, SERR#, ISA, VGA, VGA 16-bit, master abort mode,
# secondary bus reset, fast back-to-back.
BRIDGE_CONTROL_WMASK = 0x00FF

# Vendor/device of the bridge: Red Hat's "QEMU PCI-PCI bridge" would be wrong to claim, so the
# bridge uses the project's demo vendor (see demo.py) with device 0x0002.
BRIDGE_VENDOR = 0x5342
BRIDGE_DEVICE = 0x0002


class PciBridge(PciFunction):
    header_type = 1
    STATE_KIND = "pci-bridge"

    def __init__(
        self,
        vendor: int = BRIDGE_VENDOR,
        device: int = BRIDGE_DEVICE,
        revision: int = 0,
        pcie: bool = False,
        name: str = "pci-bridge",
    ) -> None:
        super().__init__(vendor, device, 0x060400, revision, None, pcie, name)
        self.child = PciBus(self)
        cs = self.config
        cs.set_wmask(PRIMARY_BUS, 4, 0xFFFFFF)  # primary, secondary, subordinate bus numbers
        cs.set_wmask(SEC_LATENCY, 1, 0xF8 if not pcie else 0)
        cs.set_wmask(IO_BASE, 2, 0xF0F0)
        cs.set(SEC_STATUS, 2, 0x0200)  # medium DEVSEL timing
        cs.set_w1c(SEC_STATUS, 2, STS_RW1C)
        cs.set_wmask(MEM_BASE, 4, 0xFFF0FFF0)
        cs.set(PREF_BASE, 4, PREF_64 | PREF_64 << 16)
        cs.set_wmask(PREF_BASE, 4, 0xFFF0FFF0)
        cs.set_wmask(PREF_BASE_UPPER, 8, 2**64 - 1)
        cs.set_wmask(BRIDGE_CONTROL, 2, BRIDGE_CONTROL_WMASK)

    @property
    def primary_bus(self) -> int:
        return self.config.get(PRIMARY_BUS, 1)

    @property
    def secondary_bus(self) -> int:
        return self.config.get(SECONDARY_BUS, 1)

    @property
    def subordinate_bus(self) -> int:
        return self.config.get(SUBORDINATE_BUS, 1)

    def _decode_range(self) -> tuple[int, int]:
        # BARs, bus numbers, windows and the ROM BAR all change what is forwarded.
        return 0x10, 0x3C - 0x10

    def io_window(self) -> tuple[int, int]:
        """[start, end) of the I/O window; empty when limit < base."""
        base = (self.config.get(IO_BASE, 1) & 0xF0) << 8
        limit = ((self.config.get(IO_LIMIT, 1) & 0xF0) << 8) | 0xFFF
        return base, max(base, limit + 1)

    def mem_window(self) -> tuple[int, int]:
        base = (self.config.get(MEM_BASE, 2) & 0xFFF0) << 16
        limit = ((self.config.get(MEM_LIMIT, 2) & 0xFFF0) << 16) | 0xFFFFF
        return base, max(base, limit + 1)

    def pref_window(self) -> tuple[int, int]:
        cs = self.config
        base = (cs.get(PREF_BASE, 2) & 0xFFF0) << 16 | cs.get(PREF_BASE_UPPER, 4) << 32
        limit = (
            (cs.get(PREF_LIMIT, 2) & 0xFFF0) << 16 | cs.get(PREF_LIMIT_UPPER, 4) << 32
        ) | 0xFFFFF
        return base, max(base, limit + 1)

    def forwarded_windows(self) -> tuple[Window, Window]:
        """(I/O, memory) ranges this bridge passes downstream now."""
        cmd = self.command
        io: Window = []
        mem: Window = []
        if cmd & CMD_IO:
            lo, hi = self.io_window()
            if lo < hi:
                io.append((lo, hi))
        if cmd & CMD_MEMORY:
            for lo, hi in (self.mem_window(), self.pref_window()):
                if lo < hi:
                    mem.append((lo, hi))
        return io, mem

    def on_config_write(self, offset: int, size: int) -> None:
        # Secondary Bus Reset (bridge control bit 6): RST# is asserted on the secondary bus
        # while the bit is set; its functions come back in their power-on state.
        if offset <= BRIDGE_CONTROL < offset + size and (
            self.config.get(BRIDGE_CONTROL, 2) & SECONDARY_RESET
        ):
            for fn in list(self.child.walk()):
                fn.reset()

    def reset_device(self) -> None:
        for fn in list(self.child.walk()):
            fn.reset()

    def add(self, fn: PciFunction, slot: int | None = None, function: int = 0) -> int:
        """Put a function on the secondary bus."""
        return self.child.add(fn, slot, function)
