"""Acknowledge-paced reinjection of timer ticks on the manual clock (issue 13 item 1).

The peer is KVM's in-kernel PIT in reinject mode (arch/x86/kvm/i8254.c): `pit_timer_fn`
counts each period in `pending`, `pit_do_work` injects only while `irq_ack` is set and
clears it, `kvm_pit_ack_irq` (the irq ack notifier, called by the 8259 and the IOAPIC)
sets it again and injects the next pending tick. So a late host timer or a guest that takes
its interrupts late loses no IRQ0 edge, gets at most one edge per acknowledge, and the debt
stays bounded. The same pacing is optional for the LAPIC timer in periodic mode and is the
RTC's "slew" policy (QEMU's lost_tick_policy=slew for mc146818rtc).
"""

from __future__ import annotations

from southbridge.core.clock import NS_PER_SEC, ManualClock
from southbridge.core.irq import GsiRouter, IrqLine
from southbridge.devices import lapic as lapic_mod
from southbridge.devices import pit as pit_mod
from southbridge.devices.pic import PicPair
from southbridge.devices.pit import MAX_OWED, Pit, ticks_to_ns
from southbridge.devices.rtc import Rtc
from southbridge.machine.pc import PcConfig, PcMachine

PERIOD = ticks_to_ns(1193)  # mode 2, count 1193: 1000.15 Hz


class StallClock(ManualClock):
    """Time moves on while timer callbacks wait (a host timer thread that runs late)."""

    def stall(self, ns: int) -> None:
        self._now += ns
        self.set(self._now)


def pit_rig(clock: ManualClock) -> tuple[Pit, IrqLine, list[int]]:
    line = IrqLine("irq0")
    rises: list[int] = []
    line.connect(lambda level: rises.append(clock.now()) if level else None)
    pit = Pit(clock, line, "delay")
    pit.write(3, 1, 0x34)  # channel 0, LSB then MSB, mode 2
    pit.write(0, 1, 1193 & 0xFF)
    pit.write(0, 1, 1193 >> 8)
    # Loading mode 2 drives OUT high: that rising edge is a request of its own, answered.
    assert rises == [0]
    line.ack()
    rises.clear()
    return pit, line, rises


def due_edges(clock: ManualClock) -> int:
    return pit_mod.ns_to_ticks(clock.now()) // 1193


def test_late_host_callback_loses_no_edge_and_delivers_one_per_ack() -> None:
    clock = StallClock()
    pit, line, rises = pit_rig(clock)
    clock.stall(int(5.5 * PERIOD))  # five edges due when the callback finally runs
    assert len(rises) == 1  # one delivered; the other four wait for acknowledges
    assert pit.owed_ticks == 4 and pit.late_ticks == 4
    for k in range(4):
        line.ack()
        assert len(rises) == 2 + k  # exactly one more per acknowledge
    line.ack()
    assert pit.owed_ticks == 0 and len(rises) == 5
    line.ack()  # an acknowledge with nothing owed delivers nothing
    assert len(rises) == 5
    # Back on time with a prompt guest: every edge arrives on the period grid.
    for _ in range(10):
        clock.advance(PERIOD)
        line.ack()
    assert len(rises) == due_edges(clock)
    assert rises[-1] == ticks_to_ns(1193 * 15)


def test_guest_acknowledging_late_never_gets_an_edge_on_a_pending_request() -> None:
    """While the last edge is unacknowledged the line does not rise again (a second edge
    would merge with the request still in IRR); the debt is paid one per acknowledge."""
    clock = ManualClock()
    pit, line, rises = pit_rig(clock)
    clock.advance(int(3.5 * PERIOD))
    assert len(rises) == 1 and pit.owed_ticks == 2
    assert not line.level  # held low: mode 2's OUT rose twice meanwhile
    line.ack()
    line.ack()
    assert len(rises) == 3 and pit.owed_ticks == 0
    clock.advance(10 * PERIOD)  # the third edge is still unacknowledged: all ten owed
    assert len(rises) == 3 and pit.owed_ticks == 10
    while pit.owed_ticks:
        line.ack()
    line.ack()
    assert len(rises) == due_edges(clock) == 13


