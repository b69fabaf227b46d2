"""8259A PIC pair and PIIX ELCR, driven through the port bus as a guest would.

Rules cited: Intel 8259A datasheet (order no. 231468) sections "Interrupt sequence",
"Initialization command words", "Operation command words", "Fully nested mode",
"Automatic rotation", "Special mask mode", "Poll command", "Special fully nested mode",
"Edge and level triggered modes"; Intel PIIX3 datasheet, ELCR1/ELCR2 (ports 4D0h/4D1h).
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from southbridge.core.portbus import PortBus
from southbridge.core.state import StateError
from southbridge.devices.pic import PicPair

M_CMD, M_DATA, S_CMD, S_DATA, ELCR1, ELCR2 = 0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1
PORTS = (M_CMD, M_DATA, S_CMD, S_DATA, ELCR1, ELCR2)

# ICW4 values: 8086 mode (uPM) with and without AEOI / special fully nested mode.
ICW4_8086, ICW4_AEOI, ICW4_SFNM = 0x01, 0x03, 0x11


class Rig:
    """A PicPair on its own port bus, plus a record of every INTR change."""

    def __init__(self) -> None:
        self.pic = PicPair()
        self.bus = PortBus()
        self.bus.register(0x20, 2, self.pic.master)
        self.bus.register(0xA0, 2, self.pic.slave)
        self.bus.register(0x4D0, 2, self.pic.elcr)
        self.intr_changes: list[bool] = []
        self.pic.intr.connect(self.intr_changes.append)

    def out(self, port: int, value: int) -> None:
        self.bus.write(port, 1, value)

    def inb(self, port: int) -> int:
        return self.bus.read(port, 1)

    def init(
        self,
        icw4_m: int = ICW4_8086,
        icw4_s: int = ICW4_8086,
        base_m: int = 0x08,
        base_s: int = 0x70,
    ) -> None:
        """The BIOS/Linux sequence: ICW1 edge+cascade+IC4, ICW2 base, ICW3 wiring, ICW4."""
        for cmd, data, base, icw3, icw4 in (
            (M_CMD, M_DATA, base_m, 0x04, icw4_m),
            (S_CMD, S_DATA, base_s, 0x02, icw4_s),
        ):
            self.out(cmd, 0x11)
            self.out(data, base)
            self.out(data, icw3)
            self.out(data, icw4)

    def read_irr(self, cmd: int) -> int:
        self.out(cmd, 0x0A)  # OCW3: RR=1 RIS=0
        return self.inb(cmd)

    def read_isr(self, cmd: int) -> int:
        self.out(cmd, 0x0B)  # OCW3: RR=1 RIS=1
        return self.inb(cmd)

    def eoi(self, cmd: int = M_CMD) -> None:
        self.out(cmd, 0x20)  # OCW2: non-specific EOI

    def ack_all(self, limit: int = 20) -> list[int]:
        """Acknowledge (with EOI after each, slave first) while INTR is up."""
        got: list[int] = []
        while self.pic.intr.level and len(got) < limit:
            v = self.pic.acknowledge()
            got.append(v)
            if v >= 0x70:
                self.eoi(S_CMD)
            self.eoi(M_CMD)
        return got


@pytest.fixture
def rig() -> Rig:
    r = Rig()
    r.init()
    return r


# -- ELCR --------------------------------------------------------------------------------
def test_elcr_reset_value_and_read_only_bits() -> None:
    """PIIX3 ELCR1/2: default 00h; IRQ 0, 1, 2 and IRQ 8, 13 bits are reserved (read 0)."""
    r = Rig()
    assert r.inb(ELCR1) == 0 and r.inb(ELCR2) == 0
    r.out(ELCR1, 0xFF)
    r.out(ELCR2, 0xFF)
    assert r.inb(ELCR1) == 0xF8
    assert r.inb(ELCR2) == 0xDE
    # A 16-bit access is split by the bus into the two byte registers.
    r.bus.write(ELCR1, 2, 0x0A28)
    assert r.bus.read(ELCR1, 2) == 0x0A28


def test_elcr_level_mode_ignores_icw1_ltim() -> None:
    """PIIX3: ICW1 LTIM is disabled, the ELCR alone selects edge or level per IRQ."""
    r = Rig()
    r.out(M_CMD, 0x19)  # ICW1 with LTIM=1
    r.out(M_DATA, 0x08)
    r.out(M_DATA, 0x04)
    r.out(M_DATA, 0x01)
    r.pic.set_irq(5, True)
    assert r.pic.acknowledge() == 0x0D
    r.eoi()
    # Still edge: the line held high does not request again after EOI.
    assert not r.pic.intr.level


def test_elcr_switch_to_level_while_line_high_requests(rig: Rig) -> None:
    """PIIX3 ELCR: a level input's request follows its line as soon as it is level mode."""
    rig.pic.set_irq(9, True)
    rig.ack_all()
    assert not rig.pic.intr.level  # edge: no new request while held high
    rig.out(ELCR2, 0x02)
    assert rig.pic.intr.level
    assert rig.pic.acknowledge() == 0x71


