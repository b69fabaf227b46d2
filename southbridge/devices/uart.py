"""National Semiconductor PC16550D UART (a PC's COM port), timed on the clock.

Registers follow the PC16550D datasheet; QEMU's hw/char/serial.c is the peer where the
datasheet leaves a choice open. The wire is modelled in time: a character occupies the
transmitter shift register (TSR) for (start + data + parity + stop bits) / baud seconds, with
baud = 115200 / divisor, so THRE and TEMT (and the THR-empty interrupt) come at the instants
a real chip gives them. Host input enters the receiver at the same line rate, one character
per character time, and the FIFO timeout fires after four idle character times.

Choices where the datasheet is silent or a PC differs:

* Host input is flow-controlled, as QEMU does: it waits in the backend while the receiver
  is full, so a slow guest never loses typed or pasted bytes. Overrun happens only for
  characters that arrive regardless (loopback, `receive_char`), as on a real wire.
* A finished character that the backend cannot take stays in the TSR (TEMT clear, THR/FIFO
  filling up, THRE clear) until the backend says it drained: guest output is never lost.
* Writing THR while it is full queues the byte behind the FIFO (up to TX_SLACK bytes) instead
  of overwriting or dropping it as the chip would: QEMU sends a THR write at once, so guests
  written for it never poll THRE, and their output must not be lost. Drivers that do poll
  see exact THRE/TEMT timing; THRE stays clear while anything is queued.
* Divisor 0 divides by 65536 (the baud counter wraps), so time still passes.
* IRQ follows IIR by default (as QEMU); with `out2_gates_irq` the line is also gated by
  MCR OUT2 and disabled in loopback, as the PC's COM port wiring does.
* Enabling ETBEI while THR is empty raises the THR-empty interrupt again (rising edge, as
  QEMU and Bochs; Windows and Linux's THRE test rely on it).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, ClassVar

from southbridge.core.clock import NS_PER_SEC, Clock
from southbridge.core.device import BusDevice
from southbridge.core.irq import IrqLine
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.state import StateError, brief, check_header, get_bool, get_int, header
from southbridge.devices.chardev import CharBackend

logger = logging.getLogger("southbridge.uart")

# Bytes written to a full THR/FIFO that are kept (beyond the chip) so no output is lost.
TX_SLACK = 4096


# Register offsets (DLAB=1 turns 0 and 1 into the divisor latch).
RBR = THR = DLL = 0
IER = DLM = 1
IIR = FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

IER_ERBFI = 0x01  # received data available (and character timeout)
IER_ETBEI = 0x02  # transmitter holding register empty
IER_ELSI = 0x04  # receiver line status
IER_EDSSI = 0x08  # modem status
IER_MASK = 0x0F

IIR_NO_INT = 0x01
IIR_MSI = 0x00
IIR_THRI = 0x02
IIR_RDI = 0x04
IIR_RLSI = 0x06
IIR_CTI = 0x0C
IIR_FIFOS = 0xC0

FCR_ENABLE = 0x01
FCR_RX_RESET = 0x02
FCR_TX_RESET = 0x04
FCR_DMA = 0x08
FCR_TRIGGER = 0xC0
FCR_STORED = FCR_ENABLE | FCR_DMA | FCR_TRIGGER

LCR_WLS = 0x03
LCR_STB = 0x04
LCR_PEN = 0x08
LCR_BREAK = 0x40
LCR_DLAB = 0x80

MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT1 = 0x04
MCR_OUT2 = 0x08
MCR_LOOP = 0x10
MCR_MASK = 0x1F

LSR_DR = 0x01
LSR_OE = 0x02
LSR_PE = 0x04
LSR_FE = 0x08
LSR_BI = 0x10
LSR_THRE = 0x20
LSR_TEMT = 0x40
LSR_RXFE = 0x80
LSR_ERRORS = LSR_OE | LSR_PE | LSR_FE | LSR_BI
CHAR_ERRORS = LSR_PE | LSR_FE | LSR_BI  # per-character flags travelling with it in the FIFO

MSR_DCTS = 0x01
MSR_DDSR = 0x02
MSR_TERI = 0x04
MSR_DDCD = 0x08
MSR_DELTAS = 0x0F
MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80
MSR_LINES = 0xF0

FIFO_SIZE = 16
TRIGGER_LEVELS = (1, 4, 8, 14)
BASE_BAUD = 115_200  # 1.8432 MHz crystal / 16
RESET_DIVISOR = 12  # 9600 baud until a driver programs it (the latch has no reset value)
# Lines a host-side modem presents by default: CTS, DSR and DCD asserted, RI not (QEMU's).
DEFAULT_MODEM_INPUTS = MSR_CTS | MSR_DSR | MSR_DCD
TIMEOUT_CHARS = 4
# The longest character: start + 8 data + parity + 2 stop bits, 24 half-bits, divisor 65536.
MAX_CHAR_NS = (24 * 65536 * NS_PER_SEC + BASE_BAUD) // (2 * BASE_BAUD)
MAX_WAIT_NS = TIMEOUT_CHARS * MAX_CHAR_NS


def char_time_ns(lcr: int, divisor: int) -> int:
    """Duration of one character on the wire for an LCR and divisor, rounded to ns."""
    data_bits = 5 + (lcr & LCR_WLS)
    half_bits = 2 * (1 + data_bits + (1 if lcr & LCR_PEN else 0))
    if lcr & LCR_STB:
        half_bits += 3 if data_bits == 5 else 4  # 1.5 or 2 stop bits
    else:
        half_bits += 2
    div = divisor or 0x10000
    return (half_bits * div * NS_PER_SEC + BASE_BAUD) // (2 * BASE_BAUD)


def _loopback_lines(mcr: int) -> int:
    """Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD (PC16550D, MCR bit 4)."""
    lines = 0
    if mcr & MCR_DTR:
        lines |= MSR_DSR
    if mcr & MCR_RTS:
        lines |= MSR_CTS
    if mcr & MCR_OUT1:
        lines |= MSR_RI
    if mcr & MCR_OUT2:
        lines |= MSR_DCD
    return lines


def _deltas(old: int, new: int) -> int:
    """MSR delta bits for a change of modem lines; TERI only on RI going inactive."""
    d = 0
    changed = old ^ new
    if changed & MSR_CTS:
        d |= MSR_DCTS
    if changed & MSR_DSR:
        d |= MSR_DDSR
    if old & MSR_RI and not new & MSR_RI:
        d |= MSR_TERI
    if changed & MSR_DCD:
        d |= MSR_DDCD
    return d


class Uart16550(BusDevice):
    """One 16550A: 8 ports, an IRQ line and a character backend.

    The guest side is `read`/`write` through the bus. The host side is the backend (output
    and queued input, pulled at the line rate) plus `receive_char`/`receive_break` (a
    character or break on SIN) and `set_modem_inputs`. The backend's callbacks are
    `input_ready` and `output_ready`; the UART takes no lock (a pure state machine), so a
    threaded backend must be attached through the machine, which calls them under its
    device lock (`Machine.locked`), as Firecracker wraps vm-superio's serial in a mutex.
    """

    STATE_KIND: ClassVar[str] = "uart16550"
    STATE_VERSION: ClassVar[int] = 1

    io_sizes = frozenset({1})

    def __init__(
        self,
        clock: Clock,
        irq: IrqLine,
        backend: CharBackend,
        name: str = "uart16550",
        out2_gates_irq: bool = False,
    ) -> None:
        self.clock = clock
        self.irq = irq
        self.backend = backend
        self.name = name
        self.out2_gates_irq = out2_gates_irq
        self.log = RateLimitedLog(logger)
        self._tx_timer = clock.timer(self._tx_done, f"{name}-tx")
        self._rx_timer = clock.timer(self._rx_tick, f"{name}-rx")
        self._timeout_timer = clock.timer(self._char_timeout, f"{name}-timeout")
        self.divisor = RESET_DIVISOR
        self.scr = 0
        self.modem_inputs = DEFAULT_MODEM_INPUTS
        self._init_registers()
        backend.attach(self.input_ready, self.output_ready)

    def _init_registers(self) -> None:
        self.ier = 0
        self.fcr = 0
        self.lcr = 0
        self.mcr = 0
        self.rbr = 0
        self.rx: deque[int] = deque()  # byte | per-character error flags << 8
        self.tx: deque[int] = deque()  # THR, or the transmit FIFO
        self.tsr: int | None = None  # the character being shifted out
        self.tx_blocked = False  # the TSR's character finished but the backend was full
        self._tx_end = 0  # scheduled end of the TSR's character
        self.lsr_errors = 0  # OE/PE/FE/BI latched until LSR is read
        self.thr_ipending = False
        self.timeout_pending = False
        self.msr_lines = self.modem_inputs
        self.msr_deltas = 0
        self._tx_timer.cancel()
        self._rx_timer.cancel()
        self._timeout_timer.cancel()

    def reset(self) -> None:
        """Master reset (PC16550D table: divisor latch and SCR are not affected)."""
        self._init_registers()
        self._update_irq()
        self._start_rx()

    # -- derived state ---------------------------------------------------------------------
    @property
    def fifo_enabled(self) -> bool:
        return bool(self.fcr & FCR_ENABLE)

    @property
    def trigger_level(self) -> int:
        return TRIGGER_LEVELS[self.fcr >> 6]

    @property
    def loopback(self) -> bool:
        return bool(self.mcr & MCR_LOOP)

    @property
    def capacity(self) -> int:
        """Receive/transmit holding capacity: the FIFOs, or the single RBR/THR."""
        return FIFO_SIZE if self.fcr & FCR_ENABLE else 1

    @property
    def char_ns(self) -> int:
        return char_time_ns(self.lcr, self.divisor)

    def lsr(self) -> int:
        """Line status, computed without side effects."""
        v = self.lsr_errors
        if self.rx:
            v |= LSR_DR
        if not self.tx:
            v |= LSR_THRE
            if self.tsr is None:
                v |= LSR_TEMT
        if self.fcr & FCR_ENABLE and any(e >> 8 for e in self.rx):
            v |= LSR_RXFE
        return v

    def msr(self) -> int:
        return self.msr_lines | self.msr_deltas

    def iir_id(self) -> int:
        """The highest-priority enabled interrupt (PC16550D table 4); IIR_NO_INT if none."""
        ier = self.ier
        if ier & IER_ELSI and self.lsr_errors:
            return IIR_RLSI
        if ier & IER_ERBFI:
            if self.rx and (not self.fcr & FCR_ENABLE or len(self.rx) >= self.trigger_level):
                return IIR_RDI
            if self.timeout_pending:
                return IIR_CTI
        if ier & IER_ETBEI and self.thr_ipending:
            return IIR_THRI
        if ier & IER_EDSSI and self.msr_deltas:
            return IIR_MSI
        return IIR_NO_INT

    def _update_irq(self) -> None:
        level = self.iir_id() != IIR_NO_INT
        if self.out2_gates_irq and (self.mcr & (MCR_OUT2 | MCR_LOOP)) != MCR_OUT2:
            level = False
        self.irq.set(level)

    # -- bus -------------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if offset == RBR:
            if self.lcr & LCR_DLAB:
                return self.divisor & 0xFF
            return self._read_rbr()
        if offset == IER:
            return self.divisor >> 8 if self.lcr & LCR_DLAB else self.ier
        if offset == IIR:
            iid = self.iir_id()
            if iid == IIR_THRI:
                self.thr_ipending = False  # reading IIR clears THRI when it is the source
                self._update_irq()
            return iid | (IIR_FIFOS if self.fcr & FCR_ENABLE else 0)
        if offset == LCR:
            return self.lcr
        if offset == MCR:
            return self.mcr
        if offset == LSR:
            v = self.lsr()
            if self.lsr_errors:
                self.lsr_errors = 0
                self._update_irq()
            return v
        if offset == MSR:
            v = self.msr()
            if self.msr_deltas:
                self.msr_deltas = 0
                self._update_irq()
            return v
        return self.scr

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if offset == THR:
            if self.lcr & LCR_DLAB:
                self.divisor = (self.divisor & 0xFF00) | value
            else:
                self._write_thr(value)
        elif offset == IER:
            if self.lcr & LCR_DLAB:
                self.divisor = (self.divisor & 0x00FF) | (value << 8)
            else:
                self._write_ier(value)
        elif offset == FCR:
            self._write_fcr(value)
        elif offset == LCR:
            self.lcr = value
        elif offset == MCR:
            self._write_mcr(value)
        elif offset == SCR:
            self.scr = value
        else:
            # LSR and MSR are read-only (LSR writes are a factory test mode).
            self.log.debug(
                f"{self.name}-ro",
                "%s: write 0x%02x to read-only register %d",
                self.name,
                value,
                offset,
            )

    # -- receiver --------------------------------------------------------------------------
    def _read_rbr(self) -> int:
        if self.rx:
            self.rbr = self.rx.popleft() & 0xFF
            if self.rx:
                self.lsr_errors |= self.rx[0] >> 8  # the next character's errors surface
        # Reading the FIFO clears a timeout and restarts its four-character timer.
        self.timeout_pending = False
        self._arm_timeout()
        self._start_rx()
        self._update_irq()
        return self.rbr

    def receive_char(self, byte: int, errors: int = 0) -> None:
        """Host side: a character has been completely received on SIN (with PE/FE/BI).

        Ignored in loopback, where SIN is disconnected from the receiver (8.8, MCR4).
        """
        if not self.mcr & MCR_LOOP:
            self._receive(byte, errors)

    def _receive(self, byte: int, errors: int = 0) -> None:
        """A complete character enters the receiver (from SIN or the loopback TSR)."""
        entry = (byte & self._data_mask()) | ((errors & CHAR_ERRORS) << 8)
        if len(self.rx) >= self.capacity:
            # Overrun: without FIFOs the new character replaces RBR; with FIFOs the one in
            # the shift register is lost and the FIFO is kept (PC16550D, LSR bit 1).
            self.lsr_errors |= LSR_OE
            if not self.fcr & FCR_ENABLE:
                self.rx[0] = entry
                self.lsr_errors |= entry >> 8
        else:
            self.rx.append(entry)
            if len(self.rx) == 1:
                self.lsr_errors |= entry >> 8
        self.timeout_pending = False
        self._arm_timeout()
        self._update_irq()

    def receive_break(self) -> None:
        """The line was held spacing for more than a character: one 0 character with BI."""
        self.receive_char(0, LSR_BI)

    def _data_mask(self) -> int:
        return (1 << (5 + (self.lcr & LCR_WLS))) - 1

    def _arm_timeout(self) -> None:
        if self.fcr & FCR_ENABLE and self.rx:
            self._timeout_timer.arm_in(TIMEOUT_CHARS * self.char_ns)
        else:
            self._timeout_timer.cancel()

    def _char_timeout(self) -> None:
        if self.fcr & FCR_ENABLE and self.rx:
            self.timeout_pending = True
            self._update_irq()

    def _start_rx(self) -> None:
        """Begin receiving the next host byte if one waits and the receiver has room."""
        if self._rx_timer.armed or self.mcr & MCR_LOOP or len(self.rx) >= self.capacity:
            return
        if self.backend.pending_input():
            self._rx_timer.arm_in(self.char_ns)

    def _rx_tick(self) -> None:
        """A host character has taken one character time to arrive on the wire."""
        if self.mcr & MCR_LOOP or len(self.rx) >= self.capacity:
            return  # disconnected or full meanwhile: the byte stays queued in the backend
        data = self.backend.read(1)
        if data:
            self._receive(data[0])
        self._start_rx()

    def input_ready(self) -> None:
        """Backend callback: host input is queued."""
        self._start_rx()

    # -- transmitter -----------------------------------------------------------------------
    def _write_thr(self, value: int) -> None:
        if len(self.tx) >= self.capacity + TX_SLACK:
            self.log.warning(
                f"{self.name}-txfull", "%s: transmit queue full, byte dropped", self.name
            )
        else:
            self.tx.append(value)
        self.thr_ipending = False  # writing THR clears the THR-empty interrupt
        if self.tsr is None:
            self._load_tsr(self.clock.now())
        self._update_irq()

    def _load_tsr(self, start: int) -> None:
        """Move the next character from THR/FIFO into the shift register at `start`."""
        if not self.tx:
            return
        self.tsr = self.tx.popleft()
        if not self.tx:
            self.thr_ipending = True  # THR (or the FIFO) just became empty
        self._tx_end = start + self.char_ns
        self._tx_timer.arm(self._tx_end)

    def _tx_done(self) -> None:
        """The TSR's character has left the wire (timer at the end of its stop bits).

        The next character starts at this one's scheduled end, not at now(): a late host
        timer then catches up (at most a FIFO's worth) and the average rate stays the baud.
        """
        self._finish_char(self._tx_end)

    def _finish_char(self, end: int) -> None:
        tsr = self.tsr
        if tsr is None:
            return
        byte = tsr & self._data_mask()
        if self.mcr & MCR_LOOP:
            self._receive(byte)
        elif self.backend.write(bytes((byte,))) < 1:
            # Back-pressure: keep the character; TEMT (and THRE once THR fills) stay clear.
            self.tx_blocked = True
            return
        self.tx_blocked = False
        self.tsr = None
        self._load_tsr(end)
        self._update_irq()

    def output_ready(self) -> None:
        """Backend callback: output it refused can be retried."""
        if self.tx_blocked and not self._tx_timer.armed:
            self._finish_char(self.clock.now())

    # -- control registers -----------------------------------------------------------------
    def _write_ier(self, value: int) -> None:
        new = value & IER_MASK
        if (self.ier ^ new) & IER_ETBEI:
            # A rising ETBEI with THR empty raises THRI again; a falling one forgets it.
            self.thr_ipending = bool(new & IER_ETBEI) and not self.tx
        self.ier = new
        self._update_irq()

    def _write_fcr(self, value: int) -> None:
        if not value & FCR_ENABLE:
            # "FCR0 must be 1 when other FCR bits are written or they are not programmed."
            if self.fcr & FCR_ENABLE:
                self.fcr &= ~FCR_ENABLE
                self._clear_rx()
                self._clear_tx()
            self._update_irq()
            return
        if not self.fcr & FCR_ENABLE:
            value |= FCR_RX_RESET | FCR_TX_RESET  # changing FCR0 clears both FIFOs
        self.fcr = value & FCR_STORED
        if value & FCR_RX_RESET:
            self._clear_rx()
        if value & FCR_TX_RESET:
            self._clear_tx()
        self._update_irq()

    def _clear_rx(self) -> None:
        self.rx.clear()
        self.timeout_pending = False
        self._timeout_timer.cancel()
        self._start_rx()

    def _clear_tx(self) -> None:
        """Empty THR/FIFO (the TSR keeps shifting); THR is now empty."""
        self.tx.clear()
        self.thr_ipending = True

    def _write_mcr(self, value: int) -> None:
        old = self.mcr
        self.mcr = value & MCR_MASK
        if (old ^ self.mcr) & MCR_LOOP:
            if self.mcr & MCR_LOOP:
                self._rx_timer.cancel()  # SIN is disconnected; the byte stays queued
            else:
                self._start_rx()
        self._set_lines(self._lines())
        self._update_irq()

    def _lines(self) -> int:
        return _loopback_lines(self.mcr) if self.mcr & MCR_LOOP else self.modem_inputs

    def _set_lines(self, lines: int) -> None:
        self.msr_deltas |= _deltas(self.msr_lines, lines)
        self.msr_lines = lines

    def set_modem_inputs(
        self, cts: bool = True, dsr: bool = True, ri: bool = False, dcd: bool = True
    ) -> None:
        """Host side: the modem input pins (ignored by MSR while in loopback)."""
        lines = (MSR_CTS if cts else 0) | (MSR_DSR if dsr else 0)
        lines |= (MSR_RI if ri else 0) | (MSR_DCD if dcd else 0)
        self.modem_inputs = lines
        if not self.mcr & MCR_LOOP:
            self._set_lines(lines)
            self._update_irq()

    # -- state -----------------------------------------------------------------------------
    def _remaining(self, deadline: int | None) -> int | None:
        return None if deadline is None else max(0, deadline - self.clock.now())

    def save(self) -> dict[str, Any]:
        return {
            **header(self),
            "divisor": self.divisor,
            "ier": self.ier,
            "fcr": self.fcr,
            "lcr": self.lcr,
            "mcr": self.mcr,
            "scr": self.scr,
            "rbr": self.rbr,
            "rx": list(self.rx),
            "tx": list(self.tx),
            "tsr": self.tsr,
            # A blocked character is saved as due now: the restored UART retries it.
            "tx_remaining": self._remaining(self._tx_timer.deadline) or 0,
            "rx_remaining": self._remaining(self._rx_timer.deadline),
            "timeout_remaining": self._remaining(self._timeout_timer.deadline),
            "lsr_errors": self.lsr_errors,
            "thr_ipending": self.thr_ipending,
            "timeout_pending": self.timeout_pending,
            "msr_lines": self.msr_lines,
            "msr_deltas": self.msr_deltas,
            "modem_inputs": self.modem_inputs,
        }

    def restore(self, state: dict[str, Any]) -> None:
        state = check_header(state, self)
        s = _parse(state)
        self._init_registers()
        for key in ("divisor", "ier", "fcr", "lcr", "mcr", "scr", "rbr", "lsr_errors"):
            setattr(self, key, s[key])
        for key in ("thr_ipending", "timeout_pending", "msr_lines", "msr_deltas"):
            setattr(self, key, s[key])
        self.modem_inputs = s["modem_inputs"]
        self.rx = deque(s["rx"])
        self.tx = deque(s["tx"])
        self.tsr = s["tsr"]
        now = self.clock.now()
        if self.tsr is not None:
            self._tx_end = now + s["tx_remaining"]
            self._tx_timer.arm(self._tx_end)
        if s["rx_remaining"] is not None:
            self._rx_timer.arm(now + s["rx_remaining"])
        if s["timeout_remaining"] is not None:
            self._timeout_timer.arm(now + s["timeout_remaining"])
        self._update_irq()
        self._start_rx()


def _opt_int(state: dict[str, Any], key: str, hi: int) -> int | None:
    if state.get(key) is None:
        return None
    return get_int(state, key, 0, hi)


def _byte_list(state: dict[str, Any], key: str, allowed: int, limit: int) -> list[int]:
    v = state.get(key)
    if not isinstance(v, list) or len(v) > limit:
        raise StateError(f"field {key!r} must be a list of at most {limit} entries")
    for e in v:
        if not isinstance(e, int) or isinstance(e, bool) or e < 0 or e & ~allowed:
            raise StateError(f"field {key!r} has an invalid entry {brief(e)}")
    return list(v)


def _parse(state: dict[str, Any]) -> dict[str, Any]:
    """Validate a saved UART; restored state is attacker input."""
    s: dict[str, Any] = {
        "divisor": get_int(state, "divisor", 0, 0xFFFF),
        "ier": get_int(state, "ier", 0, IER_MASK),
        "fcr": get_int(state, "fcr", 0, 0xFF),
        "lcr": get_int(state, "lcr", 0, 0xFF),
        "mcr": get_int(state, "mcr", 0, MCR_MASK),
        "scr": get_int(state, "scr", 0, 0xFF),
        "rbr": get_int(state, "rbr", 0, 0xFF),
        "lsr_errors": get_int(state, "lsr_errors", 0, 0xFF),
        "msr_lines": get_int(state, "msr_lines", 0, 0xFF),
        "msr_deltas": get_int(state, "msr_deltas", 0, 0xFF),
        "modem_inputs": get_int(state, "modem_inputs", 0, 0xFF),
        "thr_ipending": get_bool(state, "thr_ipending"),
        "timeout_pending": get_bool(state, "timeout_pending"),
        "tx_remaining": get_int(state, "tx_remaining", 0, MAX_CHAR_NS),
        "rx_remaining": _opt_int(state, "rx_remaining", MAX_CHAR_NS),
        "timeout_remaining": _opt_int(state, "timeout_remaining", MAX_WAIT_NS),
        "tsr": _opt_int(state, "tsr", 0xFF),
    }
    if s["fcr"] & ~FCR_STORED:
        raise StateError(f"fcr 0x{s['fcr']:x} has self-clearing or reserved bits set")
    fifo = bool(s["fcr"] & FCR_ENABLE)
    cap = FIFO_SIZE if fifo else 1
    s["rx"] = _byte_list(state, "rx", 0xFF | (CHAR_ERRORS << 8), cap)
    s["tx"] = _byte_list(state, "tx", 0xFF, cap + TX_SLACK)
    if s["lsr_errors"] & ~LSR_ERRORS:
        raise StateError(f"lsr_errors 0x{s['lsr_errors']:x} holds non-error bits")
    if s["msr_deltas"] & ~MSR_DELTAS or (s["msr_lines"] | s["modem_inputs"]) & ~MSR_LINES:
        raise StateError("modem status lines and deltas are in the wrong bits")
    loop = bool(s["mcr"] & MCR_LOOP)
    expected = _loopback_lines(s["mcr"]) if loop else s["modem_inputs"]
    if s["msr_lines"] != expected:
        raise StateError("msr_lines do not follow the modem inputs or the loopback MCR")
    if s["tx"] and s["tsr"] is None:
        raise StateError("THR holds data while the shift register is idle")
    if s["thr_ipending"] and s["tx"]:
        raise StateError("THR-empty interrupt pending with data in THR")
    if s["timeout_pending"] and not (fifo and s["rx"]):
        raise StateError("character timeout pending without FIFO data")
    if s["timeout_remaining"] is not None and not (fifo and s["rx"]):
        raise StateError("character timeout timer running without FIFO data")
    if s["rx_remaining"] is not None and loop:
        raise StateError("receiving host input while in loopback (SIN is disconnected)")
    return s
