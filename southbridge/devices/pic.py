"""The PC's cascaded Intel 8259A interrupt controllers with the PIIX ELCR.

Master at 0x20-0x21 (ISA IRQ 0-7), slave at 0xA0-0xA1 (IRQ 8-15) with its INT output on the
master's IR2, and the PIIX Edge/Level Control Registers at 0x4D0-0x4D1. Behaviour follows the
Intel 8259A datasheet; where the PIIX changes it (LTIM is ignored, the ELCR selects edge or
level per IRQ, ELCR bits of IRQ 0, 1, 2, 8 and 13 are read-only 0) the PIIX3 datasheet wins.
QEMU's hw/intc/i8259.c is the peer for what the datasheet leaves open:

* An edge-triggered request stays latched in IRR after its line falls, so devices that pulse
  a line are never lost (the datasheet wants the line high until INTA).
* The slave's INT drops during each INTA cycle that reaches it, so when it still has a
  request afterwards the master sees a new edge on IR2 (AEOI slaves keep working).
* When the master's request vanished before INTA the CPU gets IR7 of the master (spurious
  IRQ7, no ISR bit set); when the master chose IR2 but the slave has nothing the slave
  answers IR7 (spurious IRQ15) and the master's ISR bit 2 is set, as Linux expects.

Deliberate differences from QEMU, from the datasheet: a non-specific EOI in special mask mode
leaves masked in-service levels alone, and special fully nested mode lets only the slave's
own level through on IR2 (QEMU's lets every lower master level through too). An IR line held
high across ICW1 needs a new low-to-high transition before it requests again ("the edge sense
circuit is reset").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from southbridge.core.device import BusDevice
from southbridge.core.irq import IrqLine
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.state import StateError, check_header, get_bool, get_int, header

logger = logging.getLogger("southbridge.pic")


CASCADE_IR = 2  # the master's input wired to the slave's INT on a PC
SPURIOUS_IR = 7  # IR7 is the "default" level answered when no request is left at INTA

# PIIX3 datasheet, ELCR1/ELCR2: IRQ 0, 1, 2 (timer, keyboard, cascade) and IRQ 8, 13 (RTC,
# FPU error) are always edge triggered; their bits are reserved and read 0.
MASTER_ELCR_MASK = 0xF8
SLAVE_ELCR_MASK = 0xDE

# Command port decoding (8259A datasheet, "Programming the 8259A").
_ICW1 = 0x10  # D4=1 on A0=0: ICW1
_OCW3 = 0x08  # D4=0, D3=1 on A0=0: OCW3; D4=D3=0: OCW2
_ICW1_IC4 = 0x01
_ICW1_SNGL = 0x02
_ICW1_LTIM = 0x08
_ICW4_UPM = 0x01
_ICW4_AEOI = 0x02
_ICW4_SFNM = 0x10
_OCW3_RIS = 0x01
_OCW3_RR = 0x02
_OCW3_POLL = 0x04
_OCW3_SMM = 0x20
_OCW3_ESMM = 0x40

# Initialisation steps: which word the data port expects next.
READY, WAIT_ICW2, WAIT_ICW3, WAIT_ICW4 = 0, 1, 2, 3

_FIELDS_INT = ("irr", "imr", "isr", "lines", "elcr")
_FIELDS_BOOL = (
    "need_icw4",
    "single",
    "aeoi",
    "rotate_aeoi",
    "sfnm",
    "read_isr",
    "poll",
    "special_mask",
)


class I8259(BusDevice):
    """One 8259A: its registers, priority resolver and command decoder (2 ports)."""

    io_sizes = frozenset({1})

    def __init__(
        self,
        name: str,
        is_master: bool,
        elcr_mask: int,
        log: RateLimitedLog,
        changed: Callable[[I8259, bool], None],
    ) -> None:
        self.name = name
        self.is_master = is_master
        self.elcr_mask = elcr_mask
        self._log = log
        # Called after any change that may move INT; the flag says an INTA cycle happened.
        self._changed = changed
        self.lines = 0  # level on each IR pin, as the wires drive it
        self.elcr = 0
        self.irr = self.imr = self.isr = 0
        self.prio = 0  # the IR with the highest priority (0 until rotated)
        self.base = 0  # ICW2 vector base (T7-T3)
        self.init_step = READY
        self.need_icw4 = self.single = False
        self.aeoi = self.rotate_aeoi = self.sfnm = False
        self.read_isr = self.poll = self.special_mask = False
        # Told the IR whose in-service bit an EOI command cleared (assigned-device INTx
        # unmasks there); called before INT is re-evaluated.
        self.eoi_hook: Callable[[int], None] | None = None
        # Told the IR a poll-command read acknowledged or ICW1 dropped (INTA listeners).
        self.ack_hook: Callable[[int], None] | None = None
        self._dropped = 0  # edge requests ICW1 just dropped, acknowledged after the write

    # -- priority resolver ---------------------------------------------------------------
    def _rank(self, ir: int) -> int:
        """0 for the highest-priority IR, 7 for the lowest, under the current rotation."""
        return (ir - self.prio) & 7

    def _highest(self, mask: int) -> int | None:
        for r in range(8):
            ir = (self.prio + r) & 7
            if mask & (1 << ir):
                return ir
        return None

    def cascaded(self) -> bool:
        """Whether this master's IR2 is answered by the slave (ICW1 SNGL=0)."""
        return self.is_master and not self.single

    def pending(self) -> int | None:
        """The IR this chip would raise INT for now, or None (its INT output is low)."""
        best = self._highest(self.irr & ~self.imr)
        if best is None:
            return None
        in_service = self.isr
        if self.special_mask:
            # Special mask mode: masked levels do not inhibit any other level.
            in_service &= ~self.imr
        current = self._highest(in_service)
        if current is None or self._rank(best) < self._rank(current):
            return best
        # Special fully nested mode: a request from the slave at the level already in
        # service is let through, so higher-priority slave IRs nest (datasheet, SFNM).
        if best == current == CASCADE_IR and self.sfnm and self.cascaded():
            return best
        return None

    # -- pins ----------------------------------------------------------------------------
    def set_pin(self, ir: int, level: bool) -> None:
        """Drive IR pin `ir`; edge pins latch IRR on 0->1, level pins follow the line."""
        bit = 1 << ir
        was = self.lines & bit
        self.lines = (self.lines | bit) if level else (self.lines & ~bit)
        if self.elcr & bit:
            self.irr = (self.irr | bit) if level else (self.irr & ~bit)
        elif level and not was:
            self.irr |= bit

    def intack(self, ir: int) -> None:
        """The INTA cycle for `ir`: IRR to ISR (or AEOI), without notifying the pair."""
        bit = 1 << ir
        if self.aeoi:
            # AEOI: the ISR bit is reset at the end of the last INTA pulse.
            if self.rotate_aeoi:
                self.prio = (ir + 1) & 7
        else:
            self.isr |= bit
        if not self.elcr & bit:
            self.irr &= ~bit  # a level request stays while its line is high
        if self.aeoi and self.eoi_hook is not None:
            # The end of INTA is this IR's end of service: listeners (an assigned device's
            # INTx held while in service) hear it as they would an EOI command.
            self.eoi_hook(ir)

    # -- initialisation ------------------------------------------------------------------
    def _icw1(self, value: int) -> None:
        """ICW1: 8259A datasheet, "Initialization command words" a) to f)."""
        if value & _ICW1_LTIM:
            self._log.debug(
                f"{self.name}:ltim",
                "%s: ICW1 LTIM=1 ignored; the ELCR selects level mode",
                self.name,
            )
        self.need_icw4 = bool(value & _ICW1_IC4)
        self.single = bool(value & _ICW1_SNGL)
        self._dropped = self.irr & ~self.elcr
        self._init_reset()
        self.init_step = WAIT_ICW2

    def _drop_acks(self, dropped: int) -> None:
        """Edge requests the edge sense reset dropped count as acknowledged, so a source
        waiting for their acknowledge never waits forever (KVM's kvm_pic_reset does so)."""
        if self.ack_hook is not None:
            for ir in range(8):
                if dropped >> ir & 1:
                    self.ack_hook(ir)

    def _init_reset(self) -> None:
        # The edge sense circuit is reset (pending edges are dropped and a line that is high
        # must go low and high again), IMR cleared, IR7 lowest, special mask cleared, status
        # read is IRR; with IC4=0 the ICW4 functions are zero. ISR is cleared as by QEMU,
        # KVM and Bochs so that an interrupted handler cannot block the new setup.
        self.irr &= self.elcr
        self.imr = self.isr = 0
        self.prio = 0
        self.special_mask = self.read_isr = self.poll = self.rotate_aeoi = False
        if not self.need_icw4:
            self.aeoi = self.sfnm = False

    def _init_word(self, value: int) -> None:
        if self.init_step == WAIT_ICW2:
            self.base = value & 0xF8  # 8086 mode: T7-T3, the IR number fills the rest
            if self.single:
                self.init_step = WAIT_ICW4 if self.need_icw4 else READY
            else:
                self.init_step = WAIT_ICW3
        elif self.init_step == WAIT_ICW3:
            # The PIIX hard-wires the slave to IR2; other cascade settings change nothing.
            expect = 0x04 if self.is_master else 0x02
            if value != expect:
                self._log.debug(
                    f"{self.name}:icw3",
                    "%s: ICW3 0x%02x, PIIX wiring needs 0x%02x",
                    self.name,
                    value,
                    expect,
                )
            self.init_step = WAIT_ICW4 if self.need_icw4 else READY
        else:
            if not value & _ICW4_UPM:
                self._log.debug(
                    f"{self.name}:upm",
                    "%s: ICW4 selects 8080 mode; vectors stay 8086-style",
                    self.name,
                )
            self.aeoi = bool(value & _ICW4_AEOI)
            self.sfnm = bool(value & _ICW4_SFNM)
            self.init_step = READY

    # -- operation command words ---------------------------------------------------------
    def _ocw2(self, value: int) -> None:
        cmd, level = value >> 5, value & 7
        before = self.isr
        if cmd in (0b001, 0b101):  # non-specific EOI, rotate on non-specific EOI
            in_service = self.isr
            if self.special_mask:
                # Datasheet: a masked IS bit is not cleared by a non-specific EOI in SMM.
                in_service &= ~self.imr
            ir = self._highest(in_service)
            if ir is None:
                return
            self.isr &= ~(1 << ir)
            if cmd == 0b101:
                self.prio = (ir + 1) & 7
        elif cmd == 0b011:  # specific EOI
            self.isr &= ~(1 << level)
        elif cmd == 0b111:  # rotate on specific EOI: the level becomes the lowest
            self.isr &= ~(1 << level)
            self.prio = (level + 1) & 7
        elif cmd == 0b110:  # set priority: the level becomes the lowest
            self.prio = (level + 1) & 7
        elif cmd in (0b100, 0b000):  # set / clear rotate in automatic EOI mode
            self.rotate_aeoi = cmd == 0b100
        # 0b010 is the no-operation command.
        cleared = before & ~self.isr
        if cleared and self.eoi_hook is not None:
            self.eoi_hook(cleared.bit_length() - 1)

    def _ocw3(self, value: int) -> None:
        if value & _OCW3_ESMM:
            self.special_mask = bool(value & _OCW3_SMM)
        if value & _OCW3_RR:
            self.read_isr = bool(value & _OCW3_RIS)
        if value & _OCW3_POLL:
            self.poll = True

    # -- bus -----------------------------------------------------------------------------
    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if offset == 0:
            if value & _ICW1:
                self._icw1(value)
            elif value & _OCW3:
                self._ocw3(value)
            else:
                self._ocw2(value)
        elif self.init_step != READY:
            self._init_word(value)
        else:
            self.imr = value  # OCW1
        self._changed(self, False)
        if self._dropped:
            # After INT settled low: a source reinjecting into the fresh edge sense gives a
            # new rising edge, as the datasheet wants after ICW1.
            dropped, self._dropped = self._dropped, 0
            self._drop_acks(dropped)

    def read(self, offset: int, size: int) -> int:
        if self.poll:
            # Poll command: this read is the interrupt acknowledge; bit 7 says whether a
            # request was pending and bits 2-0 give its level.
            self.poll = False
            ir = self.pending()
            if ir is None:
                return 0
            self.intack(ir)
            self._changed(self, True)
            if self.ack_hook is not None:
                self.ack_hook(ir)
            return 0x80 | ir
        if offset == 0:
            return self.isr if self.read_isr else self.irr
        return self.imr

    def set_elcr(self, value: int) -> None:
        self.elcr = value & self.elcr_mask
        # Level inputs follow their line; edge inputs keep what they latched.
        self.irr = (self.irr & ~self.elcr) | (self.lines & self.elcr)

    def hard_reset(self) -> None:
        self.elcr = 0
        self.need_icw4 = False
        self._init_reset()
        self.base = 0
        self.init_step = READY
        self.single = False

    # -- state ---------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in _FIELDS_INT + _FIELDS_BOOL}
        d.update(prio=self.prio, base=self.base, init_step=self.init_step)
        return d

    def parse(self, d: Any) -> dict[str, Any]:
        """Validate a saved chip; returns the fields to apply."""
        if not isinstance(d, dict):
            raise StateError(f"{self.name}: state must be a mapping")
        out: dict[str, Any] = {k: get_int(d, k, 0, 0xFF) for k in _FIELDS_INT}
        out.update({k: get_bool(d, k) for k in _FIELDS_BOOL})
        out["prio"] = get_int(d, "prio", 0, 7)
        out["base"] = get_int(d, "base", 0, 0xFF)
        out["init_step"] = get_int(d, "init_step", READY, WAIT_ICW4)
        if out["base"] & 7:
            raise StateError(f"{self.name}: vector base 0x{out['base']:x} has bits 2-0 set")
        if out["elcr"] & ~self.elcr_mask:
            raise StateError(f"{self.name}: ELCR 0x{out['elcr']:x} sets read-only bits")
        if (out["irr"] ^ out["lines"]) & out["elcr"]:
            raise StateError(f"{self.name}: level-triggered IRR bits differ from their lines")
        if out["init_step"] == WAIT_ICW3 and out["single"]:
            raise StateError(f"{self.name}: waiting for ICW3 in single mode")
        if out["init_step"] == WAIT_ICW4 and not out["need_icw4"]:
            raise StateError(f"{self.name}: waiting for ICW4 that ICW1 did not ask for")
        return out

    def apply(self, fields: dict[str, Any]) -> None:
        for k, v in fields.items():
            setattr(self, k, v)


