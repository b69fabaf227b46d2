"""One ATA channel: the command block (8 ports), the control block (device control /
alternate status), a master and a slave, and the INTRQ wire (ATA/ATAPI-6, clause 7).

* Writes of the task-file registers reach both devices; the DEV bit of the device/head
  register selects which one answers reads and the command register.
* Device-absent reads follow QEMU (hw/ide/core.c): with no device on the channel, or with an
  absent device 1 selected, every register reads 0 (device 0 answering for a missing device
  1 with status 00h, ATA-6 9.16.1; an empty channel's bus is pulled down on DD7 so a BIOS
  never sees BSY). Commands to an absent device are ignored.
* INTRQ is the selected device's pending interrupt while nIEN is clear; reading the status
  register clears the pending interrupt, reading the alternate status does not (7.15, 7.2).
* While BSY or DRQ is set a new command is ignored (DEVICE RESET to an ATAPI device
  excepted, ATA-6 8.9); SRST set puts both devices in reset (BSY) and its clearing ends the
  reset with the signatures (9.2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from southbridge.core.device import BusDevice
from southbridge.core.state import StateError, get_int
from southbridge.devices.ide import regs as r
from southbridge.devices.ide.drive import TASKFILE, IdeDrive

if TYPE_CHECKING:
    from southbridge.devices.ide.busmaster import BusMaster

_REG_NAMES = {r.FEATURE: "feature", r.NSECTOR: "nsector", r.SECTOR: "sector"}
_REG_NAMES |= {r.LCYL: "lcyl", r.HCYL: "hcyl"}


class IdeChannel:
    def __init__(self, irq: Callable[[bool], None], name: str = "ide") -> None:
        self.name = name
        self._irq = irq
        self.drives: list[IdeDrive | None] = [None, None]
        self.ctl = 0
        self.bm: BusMaster | None = None
        self.irq_level = False
        self.command_block = CommandBlock(self)
        self.control_block = ControlBlock(self)

    def attach(self, unit: int, drive: IdeDrive) -> None:
        drive.channel = self
        drive.unit = unit
        self.drives[unit] = drive

    @property
    def unit(self) -> int:
        """The selected device, as every device latched the DEV bit."""
        d = self.drives[0] or self.drives[1]
        return 1 if d is not None and d.select & r.SEL_DEV else 0

    @property
    def selected(self) -> IdeDrive | None:
        return self.drives[self.unit]

    def present(self) -> list[IdeDrive]:
        return [d for d in self.drives if d is not None]

    def update_irq(self) -> None:
        d = self.selected
        level = d is not None and d.irq_pending and not self.ctl & r.CTL_NIEN
        if level != self.irq_level:
            self.irq_level = level
            if self.bm is not None and level:
                self.bm.device_interrupt()
            self._irq(level)

    # -- command block ---------------------------------------------------------------------
    def read(self, reg: int, size: int) -> int:
        d = self.selected
        if reg == r.DATA:
            return d.data_read(size) if d is not None else 0
        if d is None:
            return 0
        if reg == r.STATUS:
            status = d.status
            d.lower_irq()
            return status
        if reg == r.ERROR:
            return d.error
        if reg == r.SELECT:
            return d.select | 0xA0  # bits 7 and 5 obsolete, read as ones on every disk
        return d.read_reg(_REG_NAMES[reg], bool(self.ctl & r.CTL_HOB))

    def write(self, reg: int, size: int, value: int) -> None:
        drives = self.present()
        if reg == r.DATA:
            d = self.selected
            if d is not None:
                d.data_write(size, value)
            return
        self.ctl &= ~r.CTL_HOB  # ATA-6 7.8: any command block write clears HOB
        if reg == r.COMMAND:
            self._command(value & 0xFF)
            return
        for d in drives:
            if reg == r.SELECT:
                d.select = value & (r.SEL_LBA | r.SEL_DEV | 0x0F)
            else:
                d.write_reg(_REG_NAMES[reg], value)
        if reg == r.SELECT:
            self.update_irq()

    def _command(self, cmd: int) -> None:
        d = self.selected
        if d is None or self.ctl & r.CTL_SRST:
            return
        if d.status & (r.BSY | r.DRQ) and not (cmd == r.CMD_DEVICE_RESET and d.kind == "atapi"):
            d.log.debug("busy", "ide: command 0x%02x while BSY/DRQ ignored", cmd)
            return
        if cmd == r.CMD_EXECUTE_DIAGNOSTIC:
            self._diagnostic()
            return
        d.command(cmd)

    def _diagnostic(self) -> None:
        """EXECUTE DEVICE DIAGNOSTIC (8.11): both devices reset their task file to the
        signature, 01h in the error register; device 0 interrupts."""
        for d in self.present():
            d.lower_irq()
            d.reset_device()
            d.irq_pending = False
        first = self.drives[0] or self.drives[1]
        if first is not None:
            first.raise_irq()

    # -- control block ---------------------------------------------------------------------
    def alt_status(self) -> int:
        d = self.selected
        return d.status if d is not None else 0

    def write_control(self, value: int) -> None:
        old = self.ctl
        self.ctl = value & (r.CTL_NIEN | r.CTL_SRST | r.CTL_HOB)
        if value & r.CTL_SRST and not old & r.CTL_SRST:
            for d in self.present():
                d.reset_device()
                d.status = r.BSY | r.DSC  # in reset until SRST clears (9.2)
        elif old & r.CTL_SRST and not value & r.CTL_SRST:
            for d in self.present():
                d.reset_device()
        self.update_irq()

    def reset(self) -> None:
        self.ctl = 0
        for d in self.present():
            d.reset_device()
            d.select = 0
            d.set_signature()
        self.update_irq()

    # -- state ---------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        return {
            "ctl": self.ctl,
            "drives": [d.save() if d is not None else None for d in self.drives],
        }

    def restore(self, state: dict[str, Any]) -> None:
        ctl = get_int(state, "ctl", 0, 0xFF)
        if ctl & ~(r.CTL_NIEN | r.CTL_SRST | r.CTL_HOB):
            raise StateError(f"{self.name}: device control bits 0x{ctl:02x}")
        drives = state.get("drives")
        if not isinstance(drives, list) or len(drives) != 2:
            raise StateError(f"{self.name}: 'drives' must be a list of two")
        backups = [d.save() if d is not None else None for d in self.drives]
        try:
            for d, s in zip(self.drives, drives, strict=True):
                if (d is None) != (s is None):
                    raise StateError(f"{self.name}: saved devices differ from the channel's")
                if d is not None:
                    if not isinstance(s, dict):
                        raise StateError(f"{self.name}: device state must be a mapping")
                    d.restore(s)
            for d in self.present():
                if bool(d.status & r.BSY) != bool(ctl & r.CTL_SRST):
                    raise StateError(f"{self.name}: BSY goes with SRST held, and only then")
            sels = {d.select & r.SEL_DEV for d in self.present()}
            if len(sels) > 1:
                raise StateError(f"{self.name}: the devices disagree on the selected device")
        except StateError:
            for d, b in zip(self.drives, backups, strict=True):
                if d is not None and b is not None:
                    d.restore(b)
            raise
        self.ctl = ctl
        self.irq_level = False
        d = self.selected
        level = d is not None and d.irq_pending and not ctl & r.CTL_NIEN
        self.irq_level = level
        self._irq(level)


class CommandBlock(BusDevice):
    """0x1F0-0x1F7 / 0x170-0x177: the data port takes 16- and 32-bit accesses (PIIX3 32-bit
    PIO), the others bytes (a wider access is split per register)."""

    io_sizes = frozenset({1, 2, 4})

    def __init__(self, channel: IdeChannel) -> None:
        self.channel = channel
        self.name = f"{channel.name}-cmd"

    def read(self, offset: int, size: int) -> int:
        if offset == r.DATA:
            if size == 1:
                return 0xFF  # byte access to the data port: not decoded (QEMU too)
            return self.channel.read(r.DATA, size)
        value = 0
        for i in range(size):
            if offset + i < 8:
                value |= self.channel.read(offset + i, 1) << (8 * i)
        return value

    def read_string(self, offset: int, size: int, count: int) -> bytes:
        """REP INSW/INSD (the KVM run loop's string path): as `count` reads, in one call."""
        d = self.channel.selected
        if offset != r.DATA or size == 1 or d is None:
            return b"".join(self.read(offset, size).to_bytes(size, "little") for _ in range(count))
        return d.data_read_string(size, count)

    def write_string(self, offset: int, size: int, data: bytes) -> None:
        d = self.channel.selected
        if offset != r.DATA or size == 1 or d is None:
            for i in range(0, len(data), size):
                self.write(offset, size, int.from_bytes(data[i : i + size], "little"))
            return
        d.data_write_string(size, data)

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == r.DATA:
            if size > 1:
                self.channel.write(r.DATA, size, value)
            return
        for i in range(size):
            if offset + i < 8:
                self.channel.write(offset + i, 1, (value >> (8 * i)) & 0xFF)


class ControlBlock(BusDevice):
    """0x3F6 / 0x376: alternate status (read) and device control (write)."""

    io_sizes = frozenset({1})

    def __init__(self, channel: IdeChannel) -> None:
        self.channel = channel
        self.name = f"{channel.name}-ctl"

    def read(self, offset: int, size: int) -> int:
        return self.channel.alt_status()

    def write(self, offset: int, size: int, value: int) -> None:
        self.channel.write_control(value)


__all__ = ["TASKFILE", "IdeChannel"]