def test_owed_edges_stay_bounded_and_a_lost_request_cannot_stall_irq0() -> None:
    """A guest that never acknowledges (IRQ0 masked everywhere): the debt stops at MAX_OWED
    (one second at 1 kHz), the excess is counted as dropped, and after a second without an
    acknowledge the wait is given up so IRQ0 never stays dead."""
    clock = ManualClock()
    pit, _line, rises = pit_rig(clock)
    clock.advance(5 * NS_PER_SEC)
    assert pit.owed_ticks <= MAX_OWED
    assert 1 < len(rises) <= 6  # about one edge per second of waiting
    assert len(rises) + pit.owed_ticks + pit.dropped_ticks == due_edges(clock)


def test_reprogramming_forgets_the_debt_and_the_wait() -> None:
    """KVM's kvm_pit_reset_reinject on a new count: pending 0, irq_ack 1."""
    clock = ManualClock()
    pit, line, rises = pit_rig(clock)
    clock.advance(int(4.5 * PERIOD))
    assert pit.owed_ticks == 3
    pit.write(3, 1, 0x34)
    pit.write(0, 1, 0xA9)
    pit.write(0, 1, 0x04)
    assert pit.owed_ticks == 0
    # The wait for an acknowledge was forgotten: loading the count raises OUT at once.
    assert len(rises) == 2 and line.level


def test_pit_through_the_8259_counts_every_edge_when_the_cpu_is_late() -> None:
    """The real wiring: GSI 0 into the 8259, INTA acknowledges through `GsiRouter.ack`. A
    CPU taking IRQ0 only every 3.5 periods still receives one vector per period."""
    clock = ManualClock()
    gsi = GsiRouter()
    pic = PicPair()
    gsi.connect(0, lambda level: pic.set_irq(0, level))
    pic.ack_listeners.append(gsi.ack)
    for port, value in ((0, 0x11), (1, 0x08), (1, 0x04), (1, 0x01), (1, 0xFE)):
        pic.master.write(port, 1, value)  # ICW1-4, then only IRQ0 unmasked
    pit = Pit(clock, gsi.input(0, "pit"))
    assert pit.policy == "delay"
    pit.write(3, 1, 0x34)
    pit.write(0, 1, 1193 & 0xFF)
    pit.write(0, 1, 1193 >> 8)
    taken = 0
    for _ in range(40):
        clock.advance(int(3.5 * PERIOD))
        while pic.intr.level:  # the CPU catches up: INTA, handler, EOI
            assert pic.acknowledge() == 0x08
            pic.master.write(0, 1, 0x20)
            taken += 1
    assert pit.dropped_ticks == 0
    assert taken == due_edges(clock) - pit.owed_ticks
    assert pit.owed_ticks <= 1


def _program_ioapic_pin2(m: PcMachine, vector: int) -> None:
    a = m.lapics[0]
    a.write(0xF0, 4, 0x1FF)  # SVR: software enabled
    m.ioapic.write(0x00, 4, 0x10 + 2 * 2)
    m.ioapic.write(0x10, 4, vector)  # pin 2: fixed, edge, physical destination 0
    m.ioapic.write(0x00, 4, 0x11 + 2 * 2)
    m.ioapic.write(0x10, 4, 0)


def test_pit_through_the_ioapic_is_paced_by_the_local_apic_eoi() -> None:
    """GSI 0 -> IOAPIC pin 2 (the PC's interrupt source override); the acknowledge is the
    LAPIC's EOI of the pin's vector, an edge vector the bus broadcasts no EOI message for."""
    clock = ManualClock()
    m = PcMachine(clock=clock)
    _program_ioapic_pin2(m, 0x30)
    a = m.lapics[0]
    m.ports.write(0x43, 1, 0x34)
    m.ports.write(0x40, 1, 1193 & 0xFF)
    m.ports.write(0x40, 1, 1193 >> 8)
    taken = 0
    for _ in range(30):
        clock.advance(int(2.5 * PERIOD))
        while a.highest_pending() is not None:
            assert a.ack() == 0x30
            a.write(0xB0, 4, 0)  # EOI
            taken += 1
    assert m.pit.dropped_ticks == 0
    assert taken == due_edges(clock) - m.pit.owed_ticks
    assert m.pit.owed_ticks <= 1