# -- initialisation ----------------------------------------------------------------------
def test_icw_sequence_with_icw4_then_ocw1(rig: Rig) -> None:
    """Datasheet ICW: ICW1, ICW2 (T7-T3), ICW3 (cascade), ICW4; then A0=1 writes are OCW1."""
    rig.out(M_DATA, 0x5A)
    assert rig.inb(M_DATA) == 0x5A
    rig.out(M_DATA, 0x00)
    rig.pic.set_irq(1, True)
    assert rig.pic.acknowledge() == 0x09  # T7-T3 from ICW2, IR level in bits 2-0


def test_icw2_low_bits_are_the_ir_level() -> None:
    """Datasheet ICW2 in 8086 mode: bits 2-0 are ignored, the chip supplies the IR level."""
    r = Rig()
    r.init(base_m=0x27)
    r.pic.set_irq(3, True)
    assert r.pic.acknowledge() == 0x23


def test_icw_sequence_without_icw4() -> None:
    """Datasheet ICW1 IC4=0: no ICW4 is expected and its functions (AEOI, SFNM) are zero."""
    r = Rig()
    r.init(icw4_m=ICW4_AEOI)  # AEOI on first
    r.out(M_CMD, 0x10)  # ICW1: edge, cascade, no ICW4
    r.out(M_DATA, 0x20)  # ICW2
    r.out(M_DATA, 0x04)  # ICW3
    r.out(M_DATA, 0xF7)  # already OCW1
    assert r.inb(M_DATA) == 0xF7
    r.out(M_DATA, 0x00)
    r.pic.set_irq(4, True)
    assert r.pic.acknowledge() == 0x24
    assert r.read_isr(M_CMD) == 0x10  # AEOI was cleared by IC4=0


def test_single_mode_skips_icw3() -> None:
    """Datasheet ICW1 SNGL=1: there is no ICW3; ICW4 follows ICW2 directly."""
    r = Rig()
    r.out(M_CMD, 0x13)  # SNGL, IC4
    r.out(M_DATA, 0x40)  # ICW2
    r.out(M_DATA, ICW4_AEOI)  # ICW4 (would be ICW3 in cascade mode)
    r.out(M_DATA, 0x3C)  # OCW1
    assert r.inb(M_DATA) == 0x3C
    r.out(M_DATA, 0)
    r.pic.set_irq(6, True)
    assert r.pic.acknowledge() == 0x46
    assert r.read_isr(M_CMD) == 0  # AEOI came from the ICW4


def test_single_mode_without_icw4_takes_only_icw2() -> None:
    """Datasheet: SNGL=1, IC4=0 is the shortest sequence: ICW1 and ICW2 only."""
    r = Rig()
    r.out(M_CMD, 0x12)
    r.out(M_DATA, 0x50)
    r.out(M_DATA, 0x81)  # OCW1
    assert r.inb(M_DATA) == 0x81


def test_single_mode_master_answers_ir2_itself() -> None:
    """Datasheet, cascade mode: only with SNGL=0 does the master let a slave supply the vector
    for IR2; a single-mode master treats IR2 as an ordinary level."""
    r = Rig()
    r.init()
    r.out(M_CMD, 0x13)
    r.out(M_DATA, 0x08)
    r.out(M_DATA, ICW4_8086)
    r.pic.set_irq(11, True)
    assert r.pic.intr.level
    assert r.pic.acknowledge() == 0x0A
    assert r.read_isr(S_CMD) == 0  # the slave saw no INTA
    assert r.read_irr(S_CMD) == 0x08


def test_icw1_resets_mask_isr_priority_and_read_select(rig: Rig) -> None:
    """Datasheet ICW1 a)-e): edge sense reset, IMR cleared, IR7 lowest, SMM cleared,
    status read set to IRR (ISR is cleared too, as on QEMU, KVM and Bochs)."""
    rig.out(M_DATA, 0xF0)
    rig.out(M_CMD, 0xC3)  # OCW2 set priority: IR3 lowest
    rig.out(M_CMD, 0x68)  # OCW3 set SMM
    rig.pic.set_irq(1, True)
    assert rig.pic.acknowledge() == 0x09
    rig.out(M_CMD, 0x0B)  # read ISR
    rig.init()
    assert rig.inb(M_DATA) == 0
    assert rig.inb(M_CMD) == 0  # reads IRR again (and ISR/IRR are empty)
    assert rig.read_isr(M_CMD) == 0
    # IR7 lowest again: with IR0 and IR7 requesting IR0 wins.
    rig.pic.set_irq(7, True)
    rig.pic.set_irq(0, True)
    assert rig.pic.acknowledge() == 0x08


def test_icw1_edge_sense_reset_needs_new_rising_edge(rig: Rig) -> None:
    """Datasheet ICW1 a): after initialisation an IR input must make a low-to-high
    transition to generate an interrupt; a pending edge is dropped."""
    rig.out(M_DATA, 0xFF)
    rig.pic.set_irq(5, True)  # latched in IRR while masked
    assert rig.read_irr(M_CMD) == 0x20
    rig.init()
    assert rig.read_irr(M_CMD) == 0
    assert not rig.pic.intr.level
    rig.pic.set_irq(5, False)
    rig.pic.set_irq(5, True)
    assert rig.pic.acknowledge() == 0x0D


