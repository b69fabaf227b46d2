"""A minimal 8042 keyboard controller at 0x60 (data) and 0x64 (status / command), with no
keyboard and no mouse attached.

Firmware and kernels talk to the controller itself before any device: self-test, the command
byte, the output port (A20 gate and the CPU reset line), interface tests. Those are modelled
after the IBM PC AT / PS/2 8042 firmware and QEMU's hw/input/pckbd.c. The controller
consumes every write at once, so IBF (status bit 1) always reads 0 and a response is in the
output buffer by the time the guest polls.

No device is attached: a byte sent to the keyboard (a data write with no command pending) or
to the auxiliary port (command 0xD4) is answered as a real controller answers a device that
never clocks: 0xFE in the output buffer with the time-out status bit set. QEMU always has a
keyboard, so it never shows this; Linux's i8042 driver maps 0xFE + time-out to
SERIO_TIMEOUT, and atkbd/psmouse then find no device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from southbridge.core.device import BusDevice
from southbridge.core.irq import IrqLine
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.request import Request
from southbridge.core.state import StateError, check_header, get_bool, get_int, header

DATA_PORT = 0x60
STATUS_PORT = 0x64

_log = RateLimitedLog(logging.getLogger("southbridge.i8042"))

A20Sink = Callable[[bool], None]

# Status register
STAT_OBF = 0x01  # output buffer full
STAT_IBF = 0x02  # input buffer full (never: writes are consumed at once)
STAT_SYS = 0x04  # system flag: set by self-test, and from command byte bit 2
STAT_CMD = 0x08  # A2: last write went to 0x64 (command) rather than 0x60 (data)
STAT_UNLOCKED = 0x10  # keyboard inhibit switch: 1 = not inhibited
STAT_AUX_OBF = 0x20  # the output buffer holds auxiliary-device data
STAT_TIMEOUT = 0x40  # general time-out: the device did not answer
STAT_PARITY = 0x80

# Command byte ("mode")
MODE_KBD_INT = 0x01
MODE_AUX_INT = 0x02
MODE_SYS = 0x04
MODE_DISABLE_KBD = 0x10
MODE_DISABLE_AUX = 0x20
MODE_XLATE = 0x40

# Output port
OUT_RESET = 0x01  # CPU reset line, active low
OUT_A20 = 0x02
OUT_OBF = 0x10  # output buffer full (keyboard IRQ1 pin)
OUT_AUX_OBF = 0x20  # (IRQ12 pin)
OUT_POWER_ON = 0xCF  # reset line high, A20 on, clock/data lines high (QEMU's reset value)

NO_DEVICE = 0xFE  # what the controller puts in the buffer when a device times out

# Commands that take a data byte through port 0x60.
CMD_WRITE_MODE = 0x60
CMD_WRITE_OUTPORT = 0xD1
CMD_WRITE_OBUF = 0xD2
CMD_WRITE_AUX_OBUF = 0xD3
CMD_WRITE_AUX = 0xD4
CMD_WRITE_RAM_FIRST, CMD_WRITE_RAM_LAST = 0x61, 0x7F  # controller RAM bytes 1-31
DATA_COMMANDS = frozenset(
    {CMD_WRITE_MODE, CMD_WRITE_OUTPORT, CMD_WRITE_OBUF, CMD_WRITE_AUX_OBUF, CMD_WRITE_AUX}
    | set(range(CMD_WRITE_RAM_FIRST, CMD_WRITE_RAM_LAST + 1))
)

SRC_NONE, SRC_CTRL, SRC_KBD, SRC_AUX = 0, 1, 2, 3


class I8042:
    """The controller state; `data_port` and `command_port` are its two bus registrations."""

    STATE_KIND: ClassVar[str] = "i8042"
    STATE_VERSION: ClassVar[int] = 1

    def __init__(
        self,
        request: Request,
        a20: A20Sink | None = None,
        irq1: IrqLine | None = None,
        irq12: IrqLine | None = None,
    ) -> None:
        self._request = request
        self._a20 = a20
        self.irq1 = irq1
        self.irq12 = irq12
        self.data_port = _DataPort(self)
        self.command_port = _CommandPort(self)
        self.reset()

    # -- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Power-on state (QEMU's kbd_reset): interrupts on, A20 on, nothing buffered."""
        self.mode = MODE_KBD_INT | MODE_AUX_INT
        self.status = STAT_CMD | STAT_UNLOCKED  # only SYS, CMD, TIMEOUT are kept here
        self.outport = OUT_POWER_ON
        self.obuf = 0
        self.source = SRC_NONE  # who filled the output buffer; NONE = buffer empty
        self.write_cmd = 0  # data command waiting for its byte on 0x60
        self.ram = bytearray(32)  # controller RAM; byte 0 is the command byte (`mode`)
        self._update_irq()
        if self._a20 is not None:
            self._a20(True)

    @property
    def a20(self) -> bool:
        return bool(self.outport & OUT_A20)

    def read_status(self) -> int:
        s = self.status
        if self.source != SRC_NONE:
            s |= STAT_OBF
            if self.source == SRC_AUX:
                s |= STAT_AUX_OBF
        return s

    def read_outport(self) -> int:
        v = self.outport & ~(OUT_OBF | OUT_AUX_OBF)
        if self.source != SRC_NONE:
            v |= OUT_AUX_OBF if self.source == SRC_AUX else OUT_OBF
        return v

    def _queue(self, value: int, source: int, timeout: bool = False) -> None:
        # One output byte: a new one replaces an unread one, as in the 8042.
        self.obuf = value & 0xFF
        self.source = source
        if timeout:
            self.status |= STAT_TIMEOUT
        else:
            self.status &= ~STAT_TIMEOUT
        self._update_irq()

    def _update_irq(self) -> None:
        # QEMU kbd_update_irq_lines: IRQ1 for keyboard/controller bytes while the keyboard
        # interrupt is enabled and the interface not disabled; IRQ12 for auxiliary bytes.
        kbd = aux = False
        if self.source == SRC_AUX:
            aux = bool(self.mode & MODE_AUX_INT)
        elif self.source != SRC_NONE:
            kbd = bool(self.mode & MODE_KBD_INT) and not self.mode & MODE_DISABLE_KBD
        if self.irq1 is not None:
            self.irq1.set(kbd)
        if self.irq12 is not None:
            self.irq12.set(aux)

    def _set_outport(self, value: int) -> None:
        self.outport = value & 0xFF
        if self._a20 is not None:
            self._a20(self.a20)
        if not value & OUT_RESET:
            _log.debug("outport-reset", "i8042: output port reset line driven low")
            self._request("reset", 0)

    # -- port 0x60 -------------------------------------------------------------------------
    def read_data(self) -> int:
        """Take the output byte; with nothing buffered the last byte reads again."""
        if self.source != SRC_NONE:
            self.source = SRC_NONE
            self.status &= ~STAT_TIMEOUT
            self._update_irq()
        return self.obuf

    def write_data(self, value: int) -> None:
        value &= 0xFF
        self.status &= ~STAT_CMD
        cmd, self.write_cmd = self.write_cmd, 0
        if cmd == 0:
            # To the keyboard: writing re-enables the keyboard interface (QEMU does the same),
            # then no keyboard clocks the byte in.
            self.mode &= ~MODE_DISABLE_KBD
            self._queue(NO_DEVICE, SRC_KBD, timeout=True)
        elif cmd == CMD_WRITE_MODE:
            self.mode = value
            # IBM AT: command byte bit 2 is copied to the status register's system flag.
            self.status = (self.status & ~STAT_SYS) | (STAT_SYS if value & MODE_SYS else 0)
            self._update_irq()
        elif cmd == CMD_WRITE_OUTPORT:
            self._set_outport(value)
        elif cmd == CMD_WRITE_OBUF:
            self._queue(value, SRC_KBD)
        elif cmd == CMD_WRITE_AUX_OBUF:
            self._queue(value, SRC_AUX)
        elif cmd == CMD_WRITE_AUX:
            self._queue(NO_DEVICE, SRC_AUX, timeout=True)
        else:  # 61h-7Fh: controller RAM bytes 1-31, scratch for firmware
            self.ram[cmd & 0x1F] = value

    # -- port 0x64 -------------------------------------------------------------------------
    def write_command(self, cmd: int) -> None:
        cmd &= 0xFF
        self.status |= STAT_CMD
        self.write_cmd = 0  # a new command cancels a data byte still expected
        if cmd in DATA_COMMANDS:
            self.write_cmd = cmd
        elif 0x20 <= cmd <= 0x3F:
            # Read controller RAM; byte 0 is the command byte.
            self._queue(self.mode if cmd == 0x20 else self.ram[cmd & 0x1F], SRC_CTRL)
        elif cmd == 0xA7:
            self.mode |= MODE_DISABLE_AUX
        elif cmd == 0xA8:
            self.mode &= ~MODE_DISABLE_AUX
        elif cmd in (0xA9, 0xAB):
            self._queue(0x00, SRC_CTRL)  # interface test: no clock/data line stuck
        elif cmd == 0xAA:
            self.status |= STAT_SYS
            self._queue(0x55, SRC_CTRL)  # self-test passed
        elif cmd == 0xAD:
            self.mode |= MODE_DISABLE_KBD
            self._update_irq()
        elif cmd == 0xAE:
            self.mode &= ~MODE_DISABLE_KBD
            self._update_irq()
        elif cmd == 0xC0:
            self._queue(0x80, SRC_CTRL)  # input port: keyboard not inhibited (QEMU: 0x80)
        elif cmd == 0xD0:
            self._queue(self.read_outport(), SRC_CTRL)
        elif cmd == 0xDD:
            self._set_outport(self.outport & ~OUT_A20)
        elif cmd == 0xDF:
            self._set_outport(self.outport | OUT_A20)
        elif cmd == 0xE0:
            # Test inputs: bit 0 keyboard clock, bit 1 aux clock (low while disabled).
            v = (0 if self.mode & MODE_DISABLE_KBD else 1) | (
                0 if self.mode & MODE_DISABLE_AUX else 2
            )
            self._queue(v, SRC_CTRL)
        elif cmd >= 0xF0:
            # Pulse output port bits 3-0 low for 6 us where the command's bit is 0; bit 0 is
            # the CPU reset line (0xFE is the classic "reset through the keyboard").
            if not cmd & 0x01:
                _log.debug("pulse-reset", "i8042: reset pulse 0x%02x", cmd)
                self._request("reset", 0)
        else:
            _log.warning(f"cmd-{cmd:02x}", "i8042: unsupported controller command 0x%02x", cmd)

    # -- save / restore --------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        return header(self) | {
            "mode": self.mode,
            "sys": bool(self.status & STAT_SYS),
            "cmd": bool(self.status & STAT_CMD),
            "timeout": bool(self.status & STAT_TIMEOUT),
            "outport": self.outport,
            "obuf": self.obuf,
            "source": self.source,
            "write_cmd": self.write_cmd,
            "ram": list(self.ram[1:]),
        }

    def restore(self, state: dict[str, Any]) -> None:
        state = check_header(state, self)
        mode = get_int(state, "mode", 0, 0xFF)
        sys_flag = get_bool(state, "sys")
        cmd_flag = get_bool(state, "cmd")
        timeout = get_bool(state, "timeout")
        outport = get_int(state, "outport", 0, 0xFF)
        obuf = get_int(state, "obuf", 0, 0xFF)
        source = get_int(state, "source", SRC_NONE, SRC_AUX)
        write_cmd = get_int(state, "write_cmd", 0, 0xFF)
        ram = state.get("ram")
        if (
            not isinstance(ram, list)
            or len(ram) != 31
            or not all(
                isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 0xFF for b in ram
            )
        ):
            raise StateError("i8042: ram must be 31 bytes")
        if write_cmd and write_cmd not in DATA_COMMANDS:
            raise StateError(f"i8042: 0x{write_cmd:02x} is not a command that takes data")
        if timeout and source == SRC_NONE:
            raise StateError("i8042: time-out flag without the byte it belongs to")
        self.mode, self.outport, self.obuf = mode, outport, obuf
        self.source, self.write_cmd = source, write_cmd
        self.ram[1:] = bytes(ram)
        self.status = (
            STAT_UNLOCKED
            | (STAT_SYS if sys_flag else 0)
            | (STAT_CMD if cmd_flag else 0)
            | (STAT_TIMEOUT if timeout else 0)
        )
        self._update_irq()
        if self._a20 is not None:
            self._a20(self.a20)


class _DataPort(BusDevice):
    io_sizes = frozenset({1})
    name = "i8042-data"

    def __init__(self, ctrl: I8042) -> None:
        self.ctrl = ctrl

    def read(self, offset: int, size: int) -> int:
        return self.ctrl.read_data()

    def write(self, offset: int, size: int, value: int) -> None:
        self.ctrl.write_data(value)


class _CommandPort(BusDevice):
    io_sizes = frozenset({1})
    name = "i8042-cmd"

    def __init__(self, ctrl: I8042) -> None:
        self.ctrl = ctrl

    def read(self, offset: int, size: int) -> int:
        return self.ctrl.read_status()

    def write(self, offset: int, size: int, value: int) -> None:
        self.ctrl.write_command(value)
