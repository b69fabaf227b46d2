"""The HPET in the pc machine, driven over qtest as a guest would: MMIO at 0xFED00000,
clock_step, interrupts seen on the IOAPIC's GSI inputs (`irq_intercept_in ioapic`), the legacy
replacement route taking IRQ0 and IRQ8 from the PIT and the RTC (IA-PC HPET 1.0a 2.3.7)."""

from __future__ import annotations

import time

from southbridge.machine.pc import PcConfig, PcMachine
from tests.qtesting import Qtest

HPET = 0xFED00000
LEVEL, ENB, PERIODIC, VAL_SET = 1 << 1, 1 << 2, 1 << 3, 1 << 6


class Q(Qtest):
    def ok(self, line: str) -> str:
        reply = self.ask(line)
        assert reply.endswith("OK\n") or "OK " in reply, (line, reply)
        return reply

    def readl(self, addr: int) -> int:
        reply = self.ask(f"readl {addr:#x}").splitlines()[-1]
        assert reply.startswith("OK 0x"), reply
        return int(reply[3:], 16)

    def writel(self, addr: int, value: int) -> None:
        self.ok(f"writel {addr:#x} {value:#x}")

    def writeq(self, addr: int, value: int) -> None:
        self.ok(f"writeq {addr:#x} {value:#x}")

    def raises(self, reply: str, gsi: int) -> int:
        return reply.count(f"IRQ raise {gsi}\n")

    def pit_1khz(self) -> None:
        for line in ("outb 0x43 0x34", "outb 0x40 0xa9", "outb 0x40 0x04"):  # mode 2, 1193
            self.ok(line)

    def hpet_timer0_100hz(self, legacy: bool) -> None:
        self.writel(HPET + 0x100, ENB | PERIODIC | VAL_SET | 2 << 9)
        self.writeq(HPET + 0x108, 100_000)  # first match at 1 ms (and period, VAL_SET)
        self.writeq(HPET + 0x108, 1_000_000)  # period 10 ms
        self.writel(HPET + 0x010, 3 if legacy else 1)


def test_qtest_counter_reads_at_100_mhz() -> None:
    q = Q()
    assert q.readl(HPET) == 0x8086A201
    assert q.readl(HPET + 4) == 10_000_000  # femtoseconds per tick
    q.writel(HPET + 0x10, 1)
    q.ok("clock_step 1000000000")
    assert q.readl(HPET + 0xF0) == 100_000_000
    assert q.ask(f"readq {HPET + 0xF0:#x}") == "OK 0x0000000005f5e100\n"


def test_legacy_replacement_takes_irq0_from_the_pit() -> None:
    """With the PIT at 1 kHz, GSI 0 sees its 1000 edges a second; once the HPET's legacy
    route is on only timer 0's 100 remain; leaving legacy mode gives IRQ0 back."""
    q = Q()
    q.ok("irq_intercept_in ioapic")
    q.pit_1khz()
    assert q.raises(q.ok("clock_step 1000000000"), 0) == 1000
    q.hpet_timer0_100hz(legacy=True)
    assert q.raises(q.ok("clock_step 1000000000"), 0) == 100
    q.writel(HPET + 0x10, 1)  # LEG_RT_CNF off: timer 0 back on its route 2 (GSI 0 too)
    # Wired-OR on GSI 0: a pulse while the PIT's OUT0 is high merges with it.
    reply = q.ok("clock_step 1000000000")
    assert 1000 <= q.raises(reply, 0) <= 1100


def test_legacy_replacement_takes_irq8_from_the_rtc() -> None:
    q = Q()
    q.ok("irq_intercept_in ioapic")
    q.ok("outb 0x70 0x0a")
    q.ok("outb 0x71 0x26")  # 1024 Hz periodic rate
    q.ok("outb 0x70 0x0b")
    q.ok("outb 0x71 0x42")  # PIE, 24-hour
    assert q.raises(q.ok("clock_step 100000000"), 8) > 0
    q.writel(HPET + 0x10, 3)
    q.ok("outb 0x70 0x0c")
    q.ok("inb 0x71")  # acknowledge the RTC: its IRQ8 would rise again
    assert q.raises(q.ok("clock_step 100000000"), 8) == 0
    q.writel(HPET + 0x120, ENB)  # timer 1, edge: legacy route to IRQ8
    q.writeq(HPET + 0x128, q.readl(HPET + 0xF0) + 1000)
    assert q.raises(q.ok("clock_step 100000000"), 8) == 1