def test_ack_hooks_ignore_other_vectors_and_pins() -> None:
    clock = ManualClock()
    m = PcMachine(clock=clock)
    _program_ioapic_pin2(m, 0x30)
    a = m.lapics[0]
    m.ports.write(0x43, 1, 0x34)
    m.ports.write(0x40, 1, 0xA9)
    m.ports.write(0x40, 1, 0x04)
    clock.advance(int(3.5 * PERIOD))
    assert m.pit.owed_ticks == 2
    a.accept(0x40)  # another vector's EOI acknowledges nothing for IRQ0
    assert a.ack() == 0x40
    a.write(0xB0, 4, 0)
    m.gsi.ack(5)  # nor does another GSI's
    assert m.pit.owed_ticks == 2


# -- LAPIC timer ---------------------------------------------------------------------------


def periodic(
    timer_reinject: bool, count: int = 1_000_000
) -> tuple[ManualClock, lapic_mod.LocalApic]:
    clock = ManualClock()
    a = lapic_mod.LocalApic(0, clock, bsp=True, timer_reinject=timer_reinject)
    a.write(0xF0, 4, 0x1FF)
    a.write(0x320, 4, (1 << 17) | 0x31)  # periodic, vector 0x31
    a.write(0x3E0, 4, 0xB)  # divide by 1
    a.write(0x380, 4, count)  # 1 ms
    return clock, a


def take_all(a: lapic_mod.LocalApic) -> int:
    n = 0
    while a.highest_pending() is not None:
        assert a.ack() == 0x31
        a.write(0xB0, 4, 0)
        n += 1
    return n


def test_lapic_periodic_reinject_delivers_every_tick_to_a_late_cpu() -> None:
    clock, a = periodic(True)
    taken = 0
    for _ in range(20):
        clock.advance(3_500_000)
        taken += take_all(a)
    assert taken == 70 - a._timer_owed
    assert a._timer_owed <= 1


def test_lapic_periodic_default_coalesces_like_hardware() -> None:
    """Without reinjection one IRR bit holds the ticks of a late CPU (SDM 10.5.4)."""
    clock, a = periodic(False)
    taken = 0
    for _ in range(20):
        clock.advance(3_500_000)
        taken += take_all(a)
    assert taken == 20


def test_lapic_reinject_one_tick_per_eoi() -> None:
    clock, a = periodic(True)
    clock.advance(5_500_000)
    assert a._timer_owed == 4
    assert a.ack() == 0x31
    assert a.highest_pending() is None  # the next waits for the EOI, not the INTA
    a.write(0xB0, 4, 0)
    assert a.highest_pending() == 0x31 and a._timer_owed == 3


# -- RTC slew ------------------------------------------------------------------------------


def slew_rtc() -> tuple[ManualClock, Rtc, IrqLine, list[int]]:
    clock = ManualClock()
    line = IrqLine("irq8")
    rises: list[int] = []
    line.connect(lambda level: rises.append(clock.now()) if level else None)
    rtc = Rtc(clock, line, base="2024-01-01T00:00:00", lost_tick_policy="slew")
    rtc.write(0, 1, 0x0A)
    rtc.write(1, 1, 0x26)  # rate 6: 1024 Hz
    rtc.write(0, 1, 0x0B)
    rtc.write(1, 1, 0x52)  # PIE | UIE | 24-hour
    return clock, rtc, line, rises


def read_c(rtc: Rtc) -> int:
    rtc.write(0, 1, 0x0C)
    return rtc.read(1, 1)


