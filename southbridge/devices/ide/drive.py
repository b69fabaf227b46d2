"""What the ATA disk and the ATAPI CD-ROM share: one device's task file, status and the PIO
data-transfer engine (ATA/ATAPI-6, T13/1410D).

Each device keeps its own copy of the command block registers: the host's writes reach both
devices on the cable (the channel fans them out), the selected one answers reads. The
48-bit registers are two-deep (7.1.2): a write pushes the previous value to the "HOB" copy
that HOB in the device control register reads back.

A transfer is plain data (so it can be saved): `phase` says what the data port does, `buf`
holds the current DRQ block, `pos` the next byte; when the host has moved the whole block
the subclass's `block_done` decides what follows (more blocks, the command's end, a packet).
Block I/O runs on the `BlockExecutor`; until its completion the device is BSY. A completion
from before a reset is dropped by generation, and `inflight` counts what the executor holds
(a state cannot be saved while it is not zero: the caller drains first, as for virtio-blk).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.state import StateError, brief, get_bool, get_hex, get_int
from southbridge.devices.blockdev import BlockBackend, BlockError, BlockExecutor
from southbridge.devices.ide import regs as r

if TYPE_CHECKING:
    from southbridge.devices.ide.channel import IdeChannel

logger = logging.getLogger("southbridge.ide")

# Phases of the data port.
IDLE = "idle"
PIO_IN = "pio-in"  # device to host
PIO_OUT = "pio-out"  # host to device
PACKET = "packet"  # ATAPI: the host writes the 12-byte command packet
DMA = "dma"  # waiting for, or running on, the bus master
PHASES = (IDLE, PIO_IN, PIO_OUT, PACKET, DMA)

MAX_BLOCK = 1 << 16  # the largest DRQ block or buffered chunk (128 disk sectors)
TASKFILE = ("feature", "nsector", "sector", "lcyl", "hcyl")


class IdeDrive:
    """One device on a channel (subclassed by `AtaDisk` and `AtapiCdrom`)."""

    kind = "none"

    def __init__(self, backend: BlockBackend | None, executor: BlockExecutor) -> None:
        self.backend = backend
        self.executor = executor
        self.channel: IdeChannel | None = None
        self.unit = 0
        self.log = RateLimitedLog(logger)
        self.gen = 0
        self.inflight = 0
        self.regs = dict.fromkeys(TASKFILE, 0)
        self.hob = dict.fromkeys(TASKFILE, 0)
        self.select = 0
        self.status = 0
        self.error = 0
        self.irq_pending = False
        self.phase = IDLE
        self.buf = bytearray()
        self.pos = 0
        self.cmd = 0
        self.power_idle = True
        self.reset_device()

    # -- registers -----------------------------------------------------------------------
    def write_reg(self, name: str, value: int) -> None:
        self.hob[name] = self.regs[name]
        self.regs[name] = value & 0xFF

    def read_reg(self, name: str, hob: bool) -> int:
        return (self.hob if hob else self.regs)[name]

    def signature(self) -> tuple[int, int, int, int]:
        return r.ATA_SIG

    def set_signature(self) -> None:
        """ATA-6 9.12: the signature a device leaves after a reset or diagnostic."""
        nsector, sector, lcyl, hcyl = self.signature()
        for name, value in zip(TASKFILE[1:], (nsector, sector, lcyl, hcyl), strict=True):
            self.regs[name] = self.hob[name] = value
        self.select = self.select & r.SEL_DEV  # head 0, LBA off

    def reset_device(self) -> None:
        """Power-on, hardware or software reset: abort any command, show the signature,
        diagnostic code 01h (passed) in the error register."""
        self.gen += 1
        self.phase = IDLE
        self.buf = bytearray()
        self.pos = 0
        self.cmd = 0
        self.irq_pending = False
        self.error = 0x01
        self.set_signature()
        self.status = self.ready_status()
        self.reset_command_state()

    def ready_status(self) -> int:
        """The status a device shows after reset (ATAPI devices clear DRDY, ATAPI 7.1)."""
        return r.DRDY | r.DSC

    def reset_command_state(self) -> None:
        """Subclass hook: forget the transfer bookkeeping of the command."""

    # -- interrupts ----------------------------------------------------------------------
    def raise_irq(self) -> None:
        self.irq_pending = True
        if self.channel is not None:
            self.channel.update_irq()

    def lower_irq(self) -> None:
        if self.irq_pending:
            self.irq_pending = False
            if self.channel is not None:
                self.channel.update_irq()

    # -- command completion --------------------------------------------------------------
    def complete(self, irq: bool = True) -> None:
        """Successful end of a command: DRDY, no DRQ, the interrupt (8.x "Normal outputs")."""
        self.phase = IDLE
        self.buf = bytearray()
        self.pos = 0
        self.status = r.DRDY | r.DSC
        if irq:
            self.raise_irq()

    def abort(self, error: int = r.ABRT) -> None:
        """The command fails: ERR with the reason in the error register, and the interrupt."""
        self.phase = IDLE
        self.buf = bytearray()
        self.pos = 0
        self.error = error
        self.status = r.DRDY | r.DSC | r.ERR
        self.raise_irq()

    # -- PIO ------------------------------------------------------------------------------
    def start_pio_in(self, data: bytes, irq: bool = True) -> None:
        """A DRQ block the host reads; the interrupt says it is ready (PIO data-in)."""
        self.phase = PIO_IN
        self.buf = bytearray(data)
        self.pos = 0
        self.status = r.DRDY | r.DSC | r.DRQ
        if irq:
            self.raise_irq()

    def start_pio_out(self, length: int, irq: bool) -> None:
        """A DRQ block the host writes (the first one of a write command has no interrupt,
        ATA-6 9.8 PIO data-out protocol)."""
        self.phase = PIO_OUT
        self.buf = bytearray(length)
        self.pos = 0
        self.status = r.DRDY | r.DSC | r.DRQ
        if irq:
            self.raise_irq()

    def data_read(self, size: int) -> int:
        """A 16- or 32-bit data-port read; with no data to give the port reads 0 (QEMU)."""
        if self.phase != PIO_IN or not self.status & r.DRQ:
            return 0
        n = min(size, len(self.buf) - self.pos)
        value = int.from_bytes(self.buf[self.pos : self.pos + n], "little")
        self.pos += n
        if self.pos >= len(self.buf):
            self._block_end()
        return value

    def data_write(self, size: int, value: int) -> None:
        if self.phase not in (PIO_OUT, PACKET) or not self.status & r.DRQ:
            return
        n = min(size, len(self.buf) - self.pos)
        self.buf[self.pos : self.pos + n] = value.to_bytes(size, "little")[:n]
        self.pos += n
        if self.pos >= len(self.buf):
            self._block_end()

    def data_read_string(self, size: int, count: int) -> bytes:
        """`count` data-port reads of `size` bytes: whole items inside the current block in
        one slice, the rest (a block boundary inside an item, no data) item by item."""
        out = bytearray()
        while count:
            if self.phase == PIO_IN and self.status & r.DRQ:
                n = min(count, (len(self.buf) - self.pos) // size)
                if n:
                    out += self.buf[self.pos : self.pos + n * size]
                    self.pos += n * size
                    count -= n
                    if self.pos >= len(self.buf):
                        self._block_end()
                    continue
            out += self.data_read(size).to_bytes(size, "little")
            count -= 1
        return bytes(out)

    def data_write_string(self, size: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            if self.phase in (PIO_OUT, PACKET) and self.status & r.DRQ:
                n = min(len(data) - pos, len(self.buf) - self.pos) // size * size
                if n:
                    self.buf[self.pos : self.pos + n] = data[pos : pos + n]
                    self.pos += n
                    pos += n
                    if self.pos >= len(self.buf):
                        self._block_end()
                    continue
            self.data_write(size, int.from_bytes(data[pos : pos + size], "little"))
            pos += size

    def _block_end(self) -> None:
        self.status &= ~r.DRQ
        self.block_done()

    def block_done(self) -> None:
        """Subclass hook: the host moved the whole DRQ block in `buf`."""
        self.complete(irq=False)

    # -- commands -------------------------------------------------------------------------
    def command(self, cmd: int) -> None:
        """A write of the command register (the channel filters BSY/DRQ and absent devices)."""
        self.lower_irq()  # ATA-6 5.2.9: writing the command register clears INTRQ
        self.cmd = cmd
        self.error = 0
        self.execute(cmd)

    def execute(self, cmd: int) -> None:
        self.abort()

    # -- block I/O -------------------------------------------------------------------------
    def submit(self, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """Run `work` on the executor while BSY; `done(result)` gets bytes/None or the
        BlockError, unless a reset came in between."""
        gen = self.gen
        self.status = r.BSY | (self.status & r.DSC)
        self.inflight += 1

        def finish(result: Any) -> None:
            self.inflight -= 1
            if gen != self.gen:
                return
            done(result)

        self.executor.submit(work, finish)

    # -- DMA (the channel's bus master calls these) -------------------------------------------
    def dma_ready(self) -> bool:
        return self.phase == DMA and not self.status & r.BSY

    def dma_step(self) -> None:
        """Subclass hook: move the next chunk through the bus master."""

    # -- state -----------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        if self.inflight:
            raise StateError(f"ide {self.kind}: {self.inflight} block requests in flight")
        return {
            "kind": self.kind,
            "regs": dict(self.regs),
            "hob": dict(self.hob),
            "select": self.select,
            "status": self.status,
            "error": self.error,
            "irq": self.irq_pending,
            "phase": self.phase,
            "buf": bytes(self.buf).hex(),
            "pos": self.pos,
            "cmd": self.cmd,
            "power_idle": self.power_idle,
            "command": self.save_command(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Validate everything first, then load (StateError leaves the device unchanged)."""
        if state.get("kind") != self.kind:
            raise StateError(f"ide: state of a {brief(state.get('kind'))} device for a {self.kind}")
        regs = _taskfile(state, "regs")
        hob = _taskfile(state, "hob")
        select = get_int(state, "select", 0, 0xFF)
        status = get_int(state, "status", 0, 0xFF)
        error = get_int(state, "error", 0, 0xFF)
        irq = get_bool(state, "irq")
        phase = state.get("phase")
        if phase not in PHASES:
            raise StateError(f"ide: unknown phase {brief(phase)}")
        buf = get_hex(state, "buf")
        if len(buf) > MAX_BLOCK:
            raise StateError("ide: data block larger than the device buffers")
        pos = get_int(state, "pos", 0, len(buf))
        cmd = get_int(state, "cmd", 0, 0xFF)
        power_idle = get_bool(state, "power_idle")
        if status & r.BSY and (status != r.BSY | r.DSC or phase != IDLE):
            raise StateError("ide: BSY with no block request in flight (only a reset's)")
        pio = phase in (PIO_IN, PIO_OUT, PACKET)
        if pio and (not status & r.DRQ or pos >= len(buf)):
            raise StateError("ide: a PIO phase without DRQ or data left")
        if phase == IDLE and (status & r.DRQ or buf):
            raise StateError("ide: DRQ or data with no transfer")
        command = state.get("command")
        if not isinstance(command, dict):
            raise StateError("ide: command state must be a mapping")
        self.check_command(command, str(phase), cmd)
        self.gen += 1
        self.regs, self.hob = regs, hob
        self.select, self.status, self.error = select, status, error
        self.irq_pending = irq
        self.phase = str(phase)
        self.buf = bytearray(buf)
        self.pos = pos
        self.cmd = cmd
        self.power_idle = power_idle
        self.load_command(command)

    def save_command(self) -> dict[str, Any]:
        return {}

    def check_command(self, state: dict[str, Any], phase: str, cmd: int) -> None:
        """Subclass hook: validate the command bookkeeping (raise StateError)."""
        if state:
            raise StateError("ide: unexpected command state")

    def load_command(self, state: dict[str, Any]) -> None:
        """Subclass hook: load what `check_command` accepted."""


def _taskfile(state: dict[str, Any], key: str) -> dict[str, int]:
    v = state.get(key)
    if not isinstance(v, dict) or set(v) != set(TASKFILE):
        raise StateError(f"ide: field {key!r} must map {', '.join(TASKFILE)}")
    return {name: get_int(v, name, 0, 0xFF) for name in TASKFILE}


def is_block_error(result: object) -> bool:
    return isinstance(result, BlockError)