def test_hpet_timer0_interrupts_through_the_ioapic_pin_2() -> None:
    """Route 2 (QEMU's pc capability mask 0x4): I/O APIC pin 2, level-triggered; the vector
    arrives at CPU 0 and the line holds until the status bit is cleared."""
    m = PcMachine(PcConfig(smp=1))
    q = Q(m)
    m.lapics[0].write(0xF0, 4, 0x1FF)
    q.ok("outb 0x43 0x30")  # the PIT's OUT0 low (mode 0, no count): GSI 0 is the HPET's
    q.writel(0xFEC00000, 0x14)  # pin 2 low word: vector 0x30, level, unmasked
    q.writel(0xFEC00010, 0x30 | 1 << 15)
    q.ok("irq_intercept_in ioapic")
    assert q.readl(HPET + 0x104) == 0x4
    q.writel(HPET + 0x100, LEVEL | ENB | 2 << 9)
    q.writeq(HPET + 0x108, 5000)
    q.writel(HPET + 0x10, 1)
    reply = q.ok("clock_step 100000")
    assert q.raises(reply, 0) == 1
    assert m.lapics[0].highest_pending() == 0x30
    assert q.readl(HPET + 0x20) == 1
    assert "IRQ lower 0" in q.ask(f"writel {HPET + 0x20:#x} 0x1")
    assert not m.ioapic.lines >> 2 & 1


def test_legacy_timer0_reaches_the_8259_irq0() -> None:
    m = PcMachine()
    q = Q(m)
    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFE)):
        q.ok(f"outb {port:#x} {value:#x}")  # ICW1-4, IRQ0 unmasked
    q.ok("outb 0x43 0x30")  # PIT channel 0 mode 0 and no count: OUT0 stays low
    q.writel(HPET + 0x100, ENB)
    q.writeq(HPET + 0x108, 100)
    q.writel(HPET + 0x10, 3)
    q.ok("clock_step 10000")
    assert m.pic.intr.level


def test_no_hpet_leaves_the_window_unassigned_and_the_pit_ungated() -> None:
    m = PcMachine(PcConfig(hpet=False))
    assert m.hpet is None and "hpet" not in m.stateful()
    q = Q(m)
    assert q.readl(HPET) == 0xFFFFFFFF
    q.ok("irq_intercept_in ioapic")
    q.pit_1khz()
    assert q.raises(q.ok("clock_step 1000000000"), 0) == 1000


def test_machine_state_round_trip_with_the_hpet_in_legacy_mode() -> None:
    a = Q()
    a.hpet_timer0_100hz(legacy=True)
    a.ok("clock_step 12345678")
    state = a.machine.save()
    b = Q()
    b.machine.restore(state)
    assert b.machine.save() == state
    b.ok("irq_intercept_in ioapic")
    b.pit_1khz()  # the restored legacy route still gates the PIT
    assert b.raises(b.ok("clock_step 1000000000"), 0) == 100


def test_a_period_1_storm_over_qtest_takes_bounded_host_time() -> None:
    """Issue 15's guard for the HPET: a periodic comparator of period 1 (100 MHz asked for)
    interrupts every 200 us, so a second of clock_step is 5000 callbacks, not 10^8; the
    counter and comparator still read exactly."""
    q = Q()
    q.ok("irq_intercept_in ioapic")
    q.ok("outb 0x43 0x30")  # PIT quiet
    q.writel(HPET + 0x100, ENB | PERIODIC | VAL_SET | 2 << 9)
    q.writeq(HPET + 0x108, 1)
    q.writel(HPET + 0x10, 1)
    start = time.monotonic()
    reply = q.ok("clock_step 1000000000")
    assert time.monotonic() - start < 5
    assert q.raises(reply, 0) == 5000
    m = q.machine
    assert isinstance(m, PcMachine) and m.hpet is not None
    assert m.hpet.clamped_ticks == 5000
    assert q.readl(HPET + 0xF0) == 100_000_000
    assert q.readl(HPET + 0x108) == 100_000_001


def test_the_pit_owes_no_ticks_while_the_hpet_has_irq0() -> None:
    """QEMU's pit_irq_control / KVM's HPET_LEGACY flag: behind the legacy route the PIT arms
    no IRQ0 timer, so a guest switching back gets the PIT's rate, not a second of backlog."""
    m = PcMachine()
    q = Q(m)
    q.pit_1khz()
    q.writel(HPET + 0x10, 3)
    assert not m.pit.irq_enabled
    q.ok("clock_step 2000000000")
    assert m.pit.owed_ticks == 0
    q.ok("outb 0x43 0x00")  # the count still runs: latch and read channel 0
    assert q.ask("inb 0x40").startswith("OK ")
    q.ok("irq_intercept_in ioapic")
    q.writel(HPET + 0x10, 0)
    assert m.pit.irq_enabled
    assert q.raises(q.ok("clock_step 10000000"), 0) == 10
