"""The RTC through the qtest protocol on the pc machine, exactly as a guest drives it.

Scenarios follow the MC146818A datasheet ("DS") and the shape of QEMU's
tests/qtest/rtc-test.c (set the time in divider reset, step the clock, read back).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.machine.pc import PcConfig, PcMachine
from southbridge.qtest.server import QtestSession

NS = 1_000_000_000
UIP_HOLD = 8 * NS // 32768  # 244,140 ns: UIP rises 8 time-base cycles before an update (DS)
A, B, C, D = 0x0A, 0x0B, 0x0C, 0x0D
SEC, SEC_AL, MIN, MIN_AL, HOUR, HOUR_AL = 0, 1, 2, 3, 4, 5
MDAY, MON, YEAR, CENTURY = 7, 8, 9, 0x32
SET, PIE, AIE, UIE, DM, H24 = 0x80, 0x40, 0x20, 0x10, 0x04, 0x02


class Guest:
    """A qtest session on a pc machine with IRQ lines intercepted at the IOAPIC."""

    def __init__(self, base: str = "2011-02-02T02:04:58") -> None:
        self.machine = PcMachine(PcConfig(rtc_base=base))
        self.out: list[str] = []
        self.session = QtestSession(self.machine, self.out.append)
        assert self.cmd("irq_intercept_in ioapic") == "OK"

    def cmd(self, line: str) -> str:
        """Send one command; return its answer, keeping IRQ8 notifications in `events` (the
        PIT's IRQ0 and other lines are reported too, but are not the RTC's)."""
        self.out.clear()
        self.session.handle(line)
        self.events = [x.strip() for x in self.out if x.startswith("IRQ") and x.split()[2] == "8"]
        answers = [x.strip() for x in self.out if not x.startswith("IRQ")]
        assert len(answers) == 1, self.out
        return answers[0]

    def read(self, reg: int) -> int:
        assert self.cmd(f"outb 0x70 0x{reg:x}") == "OK"
        answer = self.cmd("inb 0x71")
        assert answer.startswith("OK ")
        return int(answer[3:], 16)

    def write(self, reg: int, value: int) -> None:
        assert self.cmd(f"outb 0x70 0x{reg:x}") == "OK"
        assert self.cmd(f"outb 0x71 0x{value:x}") == "OK"

    def step(self, ns: int) -> list[str]:
        assert self.cmd(f"clock_step {ns}").startswith("OK")
        return self.events

    def set_time(self, mode: int, h: int, m: int, s: int) -> None:
        """Set the time with the divider held in reset, as rtc-test.c's set_time() does."""
        self.write(B, mode)
        self.write(A, 0x76)
        self.write(HOUR, h)
        self.write(MIN, m)
        self.write(SEC, s)
        self.write(A, 0x26)

    def hms(self) -> tuple[int, int, int]:
        return self.read(HOUR), self.read(MIN), self.read(SEC)


def test_register_values_after_reset() -> None:
    # Issue 3 "done when": after reset A reads 0x26, B 0x02, D 0x80 (QEMU's values).
    g = Guest()
    assert g.cmd("outb 0x70 0xa") == "OK"
    assert g.cmd("inb 0x71") == "OK 0x0026"
    assert g.read(B) == 0x02 and g.read(C) == 0x00 and g.read(D) == 0x80
    assert (g.read(YEAR), g.read(MON), g.read(MDAY), g.read(CENTURY)) == (0x11, 0x02, 0x02, 0x20)
    assert g.hms() == (0x02, 0x04, 0x58)


def test_nmi_mask_bit_is_kept_for_the_machine() -> None:
    g = Guest()
    g.cmd("outb 0x70 0x8d")
    assert g.machine.rtc.nmi_masked and g.cmd("inb 0x71") == "OK 0x0080"
    g.cmd("outb 0x70 0x0d")
    assert not g.machine.rtc.nmi_masked


def test_nvram_preset_by_the_machine_and_second_bank() -> None:
    g = Guest()
    g.machine.rtc.cmos_set(0x5F, 0x03)  # e.g. CPU count - 1, filled by the machine
    g.machine.rtc.cmos_set(0x80 + 0x10, 0xAB)
    assert g.read(0x5F) == 0x03
    assert g.cmd("outb 0x72 0x10") == "OK" and g.cmd("inb 0x73") == "OK 0x00ab"
    assert g.cmd("outb 0x73 0x42") == "OK"
    assert g.machine.rtc.nvram_bytes()[0x90] == 0x42


def test_basic_12_hour_bcd() -> None:
    # DS: 12-hour BCD hours are 0x01-0x12 with bit 7 = PM. The divider restarts half a
    # second before its first update, so one second later the clock has moved once.
    g = Guest()
    g.set_time(0, 0x81, 0x59, 0x00)
    g.step(NS)
    assert g.hms() == (0x81, 0x59, 0x01)
    g.step(59 * NS)
    assert g.hms() == (0x82, 0x00, 0x00)
    for before, after in ((0x12, 0x01), (0x92, 0x81), (0x11, 0x92), (0x91, 0x12)):
        g.set_time(0, before, 0x59, 0x59)
        g.step(NS)
        assert g.hms() == (after, 0x00, 0x00)


def test_basic_24_hour_binary() -> None:
    g = Guest()
    g.set_time(H24 | DM, 9, 59, 0)
    g.step(NS)
    assert g.hms() == (9, 59, 1)
    g.step(59 * NS)
    assert g.hms() == (10, 0, 0)
    g.set_time(H24 | DM, 23, 59, 0)
    g.step(60 * NS)
    assert g.hms() == (0, 0, 0) and g.read(MDAY) == 3