# -- OCW1 / OCW2 -------------------------------------------------------------------------
def test_ocw1_mask_holds_request_until_unmasked(rig: Rig) -> None:
    """Datasheet OCW1: a set mask bit inhibits its IR; the request stays in IRR."""
    rig.out(S_DATA, 0x40)
    rig.pic.set_irq(14, True)
    assert not rig.pic.intr.level
    assert rig.read_irr(S_CMD) == 0x40
    rig.out(S_DATA, 0x00)
    assert rig.pic.intr.level
    assert rig.pic.acknowledge() == 0x76


def test_masking_cascade_blocks_all_slave_irqs(rig: Rig) -> None:
    """Cascade: masking the master's IR2 masks every slave input."""
    rig.out(M_DATA, 0x04)
    rig.pic.set_irq(12, True)
    assert not rig.pic.intr.level
    rig.out(M_DATA, 0x00)
    assert rig.pic.acknowledge() == 0x74


def test_fully_nested_priority_order(rig: Rig) -> None:
    """Datasheet, fully nested mode: IR0 highest, IR7 lowest; slave IRQs 8-15 sit at IR2."""
    rig.out(M_DATA, 0xFF)
    rig.out(S_DATA, 0xFF)
    for irq in (7, 14, 3, 9, 1, 0, 15, 5):
        rig.pic.set_irq(irq, True)
    rig.out(M_DATA, 0x00)
    rig.out(S_DATA, 0x00)
    assert rig.ack_all() == [0x08, 0x09, 0x71, 0x76, 0x77, 0x0B, 0x0D, 0x0F]


def test_nesting_higher_interrupts_lower_not(rig: Rig) -> None:
    """Datasheet, fully nested mode: while IRn is in service, only higher levels interrupt."""
    rig.pic.set_irq(5, True)
    assert rig.pic.acknowledge() == 0x0D
    rig.pic.set_irq(6, True)
    assert not rig.pic.intr.level
    rig.pic.set_irq(3, True)
    assert rig.pic.intr.level
    assert rig.pic.acknowledge() == 0x0B
    assert rig.read_isr(M_CMD) == 0x28


def test_nonspecific_eoi_clears_highest_in_service(rig: Rig) -> None:
    """Datasheet OCW2 EOI: a non-specific EOI resets the highest-priority ISR bit."""
    rig.pic.set_irq(5, True)
    rig.pic.acknowledge()
    rig.pic.set_irq(3, True)
    rig.pic.acknowledge()
    rig.eoi()
    assert rig.read_isr(M_CMD) == 0x20
    rig.eoi()
    assert rig.read_isr(M_CMD) == 0
    rig.eoi()  # nothing in service: no effect
    assert rig.read_isr(M_CMD) == 0


def test_specific_eoi_only_clears_named_level(rig: Rig) -> None:
    """Datasheet OCW2 SL=1: a specific EOI resets the ISR bit given in L2-L0 only."""
    rig.pic.set_irq(4, True)
    rig.pic.acknowledge()
    rig.out(M_CMD, 0x63)
    assert rig.read_isr(M_CMD) == 0x10
    rig.out(M_CMD, 0x64)
    assert rig.read_isr(M_CMD) == 0


def test_eoi_unblocks_pending_lower_request(rig: Rig) -> None:
    """Datasheet: a lower request waits in IRR until the in-service level gets its EOI."""
    rig.pic.set_irq(3, True)
    rig.pic.acknowledge()
    rig.pic.set_irq(6, True)
    assert not rig.pic.intr.level
    rig.eoi()
    assert rig.pic.intr.level
    assert rig.pic.acknowledge() == 0x0E


def test_rotate_on_nonspecific_eoi(rig: Rig) -> None:
    """Datasheet, automatic rotation: after rotate-on-non-specific-EOI the serviced level
    becomes the lowest, so equal-priority devices take turns."""
    rig.pic.set_irq(5, True)
    rig.pic.acknowledge()
    rig.out(M_CMD, 0xA0)
    assert rig.read_isr(M_CMD) == 0
    # IR6 is now highest: 6,7,0,1,3,4,5.
    for irq in (4, 7, 6, 0):
        rig.pic.set_irq(irq, False)
        rig.pic.set_irq(irq, True)
    assert rig.ack_all() == [0x0E, 0x0F, 0x08, 0x0C]


def test_rotate_on_specific_eoi(rig: Rig) -> None:
    """Datasheet OCW2 R=1 SL=1 EOI=1: reset ISR bit L and make L the lowest priority."""
    rig.pic.set_irq(5, True)
    rig.pic.acknowledge()
    rig.out(M_CMD, 0xE4)  # different level: ISR untouched, but the priority rotates
    assert rig.read_isr(M_CMD) == 0x20
    rig.out(M_CMD, 0xE5)
    assert rig.read_isr(M_CMD) == 0
    rig.pic.set_irq(0, True)
    rig.pic.set_irq(7, True)
    assert rig.pic.acknowledge() == 0x0F  # IR6 highest, so IR7 beats IR0


