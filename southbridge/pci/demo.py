"""The demo PCI device: the worked example of a device in this project, and a test target.

IDs: vendor 0x5342 ("SB", southbridge), device 0x0001. 0x5342 is not assigned in the PCI ID
database (pci.ids) at the time of writing; it is a placeholder a real product must not
ship with, chosen so no guest driver binds to it by mistake (QEMU's edu device is 1234:11e8,
Red Hat's QEMU range is 1b36). Class 00ff (unclassified), like edu.

BAR0: 4 KiB 32-bit MMIO, the registers below and a 2 KiB DMA buffer at 0x800.
BAR1: 64 ports of I/O mirroring registers 0x00-0x3F.
BAR2: 4 KiB 64-bit MMIO holding the MSI-X table (0x000) and PBA (0x800).
BAR4: 64 KiB 64-bit prefetchable memory (plain RAM on the device).
ROM:  2 KiB expansion ROM with a PCI data structure naming the IDs.

Registers (little-endian DWORDs):
  0x00 ID         RO  0x53420001 (magic "SB", version 1)
  0x04 LIVENESS   RW  reads the bitwise inverse of the last value written
  0x08 INT_STATUS RO  pending interrupt bits
  0x0C INT_RAISE  WO  ORs the value into INT_STATUS and signals
  0x10 INT_ACK    WO  clears the value's bits in INT_STATUS
  0x20 DMA_SRC    RW  64-bit (0x20 low, 0x24 high)
  0x28 DMA_DST    RW  64-bit
  0x30 DMA_COUNT  RW  bytes, at most the 2 KiB buffer
  0x34 DMA_CMD    RW  bit 0 start, bit 1 direction (0: memory at SRC -> buffer offset DST;
                      1: buffer offset SRC -> memory at DST), bit 2 raise INT_STATUS bit 8
                      when done; reads bit 31 = the last transfer failed (master abort or
                      out-of-range buffer offset). Transfers complete before the write returns.

Interrupts: with MSI-X enabled, each raise sends vector 0; else with MSI enabled, each raise
sends vector 0; else INTA# is asserted while INT_STATUS is non-zero (level, shareable).
"""

from __future__ import annotations

from typing import Any

from southbridge.core.device import BusDevice
from southbridge.core.state import StateError, get_hex, get_int
from southbridge.pci.bar import Bar, BarKind, RomBar
from southbridge.pci.capabilities import (
    MsiCapability,
    MsixCapability,
    MsixRegion,
    PcieCapability,
    PmCapability,
    serial_number_capability,
)
from southbridge.pci.dma import DmaError
from southbridge.pci.function import PciFunction

DEMO_VENDOR = 0x5342
DEMO_DEVICE = 0x0001
DEMO_ID = 0x53420001

REG_ID = 0x00
REG_LIVENESS = 0x04
REG_INT_STATUS = 0x08
REG_INT_RAISE = 0x0C
REG_INT_ACK = 0x10
REG_DMA_SRC = 0x20
REG_DMA_DST = 0x28
REG_DMA_COUNT = 0x30
REG_DMA_CMD = 0x34

DMA_START = 1 << 0
DMA_TO_MEMORY = 1 << 1
DMA_IRQ = 1 << 2
DMA_ERROR = 1 << 31
DMA_DONE_BIT = 1 << 8

BUF_OFFSET = 0x800
BUF_SIZE = 0x800
PREF_SIZE = 0x10000