def test_set_flag_stops_the_clock_until_cleared() -> None:
    # DS: SET=1 inhibits updates; clearing it lets the clock run from the written bytes.
    g = Guest()
    g.write(B, H24 | SET)
    for reg, v in ((HOUR, 0x02), (MIN, 0x04), (SEC, 0x58), (YEAR, 0x11), (CENTURY, 0x20)):
        g.write(reg, v)
    g.step(NS)
    assert g.hms() == (0x02, 0x04, 0x58)
    g.write(B, g.read(B) & ~SET)
    assert g.hms() == (0x02, 0x04, 0x58)
    g.step(NS)
    assert g.hms() == (0x02, 0x04, 0x59)


def test_divider_reset_first_update_after_half_a_second_with_uip_window() -> None:
    # DS: "the first update cycle begins one-half second later"; UIP is high for the
    # 244 us before it.
    g = Guest()
    g.write(B, H24)
    g.write(A, 0x76)
    g.write(SEC, 0x58)
    g.step(NS)
    assert g.read(SEC) == 0x58
    g.write(A, 0x26)
    g.step(NS // 2 - UIP_HOLD - 1)
    assert g.read(A) & 0x80 == 0 and g.read(SEC) == 0x58
    g.step(1)
    assert g.read(A) & 0x80
    g.step(UIP_HOLD)
    assert g.read(A) & 0x80 == 0 and g.read(SEC) == 0x59


def test_alarm_interrupt_on_irq8() -> None:
    # DS: AF sets when the time matches the alarm (0xC0-0xFF = don't care); AIE routes it to
    # IRQ8, and reading C clears it and releases the line.
    g = Guest()
    g.write(B, H24 | DM)
    g.read(C)
    g.write(SEC_AL, 0)  # 02:04:58 now: :00 is 2 s away
    g.write(MIN_AL, 0xC0)
    g.write(HOUR_AL, 0xC0)
    g.write(B, H24 | DM | AIE)
    assert g.step(NS) == []
    assert g.step(NS) == ["IRQ raise 8"]
    assert g.read(C) & 0x20
    assert g.events == ["IRQ lower 8"] and g.read(C) == 0


def test_am_pm_alarm_hour_byte() -> None:
    # As rtc-test.c am_pm_alarm: the alarm fires at 2 PM (0x82) and not at 2 AM.
    g = Guest()
    g.write(MIN_AL, 0xC0)
    g.write(SEC_AL, 0xC0)
    g.write(B, 0)
    g.write(A, 0x76)
    g.write(HOUR_AL, 0x82)
    g.write(HOUR, 0x81)
    g.write(MIN, 0x59)
    g.write(SEC, 0x00)
    g.read(C)
    g.write(A, 0x26)
    g.step(60 * NS)
    assert g.read(HOUR) == 0x82 and g.read(C) & 0x20
    g.write(A, 0x76)
    g.write(HOUR_AL, 0x02)
    g.write(HOUR, 0x81)
    g.write(MIN, 0x59)
    g.write(SEC, 0x00)
    g.read(C)
    g.write(A, 0x26)
    g.step(60 * NS)
    assert g.read(HOUR) == 0x82 and g.read(C) & 0x20 == 0


def test_periodic_interrupt_every_500ms_on_irq8() -> None:
    # DS table 5: RS=1111 on a 32.768 kHz time base is a 500 ms periodic interrupt.
    g = Guest()
    g.write(A, 0x2F)
    g.read(C)
    g.write(B, H24 | PIE)
    raises = 0
    for _ in range(10):
        events = g.step(NS // 4)
        if "IRQ raise 8" in events:
            raises += 1
            assert g.read(C) & 0xC0 == 0xC0  # IRQF | PF (UF too, once a second)
            assert g.events == ["IRQ lower 8"]
    assert raises == 5  # 2.5 s of clock


def test_update_interrupt_counts_seconds() -> None:
    g = Guest()
    g.read(C)
    g.write(B, H24 | UIE)
    raises = 0
    for _ in range(5):
        raises += g.step(NS).count("IRQ raise 8")
        g.read(C)
    assert raises == 5


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["outb"]), st.integers(0x70, 0x73), st.integers(0, 255)),
            st.tuples(st.sampled_from(["inb"]), st.integers(0x70, 0x73), st.just(0)),
            st.tuples(st.just("clock_step"), st.integers(1, 2 * NS), st.just(0)),
        ),
        max_size=30,
    )
)
def test_any_guest_port_stream_answers_ok(cmds: list[tuple[str, int, int]]) -> None:
    # rtc-test.c fuzz_registers, widened: any byte to any RTC port at any time is legal input;
    # IRQ8 notifications always alternate raise/lower and match the line.
    g = Guest()
    level = False
    for op, a, v in cmds:
        line = f"outb 0x{a:x} 0x{v:x}" if op == "outb" else f"{op} {a}"
        assert g.cmd(line).startswith("OK")
        for ev in g.events:
            assert ev == ("IRQ lower 8" if level else "IRQ raise 8")
            level = not level
        assert level == g.machine.gsi.line(8).level


def test_machine_settings_reach_the_rtc() -> None:
    m = PcMachine(PcConfig(rtc_base="1999-12-31T23:59:59"))
    # The pc machine slews (QEMU's -rtc driftfix=slew) so no periodic tick is lost under
    # host load; QEMU's device default "discard" stays selectable.
    assert m.rtc.policy == "slew"
    assert m.rtc.cmos_get(YEAR) == 0x99 and m.rtc.cmos_get(CENTURY) == 0x19
    discard = PcMachine(PcConfig(extra={"rtc_lost_tick_policy": "discard"}))
    assert discard.rtc.policy == "discard"