def test_set_priority_command(rig: Rig) -> None:
    """Datasheet OCW2 set priority (R=1 SL=1 EOI=0): L2-L0 becomes the lowest level."""
    rig.out(M_CMD, 0xC4)  # IR4 lowest, IR5 highest
    rig.pic.set_irq(3, True)
    rig.pic.set_irq(6, True)
    assert rig.pic.acknowledge() == 0x0E
    rig.pic.set_irq(5, True)  # higher than in-service IR6 now: nests
    assert rig.pic.intr.level
    assert rig.pic.acknowledge() == 0x0D


def test_ocw2_noop_changes_nothing(rig: Rig) -> None:
    """Datasheet OCW2 R=0 SL=1 EOI=0 is a no-operation."""
    rig.pic.set_irq(3, True)
    rig.pic.acknowledge()
    before = rig.pic.save()
    rig.out(M_CMD, 0x45)
    assert rig.pic.save() == before


# -- AEOI --------------------------------------------------------------------------------
def test_automatic_eoi_leaves_isr_clear() -> None:
    """Datasheet, AEOI mode: the ISR bit is reset at the end of the last INTA pulse."""
    r = Rig()
    r.init(icw4_m=ICW4_AEOI, icw4_s=ICW4_AEOI)
    r.pic.set_irq(12, True)
    assert r.pic.acknowledge() == 0x74
    assert r.read_isr(M_CMD) == 0 and r.read_isr(S_CMD) == 0
    r.pic.set_irq(5, True)
    assert r.pic.intr.level  # no EOI needed for the next one


def test_rotate_in_automatic_eoi_mode() -> None:
    """Datasheet OCW2 R=1 SL=0 EOI=0 sets, R=0 clears rotate in AEOI mode: with it each
    acknowledged level becomes the lowest."""
    r = Rig()
    r.init(icw4_m=ICW4_AEOI)
    r.pic.set_irq(5, True)
    assert r.pic.acknowledge() == 0x0D
    r.pic.set_irq(0, True)
    r.pic.set_irq(7, True)
    assert r.pic.acknowledge() == 0x08  # not rotating: IR0 first
    r.out(M_CMD, 0x80)  # set rotate in AEOI
    assert r.pic.acknowledge() == 0x0F  # IR7 ...
    r.pic.set_irq(0, False)
    r.pic.set_irq(0, True)
    r.pic.set_irq(6, True)
    assert r.pic.acknowledge() == 0x08  # ... is now lowest: IR0 first, then IR6
    assert r.pic.acknowledge() == 0x0E
    r.out(M_CMD, 0x00)  # clear rotate in AEOI: IR6 stays lowest (IR7 highest)
    for irq in (7, 6):
        r.pic.set_irq(irq, False)
        r.pic.set_irq(irq, True)
    assert r.pic.acknowledge() == 0x0F
    assert r.pic.acknowledge() == 0x0E


def test_aeoi_slave_with_two_requests_delivers_both() -> None:
    """Cascade with AEOI: the slave's INT drops during its INTA and rises again for its next
    request, giving the master a new IR2 edge."""
    r = Rig()
    r.init(icw4_m=ICW4_AEOI, icw4_s=ICW4_AEOI)
    r.pic.set_irq(10, True)
    r.pic.set_irq(13, True)
    assert r.pic.acknowledge() == 0x72
    assert r.pic.intr.level
    assert r.pic.acknowledge() == 0x75
    assert not r.pic.intr.level


# -- OCW3 --------------------------------------------------------------------------------
def test_ocw3_read_register_selection_is_remembered(rig: Rig) -> None:
    """Datasheet OCW3 RR/RIS: A0=0 reads IRR or ISR; the choice holds until changed, an OCW3
    with RR=0 keeps it, and A0=1 always reads IMR."""
    rig.pic.set_irq(5, True)
    rig.pic.set_irq(4, True)
    assert rig.pic.acknowledge() == 0x0C
    rig.out(M_DATA, 0x81)
    assert rig.read_irr(M_CMD) == 0x20
    assert rig.inb(M_CMD) == 0x20
    assert rig.read_isr(M_CMD) == 0x10
    assert rig.inb(M_CMD) == 0x10
    rig.out(M_CMD, 0x08)  # OCW3 with RR=0: no change
    assert rig.inb(M_CMD) == 0x10
    assert rig.inb(M_DATA) == 0x81


def test_poll_command_acknowledges_on_next_read(rig: Rig) -> None:
    """Datasheet, poll command: the next read returns 1000_0WWW (I=1, W=highest level) and
    acts as the interrupt acknowledge; with no request it returns I=0."""
    rig.out(M_DATA, 0x00)
    rig.pic.set_irq(5, True)
    rig.pic.set_irq(6, True)
    rig.out(M_CMD, 0x0C)
    assert rig.inb(M_CMD) == 0x85
    assert rig.read_isr(M_CMD) == 0x20
    assert rig.read_irr(M_CMD) == 0x40
    rig.eoi()
    rig.out(M_CMD, 0x0C)
    assert rig.inb(M_DATA) == 0x86  # either port answers the poll
    assert rig.inb(M_DATA) == 0x00  # poll is one-shot: IMR again
    rig.eoi()
    rig.out(M_CMD, 0x0C)
    assert rig.inb(M_CMD) == 0x00
    assert not rig.pic.intr.level