def _rom_image(vendor: int, device: int, class_code: int, size: int) -> bytes:
    """An expansion ROM with the 0x55AA signature and a PCI data structure (PCI FW 3.0)."""
    rom = bytearray(size)
    rom[0:2] = b"\x55\xaa"
    rom[2] = size // 512
    # The initialisation entry point (offset 3) is called by BIOSes that run option ROMs
    # (SeaBIOS: far call to seg:0003); RETF returns at once instead of executing zeroes.
    rom[3] = 0xCB
    rom[0x18:0x1A] = (0x1C).to_bytes(2, "little")
    pcir = bytearray(b"PCIR")
    pcir += vendor.to_bytes(2, "little") + device.to_bytes(2, "little")
    pcir += bytes(2) + (0x18).to_bytes(2, "little") + bytes([0])  # VPD, length, revision
    pcir += class_code.to_bytes(3, "little") + (size // 512).to_bytes(2, "little")
    pcir += bytes(2) + bytes([0x00, 0x80]) + bytes(2)  # code rev, x86 code, last image
    rom[0x1C : 0x1C + len(pcir)] = pcir
    rom[size - 1] = (-sum(rom)) & 0xFF
    return bytes(rom)


class _Registers(BusDevice):
    """BAR0 (and the BAR1 mirror): the register block and the DMA buffer.

    The bus hands over DWORDs, possibly unaligned inside the BAR: reads gather the bytes
    from the aligned registers (reads have no side effects); an unaligned write reaches the
    buffer byte by byte and is ignored by the registers, which only take whole DWORDs.
    """

    io_sizes = frozenset({4})

    def __init__(self, dev: DemoDevice, name: str) -> None:
        self.dev = dev
        self.name = name

    def read(self, offset: int, size: int) -> int:
        if not offset & 3:
            return self.dev.reg_read(offset)
        value = 0
        for i in range(size):
            a = offset + i
            value |= ((self.dev.reg_read(a & ~3) >> (8 * (a & 3))) & 0xFF) << (8 * i)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        if not offset & 3:
            self.dev.reg_write(offset, value)
        elif offset >= BUF_OFFSET:
            o = offset - BUF_OFFSET
            n = max(0, min(size, BUF_SIZE - o))
            self.dev.buffer[o : o + n] = value.to_bytes(size, "little")[:n]
        else:
            self.dev.log.debug("demo-unaligned", "demo: unaligned register write at 0x%x", offset)


class _Memory(BusDevice):
    """BAR4: plain device memory, any access size."""

    io_sizes = frozenset({1, 2, 4, 8})

    def __init__(self, data: bytearray) -> None:
        self.data = data
        self.name = "demo-memory"

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.data[offset : offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        self.data[offset : offset + size] = value.to_bytes(size, "little")


class _Rom(BusDevice):
    io_sizes = frozenset({1, 2, 4, 8})

    def __init__(self, image: bytes) -> None:
        self.image = image
        self.name = "demo-rom"

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.image[offset : offset + size], "little")


class DemoDevice(PciFunction):
    STATE_KIND = "demo"

    def __init__(self, pcie: bool = False, name: str = "demo") -> None:
        super().__init__(
            DEMO_VENDOR,
            DEMO_DEVICE,
            0x00FF00,
            revision=0x01,
            subsystem=(DEMO_VENDOR, DEMO_DEVICE),
            pcie=pcie,
            name=name,
        )
        self.liveness = 0
        self.int_status = 0
        self.dma_src = 0
        self.dma_dst = 0
        self.dma_count = 0
        self.dma_cmd = 0
        self.buffer = bytearray(BUF_SIZE)
        self._dma_active = False
        self.memory = bytearray(PREF_SIZE)
        self.set_interrupt_pin(1)
        regs = _Registers(self, f"{name}-mmio")
        self.add_bar(0, Bar(BarKind.MEM32, 0x1000, regs))
        self.add_bar(1, Bar(BarKind.IO, 0x40, _Registers(self, f"{name}-io")))
        self.add_capability(PmCapability())
        self.add_capability(MsiCapability(vectors=4, addr64=True, per_vector_mask=True))
        msix = MsixCapability(vectors=4, bar=2, table_offset=0, pba_offset=0x800)
        self.add_capability(msix)
        self.add_bar(2, Bar(BarKind.MEM64, 0x1000, MsixRegion(msix)))
        self.add_bar(4, Bar(BarKind.MEM64, PREF_SIZE, _Memory(self.memory), prefetchable=True))
        self.add_rom(RomBar(0x800, _Rom(_rom_image(DEMO_VENDOR, DEMO_DEVICE, 0x00FF00, 0x800))))
        if pcie:
            self.add_capability(PcieCapability())
            self.add_capability(serial_number_capability(0x5342_0000_0000_0001))

    # -- registers -----------------------------------------------------------------------
    def reg_read(self, offset: int) -> int:
        """The DWORD register at `offset` (a multiple of 4)."""
        if offset >= BUF_OFFSET:
            o = offset - BUF_OFFSET
            return int.from_bytes(self.buffer[o : o + 4], "little")
        match offset:
            case 0x00:
                return DEMO_ID
            case 0x04:
                return ~self.liveness & 0xFFFFFFFF
            case 0x08:
                return self.int_status
            case 0x20 | 0x24:
                return (self.dma_src >> (8 * (offset - 0x20))) & 0xFFFFFFFF
            case 0x28 | 0x2C:
                return (self.dma_dst >> (8 * (offset - 0x28))) & 0xFFFFFFFF
            case 0x30:
                return self.dma_count
            case 0x34:
                return self.dma_cmd
        return 0

    def reg_write(self, offset: int, value: int) -> None:
        """A DWORD write to the register at `offset` (a multiple of 4)."""
        value &= 0xFFFFFFFF
        if offset >= BUF_OFFSET:
            o = offset - BUF_OFFSET
            if o + 4 <= BUF_SIZE:
                self.buffer[o : o + 4] = value.to_bytes(4, "little")
            return
        match offset:
            case 0x04:
                self.liveness = value
            case 0x0C:
                self.raise_irq(value)
            case 0x10:
                self.ack_irq(value)
            case 0x20 | 0x24:
                shift = 8 * (offset - 0x20)
                self.dma_src = (self.dma_src & ~(0xFFFFFFFF << shift)) | (value << shift)
            case 0x28 | 0x2C:
                shift = 8 * (offset - 0x28)
                self.dma_dst = (self.dma_dst & ~(0xFFFFFFFF << shift)) | (value << shift)
            case 0x30:
                self.dma_count = value
            case 0x34:
                if self._dma_active:
                    # The engine is busy (a transfer wrote to its own command register):
                    # the start is refused and the transfer flagged, never recursed into.
                    self.dma_cmd |= DMA_ERROR
                    return
                self.dma_cmd = value & (DMA_TO_MEMORY | DMA_IRQ)
                if value & DMA_START:
                    self._dma_active = True
                    try:
                        self._do_dma()
                    finally:
                        self._dma_active = False
            case _:
                self.log.debug("demo-reg", "demo: write to undefined register 0x%x", offset)

    # -- interrupts ----------------------------------------------------------------------
    def raise_irq(self, bits: int) -> None:
        bits &= 0xFFFFFFFF
        if not bits:
            return
        self.int_status |= bits
        msix, msi = self.msix, self.msi
        if msix is not None and msix.enabled:
            msix.notify(0)
        elif msi is not None and msi.enabled:
            msi.notify(0)
        self._update_intx()

    def ack_irq(self, bits: int) -> None:
        self.int_status &= ~bits & 0xFFFFFFFF
        self._update_intx()

    def _update_intx(self) -> None:
        # A function using MSI or MSI-X must not assert INTx (PCI 3.0, 6.8.1.3 / 6.8.2.3).
        msix, msi = self.msix, self.msi
        use_msi = (msix is not None and msix.enabled) or (msi is not None and msi.enabled)
        self.set_intx(bool(self.int_status) and not use_msi)

    def on_config_write(self, offset: int, size: int) -> None:
        self._update_intx()

    # -- DMA -----------------------------------------------------------------------------
    def _do_dma(self) -> None:
        count = self.dma_count
        to_memory = bool(self.dma_cmd & DMA_TO_MEMORY)
        off = self.dma_src if to_memory else self.dma_dst
        addr = self.dma_dst if to_memory else self.dma_src
        if off + count > BUF_SIZE:
            self.log.warning("demo-dma", "demo: DMA of %d bytes at buffer offset 0x%x", count, off)
            self.dma_cmd |= DMA_ERROR
            return
        try:
            if to_memory:
                self.dma.write(addr, bytes(self.buffer[off : off + count]))
            else:
                self.buffer[off : off + count] = self.dma.read(addr, count)
        except (DmaError, RuntimeError) as e:
            self.log.warning("demo-dma", "demo: DMA failed: %s", e)
            self.dma_cmd |= DMA_ERROR
            return
        if self.dma_cmd & DMA_IRQ:
            self.raise_irq(DMA_DONE_BIT)

    def reset_device(self) -> None:
        self.liveness = self.int_status = 0
        self.dma_src = self.dma_dst = self.dma_count = self.dma_cmd = 0
        self.buffer[:] = bytes(BUF_SIZE)
        self.memory[:] = bytes(PREF_SIZE)

    # -- state ---------------------------------------------------------------------------
    def save_device(self) -> dict[str, Any]:
        return {
            "liveness": self.liveness,
            "int_status": self.int_status,
            "dma_src": self.dma_src,
            "dma_dst": self.dma_dst,
            "dma_count": self.dma_count,
            "dma_cmd": self.dma_cmd,
            "buffer": self.buffer.hex(),
            "memory": self.memory.hex(),
        }

    def restore_device(self, state: dict[str, Any]) -> None:
        u32, u64 = 0xFFFFFFFF, 2**64 - 1
        vals = {
            "liveness": get_int(state, "liveness", 0, u32),
            "int_status": get_int(state, "int_status", 0, u32),
            "dma_src": get_int(state, "dma_src", 0, u64),
            "dma_dst": get_int(state, "dma_dst", 0, u64),
            "dma_count": get_int(state, "dma_count", 0, u32),
            "dma_cmd": get_int(state, "dma_cmd", 0, u32),
        }
        if vals["dma_cmd"] & ~(DMA_TO_MEMORY | DMA_IRQ | DMA_ERROR):
            raise StateError("demo: DMA_CMD has bits the device never sets")
        try:
            buf = get_hex(state, "buffer", BUF_SIZE)
            mem = get_hex(state, "memory", PREF_SIZE)
        except StateError as e:
            raise StateError(f"demo: {e}") from None
        for k, v in vals.items():
            setattr(self, k, v)
        self.buffer[:] = buf
        self.memory[:] = mem
