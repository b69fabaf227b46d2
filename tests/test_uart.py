"""16550A UART, driven through the port bus as a guest would, timed on the manual clock.

Rules cited: National Semiconductor PC16550D datasheet (June 1995): table II "Summary of
Registers", table III "UART Reset Configuration", table IV "Interrupt Control Functions",
sections 8.1 LCR, 8.2 "Programmable Baud Generator", 8.4 LSR, 8.5 FCR, 8.6 IIR, 8.7 IER,
8.8 MCR, 8.9 MSR, 8.10 SCR, 8.11 "FIFO Interrupt Mode Operation". QEMU hw/char/serial.c is
the peer for the THRI re-raise on IER and for flow-controlled host input.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from southbridge.core.clock import ManualClock
from southbridge.core.irq import IrqLine
from southbridge.core.portbus import PortBus
from southbridge.core.state import StateError
from southbridge.devices.chardev import NullBackend
from southbridge.devices.uart import (
    DLL,
    DLM,
    FCR,
    IER,
    IIR,
    LCR,
    LSR,
    LSR_BI,
    LSR_DR,
    LSR_FE,
    LSR_OE,
    LSR_PE,
    LSR_RXFE,
    LSR_TEMT,
    LSR_THRE,
    MCR,
    MSR,
    RBR,
    SCR,
    THR,
    TX_SLACK,
    Uart16550,
    char_time_ns,
)
from southbridge.host.chardev import BufferBackend, open_backends
from southbridge.machine.pc import PcMachine
from tests.qtesting import Qtest

BASE = 0x3F8
CHAR = 86_806  # 8N1 at 115200 baud: 10 bits / 115200 Hz = 86805.6 ns, rounded
LOOP = 0x10


class Rig:
    """A UART at 0x3F8 on its own port bus, a manual clock and an in-memory backend."""

    def __init__(self, capacity: int | None = None, **kw: Any) -> None:
        self.clock = ManualClock()
        self.irq = IrqLine("com1")
        self.backend = BufferBackend(capacity)
        self.uart = Uart16550(self.clock, self.irq, self.backend, **kw)
        self.bus = PortBus()
        self.bus.register(BASE, 8, self.uart, "com1")

    def inb(self, reg: int) -> int:
        return self.bus.read(BASE + reg, 1)

    def outb(self, reg: int, value: int) -> None:
        self.bus.write(BASE + reg, 1, value)

    def setup(
        self, divisor: int = 1, lcr: int = 0x03, fcr: int = 0, mcr: int = 0, ier: int = 0
    ) -> None:
        """What a driver does: divisor through DLAB, then line format, FIFOs, MCR, IER."""
        self.outb(LCR, 0x80 | lcr)
        self.outb(DLL, divisor & 0xFF)
        self.outb(DLM, divisor >> 8)
        self.outb(LCR, lcr)
        self.outb(FCR, fcr)
        self.outb(MCR, mcr)
        self.outb(IER, ier)

    def at(self, t: int) -> None:
        self.clock.set(t)

    def send(self, data: bytes) -> None:
        for b in data:
            self.outb(THR, b)


# -- reset and registers -----------------------------------------------------------------


def test_reset_values() -> None:
    """Table III: IER 0, IIR 01 (no interrupt, FIFOs off), LCR 0, MCR 0, LSR 60 (THRE and
    TEMT), MSR deltas 0 with bits 4-7 the modem inputs (CTS, DSR, DCD asserted by the host)."""
    r = Rig()
    assert [r.inb(reg) for reg in (IER, IIR, LCR, MCR, LSR, MSR)] == [0, 1, 0, 0, 0x60, 0xB0]
    assert not r.irq.level


def test_master_reset_keeps_divisor_and_scratch() -> None:
    """Table III: MR resets IER, IIR, FCR, LCR, MCR, LSR and MSR deltas; the divisor latch
    and SCR are not listed and keep their values; a character being sent is abandoned."""
    r = Rig()
    r.setup(divisor=3, fcr=0xC7, mcr=LOOP | 0x0F, ier=0x0F)
    r.outb(SCR, 0x5A)
    r.send(b"abc")
    r.uart.reset()
    assert [r.inb(reg) for reg in (IER, IIR, LCR, MCR, LSR, MSR, SCR)] == [
        0, 0x01, 0, 0, 0x60, 0xB0, 0x5A
    ]  # fmt: skip
    assert r.uart.divisor == 3 and not r.irq.level
    r.at(10**9)
    assert r.backend.output == b"" and r.inb(LSR) == 0x60


def test_divisor_latch_behind_dlab() -> None:
    """8.2/table II: with LCR7 (DLAB) set, offsets 0 and 1 are DLL and DLM; cleared, they are
    RBR/THR and IER again and the latch keeps its value."""
    r = Rig()
    r.outb(LCR, 0x83)
    r.outb(DLL, 0x34)
    r.outb(DLM, 0x12)
    assert (r.inb(DLL), r.inb(DLM)) == (0x34, 0x12)
    assert r.uart.divisor == 0x1234
    r.outb(LCR, 0x03)
    assert r.inb(IER) == 0 and r.inb(LCR) == 0x03
    r.outb(IER, 0xFF)
    assert r.inb(IER) == 0x0F  # 8.7: IER bits 4-7 are always 0
    r.outb(LCR, 0x83)
    assert (r.inb(DLL), r.inb(DLM)) == (0x34, 0x12)


@pytest.mark.parametrize(
    ("lcr", "divisor", "bits_x2"),
    [
        (0x03, 1, 20),  # 8N1: start + 8 + stop = 10 bits
        (0x03, 12, 20),  # 9600 baud
        (0x00, 1, 14),  # 5N1: 7 bits
        (0x04, 1, 15),  # LCR2 with 5-bit words: 1.5 stop bits (8.1) -> 7.5 bits
        (0x1F, 1, 24),  # 8E2: 1 + 8 + 1 + 2 = 12 bits
        (0x0A, 3, 20),  # 7O1: 1 + 7 + 1 + 1 = 10 bits
        (0x03, 0, 20),  # divisor 0 counts as 65536 (the counter wraps)
    ],
)
def test_character_time(lcr: int, divisor: int, bits_x2: int) -> None:
    """8.2: baud = 1.8432 MHz / (16 x divisor); a character is start+data+parity+stop bits."""
    div = divisor or 65536
    exact = bits_x2 / 2 * div * 1e9 / 115200
    assert abs(char_time_ns(lcr, divisor) - exact) <= 0.5


def test_scratch_register() -> None:
    """8.10: SCR holds any byte for the programmer."""
    r = Rig()
    for v in (0x00, 0x55, 0xAA, 0xFF):
        r.outb(SCR, v)
        assert r.inb(SCR) == v


def test_lsr_and_msr_writes_are_ignored() -> None:
    """LSR and MSR are status registers: a guest write must not change what they report."""
    r = Rig()
    r.outb(LSR, 0x00)
    r.outb(MSR, 0x0F)
    assert r.inb(LSR) == 0x60 and r.inb(MSR) == 0xB0


# -- transmitter timing ------------------------------------------------------------------


def test_thre_and_temt_follow_the_character_on_the_wire() -> None:
    """8.4: THRE sets when THR is transferred to the TSR, TEMT when THR and TSR are both
    empty, i.e. when the last stop bit has left: one character time (10 bits at 115200)."""
    r = Rig()
    r.setup()
    r.outb(THR, ord("x"))
    assert r.inb(LSR) == LSR_THRE  # moved to the TSR at once; TEMT clear while shifting
    r.outb(THR, ord("y"))
    assert r.inb(LSR) == 0  # THR full behind the busy TSR
    r.at(CHAR - 1)
    assert r.inb(LSR) == 0 and r.backend.output == b""
    r.at(CHAR)
    assert r.inb(LSR) == LSR_THRE and r.backend.output == b"x"
    r.at(2 * CHAR - 1)
    assert r.inb(LSR) == LSR_THRE
    r.at(2 * CHAR)
    assert r.inb(LSR) == LSR_THRE | LSR_TEMT and r.backend.output == b"xy"


def test_fifo_transmits_back_to_back_at_the_line_rate() -> None:
    """8.5/8.4: with FIFOs, THRE sets when the transmit FIFO is empty; 16 bytes leave one
    character time apart at 9600 baud (divisor 12)."""
    r = Rig()
    r.setup(divisor=12, fcr=0x07)
    char = char_time_ns(0x03, 12)
    r.send(bytes(range(16)))
    for k in range(1, 17):
        r.at(k * char - 1)
        assert len(r.backend.output) == k - 1
        r.at(k * char)
        assert bytes(r.backend.output) == bytes(range(k))
        lsr = r.inb(LSR)
        assert bool(lsr & LSR_THRE) == (k >= 15)  # the last byte entered the TSR at 15
        assert bool(lsr & LSR_TEMT) == (k == 16)


def test_thr_empty_interrupt() -> None:
    """Table IV: THRE interrupt when THR is empty, reset by reading IIR (if it is the source)
    or writing THR; 8.7/QEMU: enabling ETBEI with THR empty raises it again."""
    r = Rig()
    r.setup(ier=0x02)
    assert r.irq.level and r.inb(IIR) == 0x02
    assert not r.irq.level and r.inb(IIR) == 0x01  # the IIR read cleared it
    r.outb(IER, 0x00)
    r.outb(IER, 0x02)
    assert r.irq.level  # re-raised on a rising ETBEI while THR is empty
    r.outb(THR, 0x41)  # to the TSR at once: THR empty again, so THRI again
    assert r.irq.level and r.inb(IIR) == 0x02
    r.outb(THR, 0x42)  # THR now full behind the TSR: the write cleared THRI
    assert not r.irq.level and r.inb(IIR) == 0x01
    r.at(CHAR - 1)
    assert not r.irq.level
    r.at(CHAR)  # 0x41 done, 0x42 moves to the TSR: THR empty
    assert r.irq.level and r.inb(IIR) == 0x02
    r.at(2 * CHAR)
    assert not r.irq.level and r.backend.output == b"AB"


def test_thr_write_while_full_is_queued_not_lost() -> None:
    """Deliberate deviation (module docstring): QEMU transmits a THR write at once, so guests
    written for it never poll THRE; a write to a full THR is queued, never lost, and still
    leaves the wire one character time apart, with THRE clear while bytes wait."""
    r = Rig()
    r.setup()
    r.send(b"abc")  # a in the TSR, b in THR, c queued behind it
    assert not r.inb(LSR) & LSR_THRE
    r.at(2 * CHAR)
    assert r.backend.output == b"ab"
    r.at(3 * CHAR)
    assert r.backend.output == b"abc"


# -- receiver, FIFOs and interrupts ------------------------------------------------------


@pytest.mark.parametrize(("bits", "level"), [(0, 1), (1, 4), (2, 8), (3, 14)])
def test_fifo_trigger_levels(bits: int, level: int) -> None:
    """8.5 FCR6-7 and 8.11: the received-data interrupt comes when the FIFO reaches the
    trigger level (1, 4, 8, 14) and goes when it drops below it."""
    r = Rig()
    r.setup(fcr=0x01 | bits << 6, mcr=LOOP, ier=0x01)
    r.send(bytes(range(0x30, 0x30 + level)))
    r.at((level - 1) * CHAR)
    assert r.inb(IIR) == 0xC1 and not r.irq.level
    r.at(level * CHAR)
    assert r.inb(IIR) == 0xC4 and r.irq.level
    assert r.inb(RBR) == 0x30
    assert r.inb(IIR) == 0xC1 and not r.irq.level


def test_character_timeout() -> None:
    """8.11: with FIFO data below the trigger level, a timeout interrupt (IIR CC) occurs when
    no character was received or read for 4 character times; reading RBR clears it and
    restarts the timer."""
    r = Rig()
    r.setup(fcr=0xC1, mcr=LOOP, ier=0x01)  # trigger 14
    r.send(b"abc")
    r.at(3 * CHAR)  # the last character arrived
    r.at(3 * CHAR + 4 * CHAR - 1)
    assert r.inb(IIR) == 0xC1
    r.at(3 * CHAR + 4 * CHAR)
    assert r.inb(IIR) == 0xCC and r.irq.level
    assert r.inb(RBR) == ord("a")
    assert r.inb(IIR) == 0xC1 and not r.irq.level
    t = r.clock.now()
    r.at(t + 4 * CHAR - 1)
    assert r.inb(IIR) == 0xC1
    r.at(t + 4 * CHAR)
    assert r.inb(IIR) == 0xCC
    assert r.inb(RBR) == ord("b") and r.inb(RBR) == ord("c")
    r.at(t + 20 * CHAR)
    assert r.inb(IIR) == 0xC1  # no timeout with an empty FIFO


def test_interrupt_priorities() -> None:
    """Table IV: line status > received data > THR empty > modem status; each is reset by
    reading LSR, RBR, IIR and MSR respectively."""
    r = Rig()
    r.setup(mcr=LOOP)
    r.inb(MSR)  # entering loopback changed the modem lines: clear those deltas
    r.outb(THR, ord("a"))
    r.at(CHAR)
    r.outb(THR, ord("b"))
    r.at(2 * CHAR)  # "b" arrived with "a" unread: overrun
    r.outb(MCR, LOOP | 0x01)  # DTR -> DSR: a modem status change
    r.outb(IER, 0x0F)
    assert r.irq.level
    assert r.inb(IIR) == 0x06
    assert r.inb(LSR) == LSR_DR | LSR_OE | LSR_THRE | LSR_TEMT
    assert r.inb(IIR) == 0x04
    assert r.inb(RBR) == ord("b")
    assert r.inb(IIR) == 0x02  # this read resets THRI
    assert r.inb(IIR) == 0x00
    assert r.inb(MSR) == 0x22  # DSR with DDSR
    assert r.inb(IIR) == 0x01 and not r.irq.level


def test_interrupts_need_their_enable_bits() -> None:
    """8.7: a source only shows in IIR and on the IRQ pin when its IER bit is set."""
    r = Rig()
    r.setup(mcr=LOOP)
    r.send(b"a")
    r.at(CHAR)
    assert r.inb(LSR) & LSR_DR and r.inb(IIR) == 0x01 and not r.irq.level
    r.outb(IER, 0x01)
    assert r.inb(IIR) == 0x04 and r.irq.level


def test_overrun_without_fifo() -> None:
    """8.4 LSR1: without FIFOs a new character replaces an unread RBR and sets OE; reading
    LSR resets OE."""
    r = Rig()
    r.setup(mcr=LOOP)
    r.send(b"a")
    r.at(CHAR)
    r.send(b"b")
    r.at(2 * CHAR)
    assert r.inb(LSR) & LSR_OE
    assert not r.inb(LSR) & LSR_OE
    assert r.inb(RBR) == ord("b")


def test_overrun_with_full_fifo_keeps_the_fifo() -> None:
    """8.4 LSR1 (FIFO mode): the 17th character overwrites only the shift register, is not
    transferred to the full FIFO, and OE is set at once."""
    r = Rig()
    r.setup(fcr=0x01, mcr=LOOP)
    r.send(bytes(range(16)))
    r.at(CHAR)
    r.send(b"\x10")  # the 17th
    r.at(16 * CHAR)
    assert not r.inb(LSR) & LSR_OE
    r.at(17 * CHAR)
    assert r.inb(LSR) & LSR_OE
    assert bytes(r.inb(RBR) for _ in range(16)) == bytes(range(16))
    assert not r.inb(LSR) & LSR_DR


def test_line_errors_surface_with_their_character() -> None:
    """8.4 LSR2-4 and LSR7: in FIFO mode PE/FE/BI belong to a character and show when it is
    at the top of the FIFO; LSR7 is set while an error character is in the FIFO; a break
    loads one zero character."""
    r = Rig()
    r.setup(fcr=0x01, ier=0x04)
    r.uart.receive_char(ord("a"))
    r.uart.receive_break()
    r.uart.receive_char(ord("c"), LSR_PE | LSR_FE)
    assert r.inb(LSR) == LSR_DR | LSR_RXFE | LSR_THRE | LSR_TEMT
    assert not r.irq.level
    assert r.inb(RBR) == ord("a")
    assert r.irq.level and r.inb(IIR) == 0xC6
    assert r.inb(LSR) & (LSR_BI | LSR_PE | LSR_FE) == LSR_BI
    assert not r.irq.level
    assert r.inb(RBR) == 0
    assert r.inb(LSR) & (LSR_BI | LSR_PE | LSR_FE | LSR_RXFE) == LSR_PE | LSR_FE | LSR_RXFE
    assert r.inb(RBR) == ord("c")
    assert r.inb(LSR) == LSR_THRE | LSR_TEMT


def test_fcr_programming() -> None:
    """8.5: FCR0 enables both FIFOs (IIR6-7 read 1s); FCR1/FCR2 clear them and self-clear;
    other bits are not programmed unless FCR0 is 1; changing FCR0 clears both FIFOs."""
    r = Rig()
    r.setup(mcr=LOOP)
    r.outb(FCR, 0xC0)  # FCR0=0: trigger bits ignored
    assert r.inb(IIR) == 0x01 and r.uart.trigger_level == 1
    r.outb(FCR, 0x81)
    assert r.inb(IIR) == 0xC1 and r.uart.trigger_level == 8
    r.send(b"abc")
    r.at(3 * CHAR)
    r.send(b"defg")  # d in the TSR, efg in the FIFO
    r.outb(FCR, 0x83)  # clear the receive FIFO
    assert not r.inb(LSR) & LSR_DR
    r.outb(FCR, 0x85)  # clear the transmit FIFO: THRE sets, the TSR keeps shifting
    assert r.inb(LSR) & (LSR_THRE | LSR_TEMT) == LSR_THRE
    r.at(4 * CHAR)
    assert r.inb(RBR) == ord("d") and not r.inb(LSR) & LSR_DR
    r.send(b"h")
    r.at(5 * CHAR)
    r.outb(FCR, 0x00)  # FIFOs off: both cleared
    assert r.inb(IIR) == 0x01 and not r.inb(LSR) & LSR_DR


def test_word_length_masks_data() -> None:
    """8.1 LCR0-1: 5 to 8 data bits; only those bits travel (loopback shows it)."""
    r = Rig()
    r.setup(lcr=0x00, mcr=LOOP)
    r.send(b"\xff")
    r.at(char_time_ns(0x00, 1))
    assert r.inb(RBR) == 0x1F


def test_loopback_modem_lines_and_deltas() -> None:
    """8.8 MCR4: in loopback DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD; 8.9: delta bits record
    changes (TERI only on RI going inactive) and reset when MSR is read."""
    r = Rig()
    r.setup()
    assert r.inb(MSR) == 0xB0
    r.outb(MCR, LOOP)
    assert r.inb(MSR) == 0x0B  # CTS, DSR, DCD dropped
    assert r.inb(MSR) == 0x00
    r.outb(MCR, LOOP | 0x04)
    assert r.inb(MSR) == 0x40  # RI rising: no TERI
    r.outb(MCR, LOOP)
    assert r.inb(MSR) == 0x04  # TERI
    r.outb(MCR, LOOP | 0x0B)  # DTR, RTS, OUT2
    assert r.inb(MSR) == 0xBB
    r.outb(IER, 0x08)
    r.outb(MCR, LOOP | 0x01)
    assert r.irq.level and r.inb(IIR) == 0x00
    r.inb(MSR)
    assert not r.irq.level
    r.outb(MCR, 0x00)
    assert r.inb(MSR) == 0xB9  # back to the modem inputs: CTS and DCD changed
    assert r.inb(MCR) == 0x00


def test_loopback_keeps_output_and_host_input_off_the_wire() -> None:
    """8.8 MCR4: SOUT is held marking and SIN disconnected; the TSR feeds the RSR."""
    r = Rig()
    r.setup(mcr=LOOP)
    r.backend.feed(b"z")
    r.send(b"q")
    r.at(10 * CHAR)
    assert r.backend.output == b"" and r.inb(RBR) == ord("q")
    assert r.backend.pending_input() == 1 and not r.inb(LSR) & LSR_DR
    r.outb(MCR, 0x00)
    r.at(11 * CHAR - 1)
    assert not r.inb(LSR) & LSR_DR
    r.at(11 * CHAR)
    assert r.inb(RBR) == ord("z")


def test_sin_is_disconnected_in_loopback() -> None:
    """8.8 MCR4: characters and breaks on SIN do not reach the receiver in loopback."""
    r = Rig()
    r.setup(mcr=LOOP)
    r.uart.receive_char(0x41)
    r.uart.receive_break()
    assert r.inb(LSR) == LSR_THRE | LSR_TEMT
    r.outb(MCR, 0)
    r.uart.receive_char(0x41)
    assert r.inb(LSR) & LSR_DR and r.inb(RBR) == 0x41


def test_modem_input_changes_interrupt() -> None:
    """8.9/table IV: a change on CTS/DSR/DCD or RI going inactive raises the modem status
    interrupt when EDSSI is set."""
    r = Rig()
    r.setup(ier=0x08)
    r.uart.set_modem_inputs(cts=False)
    assert r.irq.level and r.inb(IIR) == 0x00
    assert r.inb(MSR) == 0xA1 and not r.irq.level
    r.uart.set_modem_inputs(ri=True)
    r.uart.set_modem_inputs(ri=False)
    assert r.inb(MSR) == 0xB5  # DCTS from CTS back on, TERI


def test_out2_gates_irq_when_wired_like_a_pc() -> None:
    """IBM PC COM port wiring: OUT2 enables the IRQ driver; in loopback OUT2 is internal."""
    r = Rig(out2_gates_irq=True)
    r.setup(ier=0x02)
    assert not r.irq.level and r.inb(IIR) == 0x02
    r.outb(IER, 0)
    r.outb(MCR, 0x08)
    r.outb(IER, 0x02)
    assert r.irq.level
    r.outb(MCR, 0x18)
    assert not r.irq.level


# -- host input ----------------------------------------------------------------------------


def test_host_input_arrives_at_the_line_rate_and_is_never_lost() -> None:
    """Host bytes take one character time each on the wire; while the receiver is full they
    wait in the backend (flow control as QEMU's can_receive): no overrun, nothing lost."""
    r = Rig()
    r.setup(ier=0x01)
    r.backend.feed(b"hello")
    r.at(CHAR - 1)
    assert not r.inb(LSR) & LSR_DR
    r.at(CHAR)
    assert r.irq.level and r.inb(LSR) & LSR_DR
    r.at(10 * CHAR)
    assert r.inb(LSR) & (LSR_OE | LSR_DR) == LSR_DR
    got = bytearray()
    for _ in range(5):
        got.append(r.inb(RBR))
        r.at(r.clock.now() + CHAR)
    assert got == b"hello"


def test_host_input_fills_the_fifo() -> None:
    """FIFO mode: 16 characters are received back to back; the rest wait for room."""
    r = Rig()
    r.setup(fcr=0xC1)
    data = bytes(range(40))
    r.backend.feed(data)
    r.at(16 * CHAR)
    assert len(r.uart.rx) == 16 and r.backend.pending_input() == 24
    r.at(100 * CHAR)
    assert not r.inb(LSR) & LSR_OE
    got = bytearray()
    while len(got) < 40:
        while r.inb(LSR) & LSR_DR:
            got.append(r.inb(RBR))
        r.at(r.clock.now() + CHAR)
    assert got == data


# -- back-pressure -----------------------------------------------------------------------


def test_slow_backend_back_pressure() -> None:
    """A full backend keeps the finished character in the TSR: TEMT stays clear, the FIFO
    fills and THRE stays clear until the backend drains; then output resumes in order."""
    r = Rig(capacity=4)
    r.setup(fcr=0x07)
    r.send(b"0123456789ABCDEF")
    r.at(5 * CHAR)  # 4 accepted; the 5th found the backend full
    assert r.backend.pending == b"0123" and r.uart.tx_blocked
    r.send(b"ghijk")  # the FIFO takes 5 more: 11 + 5 = 16
    r.at(10**9)
    assert r.inb(LSR) & (LSR_THRE | LSR_TEMT) == 0 and r.backend.pending == b"0123"
    r.backend.drain(2)
    assert r.backend.pending == b"234" and r.inb(LSR) & LSR_TEMT == 0
    while r.inb(LSR) & LSR_TEMT == 0:
        r.at(r.clock.now() + CHAR)
        r.backend.drain(1)
    r.backend.drain()
    assert r.backend.output == b"0123456789ABCDEFghijk"


def test_polling_driver_never_loses_output_to_a_slow_backend() -> None:
    """A driver that waits for THRE (as Linux's early console does) gets every byte out."""
    r = Rig(capacity=3)
    r.setup(fcr=0x07)
    data = bytes(range(256)) * 2
    i = step = 0
    while i < len(data):
        if r.inb(LSR) & LSR_THRE:
            chunk = data[i : i + 16]
            r.send(chunk)
            i += len(chunk)
        r.at(r.clock.now() + CHAR)
        step += 1
        if step % 5 == 0:
            r.backend.drain(2)
    while r.inb(LSR) & LSR_TEMT == 0:
        r.backend.drain()
        r.at(r.clock.now() + CHAR)
    r.backend.drain()
    assert r.backend.output == data


class CountingLock:
    """A lock that records that backend callbacks entered the device under it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.entries = 0

    def __enter__(self) -> None:
        self.lock.acquire()
        self.entries += 1

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_backend_callbacks_enter_under_the_device_lock() -> None:
    """Input and output-ready callbacks come from backend threads: they take the machine's
    device lock before touching the UART (the machine wraps them; the UART takes no lock)."""
    backend = BufferBackend(capacity=1)
    m = PcMachine(with_ram=False, serial=[backend])
    clock, uart = m.clock, m.serial[0]
    assert isinstance(clock, ManualClock)
    lock = CountingLock()
    m.lock = lock  # type: ignore[assignment]
    backend.feed(b"a")
    assert lock.entries == 1 and uart._rx_timer.armed
    uart.write(LCR, 1, 0x03)
    uart.write(THR, 1, 1)
    uart.write(THR, 1, 2)
    clock.set(10**9)
    assert uart.tx_blocked
    backend.drain()
    assert lock.entries == 2 and not uart.tx_blocked


# -- state ---------------------------------------------------------------------------------


def test_restore_mid_character_keeps_its_end_instant() -> None:
    """Saved state carries the time left on the wire: the restored UART finishes the same
    character at the same instant."""
    r = Rig()
    r.setup(fcr=0x01, ier=0x02)
    r.send(b"ab")
    r.at(30_000)
    saved = r.uart.save()
    r2 = Rig()
    r2.at(30_000)
    r2.uart.restore(copy.deepcopy(saved))
    assert r2.uart.save() == saved
    r2.at(CHAR - 1)
    assert r2.backend.output == b""
    r2.at(CHAR)
    assert r2.backend.output == b"a"
    r2.at(2 * CHAR)
    assert r2.backend.output == b"ab" and r2.irq.level


def _bad(state: dict[str, Any], **changes: Any) -> dict[str, Any]:
    s = copy.deepcopy(state)
    s.update(changes)
    return s


def test_restore_rejects_impossible_states() -> None:
    """Restored state is attacker input: anything the chip cannot be in raises StateError."""
    r = Rig()
    r.setup(fcr=0x01)
    good = r.uart.save()
    bad_states = [
        _bad(good, kind="i8254"),
        _bad(good, version=99),
        _bad(good, divisor=0x10000),
        _bad(good, ier=0x10),
        _bad(good, mcr=0x20),
        _bad(good, fcr=0x03),  # self-clearing bit stored
        _bad(good, rx=list(range(17))),
        _bad(good, fcr=0x00, rx=[1, 2]),  # two bytes in a 16450's RBR
        _bad(good, rx=[LSR_OE << 8]),  # OE cannot travel with a character
        _bad(good, tx=[1]),  # THR full with the TSR idle
        _bad(good, tsr=1, tx=[2], thr_ipending=True),
        _bad(good, timeout_pending=True),  # no FIFO data
        _bad(good, msr_lines=0x00),  # not the modem inputs
        _bad(good, lsr_errors=LSR_DR),
        _bad(good, thr_ipending=1),
        _bad(good, tx_remaining=-1),
        _bad(good, scr="0"),
        _bad(good, mcr=LOOP, msr_lines=0, rx_remaining=5),
    ]
    for state in bad_states:
        with pytest.raises(StateError):
            Rig().uart.restore(state)
    Rig().uart.restore(good)


# -- machine and qtest ---------------------------------------------------------------------


def test_pc_machine_com_ports() -> None:
    """COM1 at 0x3F8 on IRQ 4 always; COM2 at 0x2F8 on IRQ 3 when configured."""
    m = PcMachine(with_ram=False)
    assert len(m.serial) == 1 and m.ports.read(0x3FD, 1) == 0x60
    assert m.ports.read(0x2FD, 1) == 0xFF
    m.ports.write(0x3F9, 1, 0x02)
    assert m.gsi.line(4).level
    m2 = PcMachine(serial=[NullBackend(), NullBackend()], with_ram=False)
    m2.ports.write(0x2F9, 1, 0x02)
    assert m2.gsi.line(3).level and not m2.gsi.line(4).level
    with pytest.raises(ValueError, match="unknown serial backend"):
        open_backends(["tcp:1234"])


def test_qtest_drives_com1_like_a_guest() -> None:
    """Through qtest: program 115200 8N1, enable THRI, transmit, watch IRQ 4 on the clock."""
    m = PcMachine(with_ram=False)
    ask = Qtest(m).ask

    assert ask("irq_intercept_in ioapic") == "OK\n"
    for line in ("outb 0x3fb 0x83", "outb 0x3f8 0x01", "outb 0x3f9 0x00", "outb 0x3fb 0x03"):
        assert ask(line) == "OK\n"
    assert ask("outb 0x3f9 0x02") == "IRQ raise 4\nOK\n"
    assert ask("inb 0x3fa") == "IRQ lower 4\nOK 0x0002\n"
    assert ask("outb 0x3f8 0x41") == "IRQ raise 4\nOK\n"  # straight into the TSR
    assert ask("outb 0x3f8 0x42") == "IRQ lower 4\nOK\n"
    assert ask("inb 0x3fd") == "OK 0x0000\n"
    assert ask(f"clock_step {CHAR}") == f"IRQ raise 4\nOK {CHAR}\n"
    assert ask("inb 0x3fd") == "OK 0x0020\n"
    assert ask(f"clock_step {CHAR}") == f"OK {2 * CHAR}\n"
    assert ask("inb 0x3fd") == "OK 0x0060\n"


# -- Hypothesis ----------------------------------------------------------------------------

op = st.one_of(
    st.tuples(st.just("w"), st.integers(0, 7), st.integers(0, 255)),
    st.tuples(st.just("r"), st.integers(0, 7), st.just(0)),
    st.tuples(st.just("t"), st.integers(0, 2_000_000), st.just(0)),
    st.tuples(st.just("feed"), st.integers(0, 255), st.integers(1, 40)),
    st.tuples(st.just("drain"), st.integers(0, 8), st.just(0)),
    st.tuples(st.just("char"), st.integers(0, 255), st.sampled_from([0, 0x04, 0x08, 0x10])),
    st.tuples(st.just("modem"), st.integers(0, 15), st.just(0)),
)
# Writes that make things happen fast: divisor 1, FIFOs, loopback, all interrupts.
prelude = [("w", 3, 0x80), ("w", 0, 1), ("w", 1, 0), ("w", 3, 0x03)]


def apply(r: Rig, o: tuple[str, int, int]) -> None:
    kind, a, b = o
    if kind == "w":
        r.outb(a, b)
    elif kind == "r":
        r.inb(a)
    elif kind == "t":
        r.at(r.clock.now() + a)
    elif kind == "feed":
        r.backend.feed(bytes([a]) * b)
    elif kind == "drain":
        r.backend.drain(a)
    elif kind == "char":
        r.uart.receive_char(a, b)
    else:
        r.uart.set_modem_inputs(bool(a & 1), bool(a & 2), bool(a & 4), bool(a & 8))


def check_invariants(r: Rig) -> None:
    u = r.uart
    assert len(u.rx) <= u.capacity and len(u.tx) <= u.capacity + TX_SLACK
    assert r.irq.level == (u.iir_id() != 0x01)
    lsr = u.lsr()
    assert bool(lsr & LSR_THRE) == (not u.tx)
    assert bool(lsr & LSR_TEMT) == (not u.tx and u.tsr is None)
    assert bool(lsr & LSR_DR) == bool(u.rx)
    assert not (u.tx and u.tsr is None)
    assert not (u.thr_ipending and u.tx)
    assert not u.timeout_pending or (u.fifo_enabled and u.rx)
    assert u.ier <= 0x0F and u.mcr <= 0x1F and u.msr_deltas <= 0x0F
    assert u.tx_blocked == (u.tsr is not None and not u._tx_timer.armed)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=60), st.sampled_from([None, 1, 5]))
def test_any_access_sequence(ops: list[tuple[str, int, int]], capacity: int | None) -> None:
    """Any register access in any order at any time: nothing raises, the invariants hold,
    and save/restore round-trips to a UART that then behaves identically."""
    r = Rig(capacity)
    for o in prelude + ops:
        apply(r, o)
        check_invariants(r)
    # Quiesce the host side (backend contents are not UART state), then round-trip.
    r.backend.read(1 << 20)
    r.backend.capacity = None
    r.backend.drain()
    r.at(r.clock.now())
    saved = r.uart.save()
    r2 = Rig()
    r2.at(r.clock.now())
    r2.uart.restore(copy.deepcopy(saved))
    assert r2.uart.save() == saved
    assert r2.irq.level == r.irq.level
    before = len(r.backend.output)
    tail = [("r", 2, 0), ("r", 5, 0), ("t", 3 * CHAR, 0), ("r", 0, 0), ("r", 6, 0)]
    tail += [("w", 0, 0x5A), ("t", 40 * CHAR, 0), ("r", 5, 0), ("r", 2, 0), ("r", 0, 0)]
    for o in tail:
        kind, a, _ = o
        if kind == "r":
            assert r.inb(a) == r2.inb(a), o
        else:
            apply(r, o)
            apply(r2, o)
        assert r.irq.level == r2.irq.level
    assert r.backend.output[before:] == r2.backend.output


polite = st.one_of(
    st.tuples(st.just("send"), st.integers(0, 255), st.just(0)),
    st.tuples(st.just("t"), st.integers(0, 500_000), st.just(0)),
    st.tuples(st.just("drain"), st.integers(0, 6), st.just(0)),
    st.tuples(st.just("w"), st.just(3), st.sampled_from([0x03, 0x07, 0x0B, 0x1F])),
    st.tuples(st.just("w"), st.just(2), st.sampled_from([0x01, 0x07, 0xC7])),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(polite, max_size=80), st.integers(1, 6), st.booleans())
def test_guest_output_is_conserved(
    ops: list[tuple[str, int, int]], capacity: int, fifo: bool
) -> None:
    """Whatever the timing and backend speed, every byte a driver wrote while THR/FIFO had
    room is delivered, in order: output + backend buffer + TSR + FIFO == written."""
    r = Rig(capacity)
    r.setup(fcr=0x07 if fifo else 0)
    written = bytearray()
    for kind, a, b in ops:
        if kind == "send":
            if len(r.uart.tx) < r.uart.capacity:
                r.outb(THR, a)
                written.append(a)
        elif kind == "w" and a == 2 and not r.uart.fifo_enabled:
            continue  # enabling FIFOs clears the transmit FIFO (real loss, by design)
        elif kind == "w" and a == 2:
            r.outb(FCR, b & ~0x06)  # keep FIFOs on, no clearing
        else:
            apply(r, (kind, a, b))
        in_uart = ([] if r.uart.tsr is None else [r.uart.tsr]) + list(r.uart.tx)
        assert bytes(r.backend.output + r.backend.pending) + bytes(in_uart) == written
    r.backend.capacity = None
    r.backend.drain()
    r.at(r.clock.now() + 40 * char_time_ns(0x1F, 1))
    assert r.backend.output == written