def test_poll_cascade_master_then_slave(rig: Rig) -> None:
    """Datasheet, poll in cascade: the master reports IR2, then the slave is polled."""
    rig.pic.set_irq(11, True)
    rig.out(M_CMD, 0x0C)
    assert rig.inb(M_CMD) == 0x82
    rig.out(S_CMD, 0x0C)
    assert rig.inb(S_CMD) == 0x83
    assert rig.read_isr(S_CMD) == 0x08 and rig.read_isr(M_CMD) == 0x04
    assert not rig.pic.intr.level


def test_special_mask_mode_enables_lower_levels(rig: Rig) -> None:
    """Datasheet, special mask mode: masking the in-service level enables all other
    unmasked levels, lower ones included; leaving SMM restores nesting."""
    rig.pic.set_irq(3, True)
    assert rig.pic.acknowledge() == 0x0B
    rig.pic.set_irq(6, True)
    assert not rig.pic.intr.level
    rig.out(M_DATA, 0x08)  # mask IR3 (in service)
    assert not rig.pic.intr.level  # plain masking does not lift the ISR block
    rig.out(M_CMD, 0x68)  # OCW3 ESMM=1 SMM=1
    assert rig.pic.intr.level
    rig.out(M_CMD, 0x48)  # ESMM=1 SMM=0
    assert not rig.pic.intr.level
    rig.out(M_CMD, 0x28)  # ESMM=0: SMM bit ignored
    assert not rig.pic.intr.level
    rig.out(M_CMD, 0x68)
    assert rig.pic.acknowledge() == 0x0E
    assert rig.read_isr(M_CMD) == 0x48


def test_nonspecific_eoi_in_special_mask_mode_skips_masked(rig: Rig) -> None:
    """Datasheet: in special mask mode an IS bit masked by IMR is not cleared by a
    non-specific EOI."""
    rig.pic.set_irq(3, True)
    rig.pic.acknowledge()
    rig.out(M_DATA, 0x08)
    rig.out(M_CMD, 0x68)
    rig.pic.set_irq(6, True)
    rig.pic.acknowledge()
    rig.eoi()
    assert rig.read_isr(M_CMD) == 0x08
    rig.eoi()
    assert rig.read_isr(M_CMD) == 0x08
    rig.out(M_CMD, 0x63)  # the specific EOI does it
    assert rig.read_isr(M_CMD) == 0


def test_special_fully_nested_mode_lets_higher_slave_irq_through() -> None:
    """Datasheet SFNM: with a slave level in service the master still accepts a higher
    request from that slave (the slave resolves priority among its own inputs)."""
    r = Rig()
    r.init(icw4_m=ICW4_SFNM)
    r.pic.set_irq(12, True)
    assert r.pic.acknowledge() == 0x74
    r.pic.set_irq(13, True)  # lower on the slave: still blocked by the slave's ISR
    assert not r.pic.intr.level
    r.pic.set_irq(8, True)
    assert r.pic.intr.level
    assert r.pic.acknowledge() == 0x70
    assert r.read_isr(S_CMD) == 0x11 and r.read_isr(M_CMD) == 0x04


def test_special_fully_nested_mode_keeps_lower_master_levels_blocked() -> None:
    """Datasheet SFNM: only the slave's own level is exempt; IR3-7 still wait for IR2."""
    r = Rig()
    r.init(icw4_m=ICW4_SFNM)
    r.pic.set_irq(12, True)
    r.pic.acknowledge()
    r.pic.set_irq(5, True)
    assert not r.pic.intr.level
    r.pic.set_irq(1, True)
    assert r.pic.acknowledge() == 0x09


def test_special_fully_nested_exit_checks_slave_isr() -> None:
    """Datasheet SFNM b): on exit, EOI the slave and read its ISR; only when it is empty is
    the master's EOI due, and until then the master's IR2 stays in service."""
    r = Rig()
    r.init(icw4_m=ICW4_SFNM)
    r.pic.set_irq(12, True)
    r.pic.acknowledge()
    r.pic.set_irq(9, True)
    assert r.pic.acknowledge() == 0x71
    r.eoi(S_CMD)
    assert r.read_isr(S_CMD) == 0x10  # IRQ12 still in service: no master EOI yet
    r.pic.set_irq(5, True)
    assert not r.pic.intr.level  # IR5 is below the in-service IR2
    r.eoi(S_CMD)
    assert r.read_isr(S_CMD) == 0
    r.eoi(M_CMD)
    assert r.pic.acknowledge() == 0x0D


def test_without_sfnm_slave_is_locked_out(rig: Rig) -> None:
    """Datasheet, fully nested mode in cascade: while IR2 is in service the master blocks
    further slave requests, even higher ones, until its EOI."""
    rig.pic.set_irq(12, True)
    assert rig.pic.acknowledge() == 0x74
    rig.pic.set_irq(8, True)
    assert not rig.pic.intr.level
    assert rig.read_irr(M_CMD) == 0x04
    rig.eoi(S_CMD)
    rig.eoi(M_CMD)
    assert rig.pic.acknowledge() == 0x70