class Elcr(BusDevice):
    """PIIX Edge/Level Control Registers: 0x4D0 for IRQ 0-7, 0x4D1 for IRQ 8-15."""

    io_sizes = frozenset({1})
    name = "elcr"

    def __init__(self, pair: PicPair) -> None:
        self._pair = pair

    def _chip(self, offset: int) -> I8259:
        return self._pair.master if offset == 0 else self._pair.slave

    def read(self, offset: int, size: int) -> int:
        return self._chip(offset).elcr

    def write(self, offset: int, size: int, value: int) -> None:
        chip = self._chip(offset)
        if value & ~chip.elcr_mask & 0xFF:
            self._pair.log.debug(
                "elcr:reserved",
                "ELCR%d: reserved bits 0x%02x written, ignored",
                offset + 1,
                value & ~chip.elcr_mask & 0xFF,
            )
        chip.set_elcr(value)
        self._pair._update()


class PicPair:
    """Master and slave 8259A wired as on a PC, with the ELCR; `intr` goes to the CPU.

    Register `master` at 0x20 (2 ports), `slave` at 0xA0 (2 ports) and `elcr` at 0x4D0
    (2 ports). Devices drive ISA IRQs with `set_irq`; the CPU side watches `intr` and runs
    `acknowledge()` for each interrupt it takes.
    """

    STATE_KIND: ClassVar[str] = "i8259-pair"
    STATE_VERSION: ClassVar[int] = 1

    def __init__(self, log: RateLimitedLog | logging.Logger | None = None) -> None:
        if log is None:
            log = logger
        self.log = log if isinstance(log, RateLimitedLog) else RateLimitedLog(log)
        self.intr = IrqLine("i8259-intr")
        self.master = I8259("pic-master", True, MASTER_ELCR_MASK, self.log, self._on_change)
        self.slave = I8259("pic-slave", False, SLAVE_ELCR_MASK, self.log, self._on_change)
        self.elcr = Elcr(self)
        # Hooks told the ISA IRQ (0-15) an EOI command ended the service of.
        self.eoi_listeners: list[Callable[[int], None]] = []
        self.master.eoi_hook = self._notify_eoi
        self.slave.eoi_hook = lambda ir: self._notify_eoi(8 + ir)
        # Hooks told the ISA IRQ an INTA cycle (or a poll read) took into service: the
        # acknowledge that paces reinjected timer ticks (KVM's i8259 notifies its irq ack
        # notifiers likewise). Called after the pair settled, never for the cascade IR2.
        self.ack_listeners: list[Callable[[int], None]] = []
        self.master.ack_hook = self._master_acked
        self.slave.ack_hook = lambda ir: self._notify_ack(8 + ir)

    def _notify_eoi(self, irq: int) -> None:
        for fn in list(self.eoi_listeners):
            fn(irq)

    def _notify_ack(self, irq: int) -> None:
        for fn in list(self.ack_listeners):
            fn(irq)

    def _master_acked(self, ir: int) -> None:
        if ir != CASCADE_IR or not self.master.cascaded():
            self._notify_ack(ir)

    # -- wiring --------------------------------------------------------------------------
    def _on_change(self, chip: I8259, inta: bool) -> None:
        self._update(slave_inta=inta and chip is self.slave)

    def _update(self, slave_inta: bool = False) -> None:
        """Propagate slave INT to master IR2 and master INT to `intr`."""
        if slave_inta:
            # The slave's INT falls during its INTA cycle; if it still requests afterwards
            # the master sees a fresh rising edge on IR2.
            self.master.set_pin(CASCADE_IR, False)
        self.master.set_pin(CASCADE_IR, self.slave.pending() is not None)
        self.intr.set(self.master.pending() is not None)

    def set_irq(self, irq: int, level: bool) -> None:
        """Drive ISA IRQ `irq` (0-15). IRQ 2 is the cascade input: not an ISA line on a PC."""
        if not 0 <= irq <= 15:
            raise ValueError(f"ISA IRQ {irq} out of range 0-15")
        if irq == CASCADE_IR:
            self.log.debug("pic:irq2", "IRQ 2 driven to %d: it is the cascade, ignored", level)
            return
        chip = self.master if irq < 8 else self.slave
        chip.set_pin(irq & 7, bool(level))
        self._update()

    # -- the CPU side --------------------------------------------------------------------
    def acknowledge(self) -> int:
        """The CPU's INTA cycle: returns the vector and moves the request into service."""
        m, s = self.master, self.slave
        ir = m.pending()
        if ir is None:
            return m.base + SPURIOUS_IR  # spurious IRQ7: nothing set in service
        if ir != CASCADE_IR or not m.cascaded():
            m.intack(ir)
            self._update()
            self._notify_ack(ir)
            return m.base + ir
        m.intack(CASCADE_IR)
        sir = s.pending()
        if sir is None:
            vector = s.base + SPURIOUS_IR  # spurious IRQ15; the master's ISR2 stays set
        else:
            s.intack(sir)
            vector = s.base + sir
        self._update(slave_inta=True)
        if sir is not None:
            self._notify_ack(8 + sir)
        return vector

    def reset(self) -> None:
        """Hardware reset (PIIX RESET): both chips uninitialised, ELCR all edge."""
        self.master.hard_reset()
        self.slave.hard_reset()
        self._update()

    # -- state ---------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        return {
            **header(self),
            "master": self.master.save(),
            "slave": self.slave.save(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        state = check_header(state, self)
        mf = self.master.parse(state.get("master"))
        sf = self.slave.parse(state.get("slave"))
        probe = I8259("probe", False, SLAVE_ELCR_MASK, self.log, lambda chip, inta: None)
        probe.apply(sf)
        if bool(mf["lines"] & (1 << CASCADE_IR)) != (probe.pending() is not None):
            raise StateError("pic-master: IR2 level differs from the slave's INT output")
        self.slave.apply(sf)
        self.master.apply(mf)
        self.intr.set(self.master.pending() is not None)