def test_rtc_slew_delivers_an_owed_tick_as_soon_as_c_is_read_and_irq8_acknowledged() -> None:
    clock, rtc, line, rises = slew_rtc()
    clock.set(10 * 976_563)  # the guest ignored ten periods: one PF, nine owed
    assert len(rises) == 1
    line.ack()  # INTA
    assert read_c(rtc) & 0x40
    clock.advance(0)
    assert len(rises) == 2 and rises[-1] == clock.now()  # at once, not period/8 later
    read_c(rtc)  # read C without an acknowledge of the last IRQ8: QEMU's spacing
    clock.advance(0)
    assert len(rises) == 2
    clock.advance(976_563 // 8 + 1)
    assert len(rises) == 3


def test_rtc_update_flag_waits_for_the_ticks_owed_from_before_it() -> None:
    """A guest counting PF between two UF interrupts counts 1024 in every second even when
    it took its interrupts late around the update (the tour's measurement)."""
    clock, rtc, line, _rises = slew_rtc()
    counts: list[int] = []
    pf = 0
    t = 0
    while len(counts) < 3 and t < 4 * NS_PER_SEC:
        t += 3_000_000  # the guest gets to run every 3 ms only
        clock.set(t)
        while line.level:
            line.ack()
            c = read_c(rtc)
            pf += bool(c & 0x40)
            if c & 0x10:
                counts.append(pf)
                pf = 0
            clock.advance(0)
    assert counts[1:] == [1024, 1024]


# -- both timers of a pc machine -----------------------------------------------------------


def _tour_counts_on_a_late_cpu(gap_ns: int, per_wake: int) -> list[tuple[int, int]]:
    """The tour's measurement on the manual clock: PIT 1000.15 Hz and RTC 1024 Hz through the
    8259, a CPU that runs every `gap_ns` and then takes at most `per_wake` interrupts.
    Returns (PIT, RTC periodic) counted between consecutive update interrupts."""
    clock = ManualClock()
    # A fixed date: "utc" would start the RTC second at the host's sub-second phase, and
    # the counts per RTC second would depend on when the test ran.
    m = PcMachine(PcConfig(rtc_base="2026-12-02T00:00:00"), clock=clock)
    for port, value in ((0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01)):
        m.ports.write(port, 1, value)
    for port, value in ((0xA0, 0x11), (0xA1, 0x70), (0xA1, 0x02), (0xA1, 0x01)):
        m.ports.write(port, 1, value)
    m.ports.write(0x21, 1, 0xFA)
    m.ports.write(0xA1, 1, 0xFE)
    m.ports.write(0x43, 1, 0x34)
    m.ports.write(0x40, 1, 1193 & 0xFF)
    m.ports.write(0x40, 1, 1193 >> 8)
    for index, value in ((0x0A, 0x26), (0x0B, 0x52)):
        m.ports.write(0x70, 1, index)
        m.ports.write(0x71, 1, value)
    counts: list[tuple[int, int]] = []
    pit = rtc = 0
    t = 0
    while len(counts) < 4:
        t += gap_ns
        clock.set(t)
        for _ in range(per_wake):
            if not m.pic.intr.level:
                break
            vector = m.pic.acknowledge()
            if vector == 0x08:
                pit += 1
                m.ports.write(0x20, 1, 0x20)
            elif vector == 0x70:
                m.ports.write(0x70, 1, 0x0C)
                c = m.ports.read(0x71, 1)
                rtc += bool(c & 0x40)
                if c & 0x10:
                    counts.append((pit, rtc))
                    pit = rtc = 0
                m.ports.write(0xA0, 1, 0x20)
                m.ports.write(0x20, 1, 0x20)
            clock.advance(0)
    return counts[1:]


def test_pit_and_rtc_ticks_reach_a_late_guest_in_due_order() -> None:
    """The tour next to a CPU hog, on the manual clock: the guest runs every 5 ms. Both
    timers owe ticks at once; TickOrder lets the older go first, so each RTC second holds
    1000 PIT and 1024 RTC ticks."""
    for pit, rtc in _tour_counts_on_a_late_cpu(5_000_000, 1000):
        assert abs(pit - 1000.15) <= 1 and rtc == 1024


def test_a_guest_slower_than_its_timers_still_sees_one_timeline() -> None:
    """A guest handling only 2000 interrupts a second (2024 are due): the backlog grows,
    yet every RTC second it sees still holds its 1000 PIT and 1024 RTC ticks."""
    for pit, rtc in _tour_counts_on_a_late_cpu(1_000_000, 2):
        assert abs(pit - 1000.15) <= 1 and rtc == 1024
