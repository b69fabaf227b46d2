"""The I/O APIC (Intel 82093AA datasheet), version 0x20 with 24 pins and an EOI register.

MMIO window (4 KiB at 0xFEC00000 on a PC; the low 8 offset bits are decoded, as by QEMU):
IOREGSEL at +0x00 selects a register, IOWIN at +0x10 reads and writes it (32-bit accesses
only), EOI at +0x40 (version 0x20) clears remote IRR of level entries with the written
vector. Registers: 0x00 ID (bits 27:24), 0x01 version 0x00170020, 0x02 arbitration ID (loaded
from the ID), 0x10 + 2n / 0x11 + 2n the low and high halves of redirection entry n.

Pin semantics (datasheet section 3.2.4):
* edge: a rising edge on an unmasked pin sends one message; edges on a masked pin are
  ignored, not held (QEMU agrees);
* level: an asserted unmasked pin sends a message and sets remote IRR when a local APIC
  accepts it; no further message until an EOI with the entry's vector clears remote IRR; a
  pin still asserted then sends again (no lost interrupts); unmasking an asserted pin sends;
* NMI, SMI, INIT and ExtINT entries are edge-triggered whatever the trigger bit says;
  ExtINT (the 8259's INTR on pin 0) follows the line: the addressed APICs see its level.

Inputs are logical "asserted" levels: the polarity bit is kept and read back but does not
invert the pin. QEMU, KVM and Xen do the same: the firmware tables describe PCI lines as
active low, and inverting here would leave every idle PCI pin asserted.

Writing an entry with the trigger bit clear clears its remote IRR (QEMU; Linux relies on it
to EOI an IOAPIC without the EOI register).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from southbridge.core.device import BusDevice
from southbridge.core.irq import IrqLine
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.state import StateError, check_header, get_int, header
from southbridge.devices.apicbus import (
    DM_EXTINT,
    DM_FIXED,
    DM_LOWEST,
    DM_REMOTE_READ,
    DM_SIPI,
    ApicBus,
    ApicMessage,
)

logger = logging.getLogger("southbridge.ioapic")


DEFAULT_BASE = 0xFEC00000
WINDOW_SIZE = 0x1000
PINS = 24
VERSION = 0x20

IOREGSEL = 0x00
IOWIN = 0x10
IOEOI = 0x40

REG_ID = 0x00
REG_VERSION = 0x01
REG_ARB = 0x02
REG_REDTBL = 0x10

RTE_MASKED = 1 << 16
RTE_LEVEL = 1 << 15
RTE_REMOTE_IRR = 1 << 14
RTE_POLARITY = 1 << 13
RTE_DELIVERY_STATUS = 1 << 12
RTE_LOGICAL = 1 << 11
# Datasheet 3.2.4: vector, delivery mode, destination mode, polarity, trigger, mask and the
# destination field are read/write; delivery status and remote IRR are read-only; 55:17 are
# reserved.
RTE_WRITABLE = (0xFF << 56) | 0x1AFFF
U32 = 0xFFFFFFFF


class IoApic(BusDevice):
    """One 82093AA-style IOAPIC on an APIC bus; devices drive pins through `set_irq`."""

    STATE_KIND: ClassVar[str] = "ioapic"
    STATE_VERSION: ClassVar[int] = 1

    io_sizes = frozenset({1, 2, 4})
    name = "ioapic"

    def __init__(self, bus: ApicBus, ioapic_id: int = 0, log: RateLimitedLog | None = None) -> None:
        self.bus = bus
        self.log = log if log is not None else RateLimitedLog(logger)
        self.pins = PINS
        # One line per pin, carrying its input level (for observers such as tests).
        self.pin_lines = [IrqLine(f"ioapic-pin{n}") for n in range(PINS)]
        self.lines = 0  # asserted inputs, bit per pin
        self.ioregsel = 0
        self.id = ioapic_id & 0xF
        self.redir = [RTE_MASKED] * PINS
        # Hooks told the pin whose remote IRR an EOI cleared, before the pin is serviced
        # again (assigned-device INTx unmasks at its source there).
        self.eoi_listeners: list[Callable[[int], None]] = []
        bus.on_eoi(self.eoi)
        # Hooks told the pin whose vector a local APIC EOI'd, edge pins included: the
        # acknowledge reinjecting timers pace on (KVM: kvm_ioapic_update_eoi_one).
        self.ack_listeners: list[Callable[[int], None]] = []
        bus.on_ack(self._acked)

    def reset(self) -> None:
        """RESET: every entry masked with its other bits clear, ID 0 (as QEMU resets it)."""
        self._extint_withdraw_all()
        self.id = 0
        self.ioregsel = 0
        self.redir = [RTE_MASKED] * PINS

    # -- pins ----------------------------------------------------------------------------
    def set_irq(self, pin: int, level: bool) -> None:
        """Drive input pin `pin` (0-23) to `level` (True = asserted)."""
        if not 0 <= pin < PINS:
            raise ValueError(f"IOAPIC pin {pin} out of range 0-{PINS - 1}")
        level = bool(level)
        bit = 1 << pin
        was = bool(self.lines & bit)
        self.lines = (self.lines | bit) if level else (self.lines & ~bit)
        self.pin_lines[pin].set(level)
        entry = self.redir[pin]
        dm = (entry >> 8) & 7
        if dm == DM_EXTINT:
            if level != was:
                self._extint(pin, level)
        elif self._level_mode(entry):
            if level:
                self._service(pin)
        elif level and not was:
            self._service(pin)

    @staticmethod
    def _level_mode(entry: int) -> bool:
        # Only fixed and lowest-priority deliveries can be level-triggered (datasheet).
        return bool(entry & RTE_LEVEL) and (entry >> 8) & 7 in (DM_FIXED, DM_LOWEST)

    def _message(self, entry: int, assert_: bool = True) -> ApicMessage:
        return ApicMessage(
            vector=entry & 0xFF,
            delivery_mode=(entry >> 8) & 7,
            dest=(entry >> 56) & 0xFF,
            logical=bool(entry & RTE_LOGICAL),
            level_triggered=self._level_mode(entry),
            assert_=assert_,
        )

    def _service(self, pin: int) -> None:
        """Send pin's message if it may: unmasked, and for level pins remote IRR clear."""
        entry = self.redir[pin]
        if entry & RTE_MASKED:
            return
        level = self._level_mode(entry)
        if level and (entry & RTE_REMOTE_IRR or not self.lines >> pin & 1):
            return
        dm = (entry >> 8) & 7
        if dm in (DM_REMOTE_READ, DM_SIPI):
            self.log.debug(f"ioapic:dm{pin}", "IOAPIC pin %d: reserved delivery mode %d", pin, dm)
            return
        accepted = self.bus.deliver(self._message(entry))
        if level and accepted:
            self.redir[pin] |= RTE_REMOTE_IRR

    def _extint(self, pin: int, level: bool) -> None:
        """ExtINT pins pass the 8259's INTR level to the addressed APICs."""
        entry = self.redir[pin]
        if not entry & RTE_MASKED or not level:
            self.bus.deliver(self._message(entry, level))

    def _extint_withdraw(self, pin: int, entry: int) -> None:
        if (entry >> 8) & 7 == DM_EXTINT and not entry & RTE_MASKED and self.lines >> pin & 1:
            self.bus.deliver(self._message(entry, False))

    def _extint_withdraw_all(self) -> None:
        for pin, entry in enumerate(self.redir):
            self._extint_withdraw(pin, entry)

    # -- EOI -----------------------------------------------------------------------------
    def _acked(self, vector: int) -> None:
        """A local APIC EOI'd `vector`: tell the ack listeners of every unmasked fixed or
        lowest-priority pin with that vector (a pin cannot know which sent it)."""
        if not self.ack_listeners:
            return
        for pin, entry in enumerate(self.redir):
            if (
                entry & 0xFF == vector
                and not entry & RTE_MASKED
                and (entry >> 8) & 7 in (DM_FIXED, DM_LOWEST)
            ):
                for fn in list(self.ack_listeners):
                    fn(pin)

    def eoi(self, vector: int) -> None:
        """An EOI message (local APIC broadcast or the EOI register) for `vector`."""
        vector &= 0xFF
        for pin, entry in enumerate(self.redir):
            if entry & RTE_REMOTE_IRR and entry & 0xFF == vector and entry & RTE_LEVEL:
                self.redir[pin] = entry & ~RTE_REMOTE_IRR
                for fn in list(self.eoi_listeners):
                    fn(pin)
                self._service(pin)  # still asserted: deliver again

    # -- registers -----------------------------------------------------------------------
    def read_register(self, index: int) -> int:
        if index == REG_ID:
            return self.id << 24
        if index == REG_VERSION:
            return ((PINS - 1) << 16) | VERSION
        if index == REG_ARB:
            return self.id << 24  # loaded from the ID register (datasheet 3.2.3)
        if REG_REDTBL <= index < REG_REDTBL + 2 * PINS:
            entry = self.redir[(index - REG_REDTBL) >> 1]
            return (entry >> 32) if index & 1 else entry & U32
        self.log.debug(f"ioapic:reg{index}", "IOAPIC: read of undefined register 0x%02x", index)
        return 0

    def write_register(self, index: int, value: int) -> None:
        value &= U32
        if index == REG_ID:
            self.id = (value >> 24) & 0xF
        elif REG_REDTBL <= index < REG_REDTBL + 2 * PINS:
            pin = (index - REG_REDTBL) >> 1
            old = self.redir[pin]
            new = (old & U32) | (value << 32) if index & 1 else (old & ~U32) | value
            new = (new & RTE_WRITABLE) | (old & RTE_REMOTE_IRR)
            if not new & RTE_LEVEL:
                new &= ~RTE_REMOTE_IRR
            if new == old:
                return
            self._extint_withdraw(pin, old)
            self.redir[pin] = new
            if (new >> 8) & 7 == DM_EXTINT:
                if self.lines >> pin & 1:
                    self._extint(pin, True)
            elif self._level_mode(new):
                self._service(pin)  # unmasking an asserted level pin delivers
        else:
            self.log.debug(
                f"ioapic:wreg{index}", "IOAPIC: write to read-only register 0x%02x", index
            )

    def read(self, offset: int, size: int) -> int:
        offset &= 0xFF
        if offset == IOREGSEL:
            return self.ioregsel
        if offset == IOWIN and size == 4:
            return self.read_register(self.ioregsel)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        offset &= 0xFF
        if offset == IOREGSEL:
            self.ioregsel = value & 0xFF
        elif offset == IOWIN and size == 4:
            self.write_register(self.ioregsel, value)
        elif offset == IOEOI and size == 4:
            self.eoi(value & 0xFF)
        else:
            self.log.debug(
                f"ioapic:w{offset:x}", "IOAPIC: %d-byte write at +0x%02x ignored", size, offset
            )

    # -- state ---------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        return {
            **header(self),
            "id": self.id,
            "ioregsel": self.ioregsel,
            "lines": self.lines,
            "redir": list(self.redir),
        }

    def restore(self, state: dict[str, Any]) -> None:
        state = check_header(state, self)
        ident = get_int(state, "id", 0, 0xF)
        ioregsel = get_int(state, "ioregsel", 0, 0xFF)
        lines = get_int(state, "lines", 0, (1 << PINS) - 1)
        redir = state.get("redir")
        if not isinstance(redir, list) or len(redir) != PINS:
            raise StateError(f"ioapic: redir must be a list of {PINS} entries")
        for pin, entry in enumerate(redir):
            if not isinstance(entry, int) or isinstance(entry, bool) or entry < 0:
                raise StateError(f"ioapic: entry {pin} is not an integer")
            if entry & ~(RTE_WRITABLE | RTE_REMOTE_IRR):
                raise StateError(f"ioapic: entry {pin} sets reserved bits")
            if entry & RTE_REMOTE_IRR and not self._level_mode(entry):
                raise StateError(f"ioapic: entry {pin} has remote IRR but is not level")
        self.id, self.ioregsel, self.lines = ident, ioregsel, lines
        self.redir = list(redir)
        for pin, line in enumerate(self.pin_lines):
            line.set(bool(lines >> pin & 1))