# -- triggering, cascade, spurious ----------------------------------------------------------
def test_edge_mode_needs_rising_edge(rig: Rig) -> None:
    """Datasheet, edge triggered mode: a request is a low-to-high transition; the input may
    stay high without generating another interrupt."""
    rig.pic.set_irq(4, True)
    rig.pic.set_irq(4, True)
    assert rig.pic.acknowledge() == 0x0C
    rig.eoi()
    assert not rig.pic.intr.level
    rig.pic.set_irq(4, False)
    assert not rig.pic.intr.level
    rig.pic.set_irq(4, True)
    assert rig.pic.acknowledge() == 0x0C


def test_edge_request_survives_pulse(rig: Rig) -> None:
    """An edge request is latched in IRR, so a device that pulses its line is not lost."""
    rig.out(M_DATA, 0x10)
    rig.pic.set_irq(4, True)
    rig.pic.set_irq(4, False)
    rig.out(M_DATA, 0x00)
    assert rig.pic.acknowledge() == 0x0C


def test_level_mode_follows_line_and_rerequests_after_eoi(rig: Rig) -> None:
    """Datasheet, level triggered mode: IRR follows the input; a still-high input
    requests again after EOI; acknowledge does not clear a level request."""
    rig.out(ELCR1, 0x10)
    rig.pic.set_irq(4, True)
    assert rig.pic.acknowledge() == 0x0C
    assert rig.read_irr(M_CMD) == 0x10
    rig.eoi()
    assert rig.pic.intr.level
    assert rig.pic.acknowledge() == 0x0C
    rig.pic.set_irq(4, False)
    assert rig.read_irr(M_CMD) == 0
    rig.eoi()
    assert not rig.pic.intr.level


def test_spurious_irq7_when_request_vanishes(rig: Rig) -> None:
    """Datasheet: if the IR input goes away before the INTA cycle, the 8259A answers IR7
    by default, and no ISR bit is set."""
    rig.out(ELCR1, 0x20)
    rig.pic.set_irq(5, True)
    assert rig.intr_changes == [True]
    rig.pic.set_irq(5, False)
    assert rig.intr_changes == [True, False]
    assert rig.pic.acknowledge() == 0x0F
    assert rig.read_isr(M_CMD) == 0


def test_spurious_irq7_after_mask_race(rig: Rig) -> None:
    """A request masked between INTR and INTA also gives the IR7 default vector."""
    rig.pic.set_irq(3, True)
    rig.out(M_DATA, 0x08)
    assert not rig.pic.intr.level
    assert rig.pic.acknowledge() == 0x0F
    rig.out(M_DATA, 0x00)
    assert rig.pic.acknowledge() == 0x0B  # the edge is still latched


def test_spurious_irq15_sets_master_isr2(rig: Rig) -> None:
    """Cascade: the master latched the slave's edge on IR2, but the slave's request left
    before INTA: the slave answers its IR7 default (IRQ15) and the master's ISR bit 2 is
    set, so the handler must EOI the master only (what Linux does)."""
    rig.out(ELCR2, 0x04)  # IRQ10 level
    rig.pic.set_irq(10, True)
    rig.pic.set_irq(10, False)
    assert rig.read_irr(M_CMD) == 0x04
    assert rig.pic.intr.level
    assert rig.pic.acknowledge() == 0x77
    assert rig.read_isr(M_CMD) == 0x04 and rig.read_isr(S_CMD) == 0
    rig.eoi(M_CMD)
    assert not rig.pic.intr.level


def test_cascade_acknowledge_sets_both_isrs(rig: Rig) -> None:
    """Cascade: slave INT drives master IR2; INTA sets ISR2 on the master and the slave's
    level in its own ISR, and the vector comes from the slave."""
    rig.pic.set_irq(12, True)
    assert rig.read_irr(M_CMD) == 0x04
    assert rig.read_irr(S_CMD) == 0x10
    assert rig.pic.acknowledge() == 0x74
    assert rig.read_irr(S_CMD) == 0 and rig.read_isr(S_CMD) == 0x10
    assert rig.read_isr(M_CMD) == 0x04
    rig.eoi(M_CMD)
    rig.out(S_CMD, 0xA0)  # rotate on non-specific EOI on the slave
    assert rig.read_isr(M_CMD) == 0 and rig.read_isr(S_CMD) == 0
    rig.pic.set_irq(8, True)
    rig.pic.set_irq(13, False)
    rig.pic.set_irq(13, True)
    assert rig.pic.acknowledge() == 0x75  # IR5 on the slave now highest


def test_intr_output_transitions(rig: Rig) -> None:
    """INTR goes high with a deliverable request and low when INTA takes it."""
    rig.pic.set_irq(1, True)
    rig.pic.acknowledge()
    rig.eoi()
    assert rig.intr_changes == [True, False]


def test_acknowledge_with_nothing_pending_is_spurious_and_harmless(rig: Rig) -> None:
    before = rig.pic.save()
    assert rig.pic.acknowledge() == 0x0F
    assert rig.pic.save() == before


def test_irq2_is_not_an_input_and_bad_irq_numbers_raise(rig: Rig) -> None:
    """IRQ 2 is the cascade, not an ISA line; numbers outside 0-15 are host bugs."""
    rig.pic.set_irq(2, True)
    assert not rig.pic.intr.level
    with pytest.raises(ValueError):
        rig.pic.set_irq(16, True)


