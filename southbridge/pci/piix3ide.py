"""The PIIX3 IDE function (82371SB function 1, 8086:7010) at 00:01.1, in compatibility mode.

As QEMU's `piix3-ide` (hw/ide/piix.c) and the 82371SB datasheet (290550-002, 2.7):

* Class 0101, programming interface 80h: both channels in compatibility mode (fixed, the
  native-mode bits read 0 and are not writable), bus-master capable.
* The primary channel at 0x1F0-0x1F7 and 0x3F6 on ISA IRQ 14, the secondary at 0x170-0x177
  and 0x376 on IRQ 15 (edge, through the 8259 and the IOAPIC); no PCI interrupt pin.
* The legacy ports decode while the command register's I/O enable is set and the channel's
  IDETIM register (0x40 primary, 0x42 secondary) has bit 15, IDE decode enable, set (the
  datasheet's power-on value is 0: SeaBIOS sets both, src/fw/pciinit.c piix_ide_setup).
* BAR4 (BMIBA, 0x20): the 16 bus-master IDE ports (`devices.ide.busmaster`), primary at 0.
* IDETIM and SIDETIM (0x44) are plain timing storage: the emulated cable has no timing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from southbridge.core.irq import IrqLine
from southbridge.core.state import StateError
from southbridge.devices.ide.busmaster import BusMaster, BusMasterIo, DmaFault
from southbridge.devices.ide.channel import IdeChannel
from southbridge.devices.ide.drive import IdeDrive
from southbridge.pci.bar import Bar, BarKind, Region, next_seq
from southbridge.pci.config import CMD_IO
from southbridge.pci.dma import DmaError
from southbridge.pci.function import PciFunction
from southbridge.pci.piix3 import VENDOR_INTEL

DEVICE_82371SB_IDE = 0x7010
CLASS_IDE = 0x010180
IDETIM = (0x40, 0x42)
SIDETIM = 0x44
IDE_DECODE = 0x8000
BMIBA_BAR = 4
# channel -> (command block, control block, ISA IRQ)
LEGACY = ((0x1F0, 0x3F6, 14), (0x170, 0x376, 15))


class _BmMemory:
    """The function's bus-master view of memory for the DMA engines (a master abort is the
    engine's DmaFault)."""

    def __init__(self, fn: Piix3Ide) -> None:
        self.fn = fn

    def read(self, addr: int, length: int) -> bytes:
        try:
            return self.fn.dma.read(addr, length)
        except (DmaError, RuntimeError) as e:
            raise DmaFault(str(e)) from None

    def write(self, addr: int, data: bytes) -> None:
        try:
            self.fn.dma.write(addr, data)
        except (DmaError, RuntimeError) as e:
            raise DmaFault(str(e)) from None


class Piix3Ide(PciFunction):
    kind = "piix3-ide"

    def __init__(self, irqs: Sequence[IrqLine], drives: Sequence[IdeDrive | None] = ()) -> None:
        super().__init__(VENDOR_INTEL, DEVICE_82371SB_IDE, CLASS_IDE, 0, name="ide")
        if len(irqs) != 2 or len(drives) > 4:
            raise ValueError("the PIIX3 IDE function has two channels of two devices")
        memory = _BmMemory(self)
        self.channels = [IdeChannel(irqs[n].set, ("ide0", "ide1")[n]) for n in range(2)]
        self.engines = [BusMaster(ch, lambda: memory) for ch in self.channels]
        for index, drive in enumerate(drives):
            if drive is not None:
                self.channels[index >> 1].attach(index & 1, drive)
        for ch in self.channels:
            ch.reset()
        self.bmio = BusMasterIo(self.engines)
        self.add_bar(BMIBA_BAR, Bar(BarKind.IO, 16, self.bmio, name="ide.bmdma"))
        cs = self.config
        for off in IDETIM:
            cs.set_wmask(off, 2, 0xFFFF)
        cs.set_wmask(SIDETIM, 1, 0xFF)
        self._owners = [object() for _ in range(4)]
        self._seqs = [next_seq() for _ in range(4)]
        self._decoded: list[bool] = [False, False]

    def drive(self, index: int) -> IdeDrive | None:
        """Device `index` = 2 * channel + unit (QEMU's -drive index)."""
        return self.channels[index >> 1].drives[index & 1]

    def decodes(self, channel: int) -> bool:
        return bool(self.command & CMD_IO and self.config.get(IDETIM[channel], 2) & IDE_DECODE)

    def regions(self) -> tuple[list[Region], list[Region]]:
        io, mem = super().regions()
        for n, (cmd_base, ctl_base, _) in enumerate(LEGACY):
            on = self.decodes(n)
            if on and not self._decoded[n]:
                self._seqs[2 * n] = next_seq()
                self._seqs[2 * n + 1] = next_seq()
            self._decoded[n] = on
            if on:
                ch = self.channels[n]
                io.append(
                    Region(
                        self._owners[2 * n],
                        cmd_base,
                        8,
                        ch.command_block,
                        ch.command_block.name,
                        self._seqs[2 * n],
                    )
                )
                io.append(
                    Region(
                        self._owners[2 * n + 1],
                        ctl_base,
                        1,
                        ch.control_block,
                        ch.control_block.name,
                        self._seqs[2 * n + 1],
                    )
                )
        return io, mem

    def on_config_write(self, offset: int, size: int) -> None:
        if offset < IDETIM[1] + 2 and IDETIM[0] < offset + size:
            self.update_mappings()

    # -- state ---------------------------------------------------------------------------
    def reset_device(self) -> None:
        for ch, bm in zip(self.channels, self.engines, strict=True):
            bm.reset()
            ch.reset()
        self._decoded = [False, False]

    def save_device(self) -> dict[str, Any]:
        return {
            "channels": [ch.save() for ch in self.channels],
            "bmdma": [bm.save() for bm in self.engines],
        }

    def restore_device(self, state: dict[str, Any]) -> None:
        chans, bms = state.get("channels"), state.get("bmdma")
        if not isinstance(chans, list) or not isinstance(bms, list):
            raise StateError("piix3-ide: 'channels' and 'bmdma' must be lists")
        if len(chans) != 2 or len(bms) != 2:
            raise StateError("piix3-ide: two channels expected")
        if not all(isinstance(x, dict) for x in (*chans, *bms)):
            raise StateError("piix3-ide: channel states must be mappings")
        backup = self.save_device()
        try:
            for bm, s in zip(self.engines, bms, strict=True):
                bm.restore(s)
            for ch, s in zip(self.channels, chans, strict=True):
                ch.restore(s)
        except StateError:
            for bm, s in zip(self.engines, backup["bmdma"], strict=True):
                bm.restore(s)
            for ch, s in zip(self.channels, backup["channels"], strict=True):
                ch.restore(s)
            raise
        self._decoded = [False, False]
