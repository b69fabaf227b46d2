"""The PIT in the pc machine, driven over the qtest protocol as a guest would: port I/O,
clock_step, and IRQ0 observed with irq_intercept_in on the IOAPIC's GSI lines."""

from __future__ import annotations

from southbridge.devices.pit import PIT_HZ, ticks_to_ns
from southbridge.machine.pc import PcMachine
from southbridge.qtest.server import QtestSession


class Q:
    def __init__(self) -> None:
        self.machine = PcMachine()
        self.out: list[str] = []
        self.session = QtestSession(self.machine, self.out.append)

    def ask(self, line: str) -> str:
        """Send one command; return its answer line (IRQ lines stay in `self.out`)."""
        self.out.clear()
        self.session.handle(line)
        answers = [a for a in self.out if not a.startswith("IRQ ")]
        assert len(answers) == 1, self.out
        return answers[0].strip()

    def irq0(self) -> tuple[int, int]:
        return self.out.count("IRQ raise 0\n"), self.out.count("IRQ lower 0\n")

    def inb(self, port: int) -> int:
        answer = self.ask(f"inb {port:#x}")
        assert answer.startswith("OK 0x")
        return int(answer[3:], 16)

    def outb(self, port: int, value: int) -> None:
        assert self.ask(f"outb {port:#x} {value:#x}") == "OK"


def test_mode2_count_1193_raises_irq0_about_1000_times_per_second() -> None:
    """Issue 3, done-when: channel 0 in mode 2 with count 1193 shows IRQ 0 raised about 1000
    times per clock_step of one second (8254 mode 2: one rising edge per 1193 pulses)."""
    q = Q()
    assert q.ask("irq_intercept_in ioapic") == "OK"
    q.outb(0x43, 0x34)  # channel 0, LSB then MSB, mode 2, binary
    q.outb(0x40, 1193 & 0xFF)
    q.outb(0x40, 1193 >> 8)
    assert q.ask("clock_step 1000000000") == "OK 1000000000"
    assert q.irq0() == (1000, 1000)
    assert q.ask("clock_step 1000000000") == "OK 2000000000"
    raises, lowers = q.irq0()
    assert raises in (1000, 1001) and lowers == raises  # 2000 periods end at 1.999695 s


def test_reset_state_runs_channel0_at_18_2_hz() -> None:
    """After reset channel 0 runs mode 3 with count 0 (65536), as QEMU's pit_reset_common:
    1193182 / 65536 = 18.2 interrupts per second."""
    q = Q()
    q.ask("irq_intercept_in ioapic")
    q.outb(0x43, 0xE2)  # read-back status of channel 0
    assert q.inb(0x40) == 0x80 | 0x30 | 3 << 1  # OUT high, LSB/MSB, mode 3, binary
    q.ask("clock_step 1000000000")
    assert q.irq0() == (18, 18)


def test_clock_step_lands_on_each_out0_edge() -> None:
    """clock_step without an argument advances to the next timer deadline: the PIT arms only
    OUT0's next edge, so each step is exactly one edge (mode 2: low at N-1, high at N)."""
    q = Q()
    q.ask("irq_intercept_in ioapic")
    q.ask("clock_step 12345")
    q.outb(0x43, 0x34)
    q.outb(0x40, 300 & 0xFF)  # 251 us: above the 200 us rate clamp
    q.outb(0x40, 300 >> 8)
    t0 = 12345
    assert q.ask("clock_step") == f"OK {t0 + ticks_to_ns(299)}"
    assert q.irq0() == (0, 1)
    assert q.ask("clock_step") == f"OK {t0 + ticks_to_ns(300)}"
    assert q.irq0() == (1, 0)
    assert q.ask("clock_step") == f"OK {t0 + ticks_to_ns(599)}"


def test_mode0_one_shot_over_qtest() -> None:
    """Mode 0: IRQ0 rises once when the count reaches zero and stays high."""
    q = Q()
    q.ask("irq_intercept_in ioapic")
    q.outb(0x43, 0x30)
    assert q.irq0() == (0, 1)  # control word in mode 0 drops OUT
    q.outb(0x40, 0x00)
    q.outb(0x40, 0x10)  # 4096 pulses
    q.ask(f"clock_step {ticks_to_ns(4096) - 1}")
    assert q.irq0() == (0, 0)
    q.ask("clock_step 1")
    assert q.irq0() == (1, 0)
    q.ask("clock_step 1000000000")
    assert q.irq0() == (0, 0)


def test_read_back_while_counting_over_qtest() -> None:
    """Read-back of count and status for channels 0 and 2 at once; values are those of the
    instant of the command, not of the reads."""
    q = Q()
    q.outb(0x61, 0x01)  # gate channel 2
    q.outb(0x43, 0xB0)  # channel 2, LSB/MSB, mode 0
    q.outb(0x42, 0xFF)
    q.outb(0x42, 0xFF)
    q.outb(0x43, 0x34)
    q.outb(0x40, 0x00)
    q.outb(0x40, 0x80)  # 0x8000
    q.ask(f"clock_step {ticks_to_ns(0x1000)}")
    q.outb(0x43, 0xC0 | 0b1010)  # count + status, channels 0 and 2
    q.ask("clock_step 5000000")
    assert q.inb(0x40) == 0x80 | 0x30 | 2 << 1
    assert q.inb(0x40) | q.inb(0x40) << 8 == 0x8000 - 0x1000
    assert q.inb(0x42) == 0x30  # mode 0, OUT low, count loaded
    assert q.inb(0x42) | q.inb(0x42) << 8 == 0xFFFF - 0x1000


def test_port61_out2_toggles_over_qtest() -> None:
    """Port 0x61 bit 5 follows OUT2: channel 2 in mode 3 with count 1000 gives a square wave
    with 500-pulse halves once bit 0 opens the gate."""
    q = Q()
    q.outb(0x43, 0xB6)  # channel 2, LSB/MSB, mode 3
    q.outb(0x42, 1000 & 0xFF)
    q.outb(0x42, 1000 >> 8)
    q.outb(0x61, 0x01)
    start = q.machine.clock.now()
    levels = []
    for k in range(1, 9):
        q.ask(f"clock_set {start + ticks_to_ns(250 * k) + 1}")
        levels.append(q.inb(0x61) >> 5 & 1)
    assert levels == [1, 0, 0, 1, 1, 0, 0, 1]
    q.outb(0x61, 0x00)  # gate low forces OUT2 high in mode 3
    assert q.inb(0x61) & 0x21 == 0x20


def test_pit_frequency_constant() -> None:
    assert PIT_HZ == 1_193_182