def test_guest_oddities_are_logged_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    """HACKING: guest-triggered oddities are logged through the rate limiter, never raised."""
    r = Rig()
    with caplog.at_level(logging.DEBUG, logger="southbridge.pic"):
        for _ in range(100):
            r.out(M_CMD, 0x19)  # ICW1 with LTIM, which the PIIX ignores
            r.out(ELCR1, 0x07)  # reserved ELCR bits
    ltim = [rec for rec in caplog.records if "LTIM" in rec.getMessage()]
    elcr = [rec for rec in caplog.records if "reserved" in rec.getMessage()]
    assert 1 <= len(ltim) <= 10 and 1 <= len(elcr) <= 10
    assert r.pic.log.suppressed >= 180
    assert r.bus.faults == 0


def test_word_access_splits_into_byte_registers(rig: Rig) -> None:
    """The PIC decodes 8-bit accesses; a 16-bit IN at 20h reads IRR and then IMR."""
    rig.out(M_DATA, 0xC3)
    rig.pic.set_irq(6, True)
    assert rig.bus.read(M_CMD, 2) == 0xC340


def test_reset_returns_to_power_on_state(rig: Rig) -> None:
    """PIIX reset: ELCR 00h, both 8259As uninitialised (IMR 0, ISR 0, vector base 0)."""
    rig.out(ELCR1, 0xF8)
    rig.out(M_DATA, 0x55)
    rig.pic.set_irq(4, True)
    rig.pic.acknowledge()
    rig.pic.reset()
    state = rig.pic.save()
    assert state["master"]["lines"] == 0x10  # the wire is still driven high
    state["master"]["lines"] = 0
    assert state == PicPair().save()
    assert rig.inb(ELCR1) == 0
    assert rig.inb(M_DATA) == 0
    assert not rig.pic.intr.level


# -- state -------------------------------------------------------------------------------
def busy_rig() -> Rig:
    r = Rig()
    r.init(icw4_m=ICW4_SFNM)
    r.out(ELCR2, 0x0C)
    r.out(M_CMD, 0xC5)
    r.pic.set_irq(11, True)
    r.pic.set_irq(4, True)
    r.pic.acknowledge()
    r.out(S_CMD, 0x0B)
    r.out(M_DATA, 0x80)
    return r


def test_save_restore_round_trip_continues_identically() -> None:
    """State: a restored pair answers exactly like the original from then on."""
    a = busy_rig()
    state = json.loads(json.dumps(a.pic.save()))  # plain data
    b = Rig()
    b.pic.restore(state)
    assert b.pic.save() == a.pic.save()
    assert b.pic.intr.level == a.pic.intr.level
    for r in (a, b):
        r.pic.set_irq(9, True)
        r.out(ELCR2, 0x00)
        r.out(M_DATA, 0x00)
    served = a.ack_all()
    assert served and served == b.ack_all()
    assert a.pic.save() == b.pic.save()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("kind",), "i8254"),
        (("version",), 99),
        (("master", "irr"), 256),
        (("master", "imr"), -1),
        (("master", "prio"), 8),
        (("master", "aeoi"), 1),
        (("slave", "base"), 0x71),
        (("master", "elcr"), 0x01),
        (("slave", "elcr"), 0x20),
        (("slave", "init_step"), 4),
        (("master", "lines"), 0x14),
        (("slave", "irr"), 0x00),
        (("master",), None),
    ],
)
def test_restore_rejects_impossible_states(path: tuple[str, ...], value: Any) -> None:
    """State: restore validates everything (read-only ELCR bits, a level IRR that differs
    from its line, a master IR2 that differs from the slave's INT, bad ranges, versions)."""
    a = busy_rig()
    state = copy.deepcopy(a.pic.save())
    node: Any = state
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    b = Rig()
    fresh = b.pic.save()
    with pytest.raises(StateError):
        b.pic.restore(state)
    assert b.pic.save() == fresh  # nothing half-applied


def test_restore_rejects_init_step_inconsistent_with_icw1() -> None:
    """State: a chip cannot wait for ICW3 in single mode nor for ICW4 it did not ask for."""
    for fields in ({"init_step": 2, "single": True}, {"init_step": 3, "need_icw4": False}):
        state = Rig().pic.save()
        state["slave"].update(fields)
        with pytest.raises(StateError):
            PicPair().restore(state)


# -- Hypothesis --------------------------------------------------------------------------
_CMD_WORDS = st.sampled_from(
    [
        0x11,
        0x10,
        0x13,
        0x12,
        0x19,
        0x20,
        0x60,
        0x63,
        0xA0,
        0xE2,
        0xC3,
        0x80,
        0x00,
        0x40,
        0x0A,
        0x0B,
        0x0C,
        0x0E,
        0x68,
        0x48,
    ]
)
_OPS = st.one_of(
    st.tuples(st.just("out"), st.sampled_from([M_CMD, S_CMD]), _CMD_WORDS | st.integers(0, 255)),
    st.tuples(
        st.just("out"),
        st.sampled_from([M_DATA, S_DATA, ELCR1, ELCR2]),
        st.sampled_from([0x00, 0x08, 0x70, 0x04, 0x02, 0x01, 0x03, 0x11, 0xFF])
        | st.integers(0, 255),
    ),
    st.tuples(st.just("in"), st.sampled_from(PORTS), st.just(0)),
    st.tuples(st.just("irq"), st.integers(0, 15), st.integers(0, 1)),
    st.tuples(st.just("ack"), st.just(0), st.just(0)),
    st.tuples(st.just("reset"), st.just(0), st.just(0)),
)
_SEQ = st.lists(_OPS, max_size=60)


