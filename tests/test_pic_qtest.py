"""The 8259A pair and ELCR in the pc machine, driven over the qtest protocol like a guest.

Port I/O programs the chips, `set_irq_in` drives ISA IRQs (GSIs) and `irq_intercept_out
i8259` reports the INTR line to the CPU. The poll command (8259A datasheet, "Poll command")
stands in for the CPU's INTA cycle, since qtest has no CPU.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.machine.pc import PcMachine
from southbridge.qtest.server import QtestSession
from tests.qtesting import ask


def session() -> tuple[QtestSession, list[str], PcMachine]:
    out: list[str] = []
    m = PcMachine(with_ram=False)
    return QtestSession(m, out.append), out, m


def bios_init(s: QtestSession, out: list[str]) -> None:
    """SeaBIOS/Linux style: master vectors 0x08, slave 0x70, cascade on IR2, 8086 mode."""
    for line in (
        "outb 0x20 0x11",
        "outb 0x21 0x08",
        "outb 0x21 0x04",
        "outb 0x21 0x01",
        "outb 0xa0 0x11",
        "outb 0xa1 0x70",
        "outb 0xa1 0x02",
        "outb 0xa1 0x01",
    ):
        assert ask(s, out, line) == "OK\n"


def test_elcr_at_4d0_with_piix_read_only_bits() -> None:
    """PIIX3 ELCR1/ELCR2: reset 00h; IRQ 0, 1, 2, 8 and 13 stay edge (bits read 0)."""
    s, out, _ = session()
    assert ask(s, out, "inw 0x4d0") == "OK 0x0000\n"
    assert ask(s, out, "outw 0x4d0 0xffff") == "OK\n"
    assert ask(s, out, "inb 0x4d0") == "OK 0x00f8\n"
    assert ask(s, out, "inb 0x4d1") == "OK 0x00de\n"
    assert ask(s, out, "inw 0x4d0") == "OK 0xdef8\n"


def test_imr_reads_back_and_pic_ports_decode() -> None:
    """8259A OCW1 at A0=1 reads back; both chips answer at 0x20/0x21 and 0xA0/0xA1."""
    s, out, _ = session()
    bios_init(s, out)
    assert ask(s, out, "outb 0x21 0xb8") == "OK\n"
    assert ask(s, out, "outb 0xa1 0x8e") == "OK\n"
    assert ask(s, out, "inb 0x21") == "OK 0x00b8\n"
    assert ask(s, out, "inb 0xa1") == "OK 0x008e\n"


def test_irq_raises_intr_and_poll_acknowledges() -> None:
    """An edge on ISA IRQ1 raises INTR; the poll read returns 0x81, sets ISR1 and drops INTR;
    EOI clears ISR."""
    s, out, _ = session()
    bios_init(s, out)
    assert ask(s, out, "irq_intercept_out i8259") == "OK\n"
    assert ask(s, out, "set_irq_in ioapic unnamed-gpio-in 1 1") == "IRQ raise 0\nOK\n"
    assert ask(s, out, "outb 0x20 0x0a") == "OK\n"
    assert ask(s, out, "inb 0x20") == "OK 0x0002\n"
    assert ask(s, out, "outb 0x20 0x0c") == "OK\n"
    assert ask(s, out, "inb 0x20") == "IRQ lower 0\nOK 0x0081\n"
    assert ask(s, out, "outb 0x20 0x0b") == "OK\n"
    assert ask(s, out, "inb 0x20") == "OK 0x0002\n"
    assert ask(s, out, "outb 0x20 0x20") == "OK\n"
    assert ask(s, out, "inb 0x20") == "OK 0x0000\n"


def test_cascade_through_the_slave() -> None:
    """IRQ12 reaches the CPU through the slave's INT on master IR2; the master's poll
    reports IR2 (0x82), the slave's poll its IR4 (0x84)."""
    s, out, _ = session()
    bios_init(s, out)
    ask(s, out, "irq_intercept_out i8259")
    assert ask(s, out, "set_irq_in ioapic unnamed-gpio-in 12 1") == "IRQ raise 0\nOK\n"
    ask(s, out, "outb 0x20 0x0a")
    assert ask(s, out, "inb 0x20") == "OK 0x0004\n"
    ask(s, out, "outb 0xa0 0x0a")
    assert ask(s, out, "inb 0xa0") == "OK 0x0010\n"
    ask(s, out, "outb 0x20 0x0c")
    assert ask(s, out, "inb 0x20") == "IRQ lower 0\nOK 0x0082\n"
    ask(s, out, "outb 0xa0 0x0c")
    assert ask(s, out, "inb 0xa0") == "OK 0x0084\n"
    ask(s, out, "outb 0xa0 0x0b")
    assert ask(s, out, "inb 0xa0") == "OK 0x0010\n"


def test_mask_and_unmask_move_intr() -> None:
    """8259A OCW1: masking the pending level drops INTR, unmasking raises it again."""
    s, out, _ = session()
    bios_init(s, out)
    ask(s, out, "irq_intercept_out i8259")
    assert ask(s, out, "set_irq_in ioapic unnamed-gpio-in 5 1") == "IRQ raise 0\nOK\n"
    assert ask(s, out, "outb 0x21 0x20") == "IRQ lower 0\nOK\n"
    assert ask(s, out, "outb 0x21 0x00") == "IRQ raise 0\nOK\n"


def test_level_irq_via_elcr_rerequests_until_line_drops() -> None:
    """PIIX ELCR level mode: a still-high line requests again after EOI; lowering the line
    withdraws the slave's request."""
    s, out, m = session()
    bios_init(s, out)
    ask(s, out, "irq_intercept_out i8259")
    ask(s, out, "outb 0x4d1 0x08")  # IRQ11 level triggered
    assert ask(s, out, "set_irq_in i8259 unnamed-gpio-in 11 1") == "IRQ raise 0\nOK\n"
    ask(s, out, "outb 0x20 0x0c")
    assert ask(s, out, "inb 0x20") == "IRQ lower 0\nOK 0x0082\n"
    ask(s, out, "outb 0xa0 0x0c")
    assert ask(s, out, "inb 0xa0") == "OK 0x0083\n"
    assert ask(s, out, "outb 0xa0 0x20") == "OK\n"
    assert ask(s, out, "outb 0x20 0x20") == "IRQ raise 0\nOK\n"
    # The master latched that edge on IR2, so a request withdrawn now leaves INTR up and the
    # INTA finds nothing on the slave: spurious IRQ15 (the slave's IR7 default vector).
    assert ask(s, out, "set_irq_in i8259 unnamed-gpio-in 11 0") == "OK\n"
    assert m.pic.acknowledge() == 0x77
    assert out[-1] == "IRQ lower 0\n"


def test_edge_irq_held_high_does_not_repeat() -> None:
    """8259A edge mode: after EOI a line that stayed high makes no new request."""
    s, out, _ = session()
    bios_init(s, out)
    ask(s, out, "irq_intercept_out i8259")
    ask(s, out, "set_irq_in ioapic unnamed-gpio-in 6 1")
    ask(s, out, "outb 0x20 0x0c")
    assert ask(s, out, "inb 0x21") == "IRQ lower 0\nOK 0x0086\n"
    assert ask(s, out, "outb 0x20 0x66") == "OK\n"  # specific EOI for IR6
    assert ask(s, out, "set_irq_in ioapic unnamed-gpio-in 6 0") == "OK\n"
    assert ask(s, out, "set_irq_in ioapic unnamed-gpio-in 6 1") == "IRQ raise 0\nOK\n"


def test_poll_without_request_reads_zero() -> None:
    """8259A poll command: with no request pending the poll word has I=0."""
    s, out, _ = session()
    bios_init(s, out)
    ask(s, out, "outb 0x20 0x0c")
    assert ask(s, out, "inb 0x20") == "OK 0x0000\n"


def test_device_gsi_input_reaches_pic() -> None:
    """A device's own GSI input line (wired-OR) drives the PIC pin of its ISA IRQ."""
    s, out, m = session()
    bios_init(s, out)
    line = m.gsi.input(7, "test-device")
    line.raise_()
    assert m.pic.intr.level
    assert m.pic.acknowledge() == 0x0F
    assert m.pic.master.isr == 0x80


_PIC_PORTS = ["0x20", "0x21", "0xa0", "0xa1", "0x4d0", "0x4d1"]
_LINES = st.one_of(
    st.builds("outb {} 0x{:x}".format, st.sampled_from(_PIC_PORTS), st.integers(0, 255)),
    st.builds("inb {}".format, st.sampled_from(_PIC_PORTS)),
    st.builds("inw {}".format, st.sampled_from(["0x20", "0xa0", "0x4d0"])),
    st.builds(
        "set_irq_in ioapic unnamed-gpio-in {} {}".format, st.integers(0, 15), st.integers(0, 1)
    ),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_LINES, max_size=40))
def test_any_qtest_script_answers_ok_and_reports_intr_faithfully(lines: list[str]) -> None:
    """Any guest port sequence and IRQ activity: every command answers OK, and the IRQ
    raise/lower reports always match the INTR line's level."""
    s, out, m = session()
    assert ask(s, out, "irq_intercept_out i8259") == "OK\n"
    level = m.pic.intr.level  # the PIT's OUT0 may already have latched IRQ0 at power-on
    for line in lines:
        answer = ask(s, out, line)
        for event in re.findall(r"IRQ (raise|lower) 0\n", answer):
            assert (event == "raise") != level  # alternating, never repeated
            level = event == "raise"
        assert answer.rsplit("\n", 2)[-2].startswith("OK")
        assert level == m.pic.intr.level
    assert m.ports.faults == 0