Op = tuple[str, int, int]


def apply(r: Rig, op: Op) -> int | None:
    kind, a, b = op
    if kind == "out":
        r.out(a, b)
    elif kind == "in":
        return r.inb(a)
    elif kind == "irq":
        r.pic.set_irq(a, bool(b))
    elif kind == "ack":
        return r.pic.acknowledge()
    else:
        r.pic.reset()
    return None


def check_invariants(pic: PicPair) -> None:
    m, s = pic.master, pic.slave
    for chip in (m, s):
        for v in (chip.irr, chip.imr, chip.isr, chip.lines, chip.elcr):
            assert 0 <= v <= 0xFF
        assert chip.elcr & ~chip.elcr_mask == 0  # PIIX read-only ELCR bits
        assert (chip.irr ^ chip.lines) & chip.elcr == 0  # level IRR follows the line
        assert chip.base & 7 == 0 and 0 <= chip.prio <= 7
    assert bool(m.lines & 4) == (s.pending() is not None)  # IR2 is the slave's INT
    assert pic.intr.level == (m.pending() is not None)
    PicPair().restore(pic.save())  # every reachable state is a valid state


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_SEQ)
def test_any_access_sequence_never_raises_and_keeps_invariants(ops: list[Op]) -> None:
    """Any port access, IRQ change, INTA or reset in any order: no exception, invariants."""
    r = Rig()
    for op in ops:
        v = apply(r, op)
        assert v is None or 0 <= v <= 0xFF
        check_invariants(r.pic)
    assert r.bus.faults == 0  # the device never raised into the bus


@settings(max_examples=100, deadline=None)
@given(_SEQ, _SEQ)
def test_save_restore_round_trip_at_any_point(prefix: list[Op], suffix: list[Op]) -> None:
    """State: save at any point, restore into a fresh pair; both then answer identically."""
    a = Rig()
    for op in prefix:
        apply(a, op)
    b = Rig()
    b.pic.restore(json.loads(json.dumps(a.pic.save())))
    assert b.pic.save() == a.pic.save() and b.pic.intr.level == a.pic.intr.level
    for op in suffix:
        assert apply(a, op) == apply(b, op)
    assert b.pic.save() == a.pic.save()


@settings(max_examples=100, deadline=None)
@given(_SEQ, st.sampled_from(["master", "slave"]), st.data())
def test_restore_of_corrupted_state_raises_only_state_error(
    prefix: list[Op], chip: str, data: st.DataObject
) -> None:
    """State: a tampered state either restores to exactly what it says or raises StateError."""
    a = Rig()
    for op in prefix:
        apply(a, op)
    state = a.pic.save()
    key = data.draw(st.sampled_from(sorted(state[chip])))
    state[chip][key] = data.draw(
        st.one_of(st.integers(-2, 300), st.booleans(), st.none(), st.text(max_size=2))
    )
    b = PicPair()
    try:
        b.restore(state)
    except StateError:
        return
    assert b.save() == state
    check_invariants(b)


_PC_ORDER = [0, 1, 8, 9, 10, 11, 12, 13, 14, 15, 3, 4, 5, 6, 7]


@settings(max_examples=60, deadline=None)
@given(st.permutations(_PC_ORDER), st.integers(1, 15), st.booleans())
def test_fully_nested_order_for_any_request_set(order: list[int], n: int, aeoi: bool) -> None:
    """Fully nested mode in cascade: whatever order requests arrive in, they are served
    0, 1, 8-15, 3-7 (the PC's IRQ priority)."""
    r = Rig()
    r.init(icw4_m=ICW4_AEOI if aeoi else ICW4_8086, icw4_s=ICW4_AEOI if aeoi else ICW4_8086)
    r.out(M_DATA, 0xFF)
    for irq in order[:n]:
        r.pic.set_irq(irq, True)
    r.out(M_DATA, 0x00)
    want = [(0x08 + i) if i < 8 else (0x70 + i - 8) for i in _PC_ORDER if i in order[:n]]
    assert r.ack_all() == want


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 7), st.sets(st.sampled_from([0, 1, 3, 4, 5, 6, 7]), min_size=1))
def test_set_priority_order_for_any_lowest_level(lowest: int, irqs: set[int]) -> None:
    """Datasheet OCW2 set priority: after naming L the lowest, priority runs L+1 ... L."""
    r = Rig()
    r.init(icw4_m=ICW4_AEOI)
    r.out(M_DATA, 0xFF)
    r.out(M_CMD, 0xC0 | lowest)
    for irq in irqs:
        r.pic.set_irq(irq, True)
    r.out(M_DATA, 0x04)  # keep the cascade out of it
    want = [0x08 + i for i in sorted(irqs, key=lambda i: (i - lowest - 1) & 7)]
    assert r.ack_all() == want
