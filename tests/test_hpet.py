"""The HPET on the manual clock: IA-PC HPET 1.0a registers and rules, QEMU's pc configuration
(hw/timer/hpet.c), the storm guard, and save/restore."""

from __future__ import annotations

from functools import partial

from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.clock import NS_PER_SEC, ManualClock
from southbridge.core.irq import IrqLine
from southbridge.devices import hpet as hpet_mod
from southbridge.devices.hpet import CAPABILITIES, MIN_PERIOD_NS, Hpet

T0 = 0x100  # timer 0's registers; timer n at 0x100 + 0x20 n
CONF, CMP = 0x00, 0x08
LEVEL, ENB, PERIODIC, VAL_SET, MODE32 = 1 << 1, 1 << 2, 1 << 3, 1 << 6, 1 << 8


class Bench:
    """An HPET with lines on I/O APIC inputs 2, 8 and 20 recording their rising edges."""

    def __init__(self, intcap: int = 0x4 | 1 << 20) -> None:
        self.clock = ManualClock()
        self.lines = {p: IrqLine(f"pin{p}") for p in (2, 8, 20)}
        self.rises: dict[int, list[int]] = {p: [] for p in self.lines}
        for p, line in self.lines.items():
            line.connect(partial(self._record, p))
        self.hpet = Hpet(self.clock, self.lines, intcap)
        self.legacy: list[bool] = []
        self.hpet.legacy_listeners.append(self.legacy.append)

    def _record(self, pin: int, level: bool) -> None:
        if level:
            self.rises[pin].append(self.clock.now())

    def r(self, off: int, size: int = 4) -> int:
        return self.hpet.read(off, size)

    def w(self, off: int, value: int, size: int = 4) -> None:
        self.hpet.write(off, size, value)

    def tconf(self, n: int, value: int) -> None:
        self.w(T0 + 0x20 * n + CONF, value)

    def tcmp(self, n: int, value: int, size: int = 8) -> None:
        self.w(T0 + 0x20 * n + CMP, value, size)

    def enable(self, legacy: bool = False) -> None:
        self.w(0x10, 1 | (2 if legacy else 0))


def test_capabilities_are_qemus_pc_hpet() -> None:
    """8086 vendor, revision 1, NUM_TIM_CAP 2 (three timers), 64-bit counter, LEG_RT_CAP,
    COUNTER_CLK_PERIOD 10^7 fs = 10 ns (QEMU: 0x8086a201, period 10 ns)."""
    b = Bench(intcap=0x4)
    assert b.r(0x000) == 0x8086A201
    assert b.r(0x004) == 10_000_000
    assert b.r(0x000, 8) == CAPABILITIES
    for n in range(3):  # periodic- and 64-bit-capable, route capability in the high half
        assert b.r(T0 + 0x20 * n) == 0x30
        assert b.r(T0 + 0x20 * n + 4) == 0x4
        assert b.r(T0 + 0x20 * n + CMP, 8) == (1 << 64) - 1
    b.w(0x000, 0)  # read-only
    assert b.r(0x000) == 0x8086A201


def test_main_counter_runs_at_exactly_100_mhz_while_enabled() -> None:
    b = Bench()
    b.clock.advance(NS_PER_SEC)
    assert b.r(0xF0, 8) == 0  # halted until ENABLE_CNF
    b.enable()
    b.clock.advance(NS_PER_SEC)
    assert b.r(0xF0, 8) == 100_000_000
    b.clock.advance(7)
    assert b.r(0xF0) == 100_000_000  # a tick is 10 ns
    b.clock.advance(3)
    assert b.r(0xF0) == 100_000_001
    b.w(0x10, 0)  # halting keeps the value
    b.clock.advance(NS_PER_SEC)
    assert b.r(0xF0, 8) == 100_000_001


def test_counter_written_while_disabled_counts_on_from_there() -> None:
    b = Bench()
    b.w(0xF0, 0xFFFF_FFF0)
    b.w(0xF4, 0x1)
    assert b.r(0xF0, 8) == 0x1_FFFF_FFF0
    b.enable()
    b.clock.advance(200)  # 20 ticks: carries into the high half
    assert b.r(0xF0) == 0x4 and b.r(0xF4) == 0x2
    b.w(0xF0, 0, 8)  # ignored while running (QEMU)
    assert b.r(0xF0, 8) == 0x2_0000_0004


def test_counter_wraps_at_2_64() -> None:
    b = Bench()
    b.w(0xF0, (1 << 64) - 5, 8)
    b.enable()
    b.clock.advance(100)
    assert b.r(0xF0, 8) == 5


def test_one_shot_edge_interrupt_at_the_match() -> None:
    b = Bench()
    b.tconf(2, ENB | 20 << 9)
    b.tcmp(2, 1000)
    b.enable()
    b.clock.advance(NS_PER_SEC)
    assert b.rises[20] == [10_000]
    assert b.r(0x20) == 0  # edge timers leave status clear
    assert b.r(T0 + 0x40 + CMP) == 1000  # one-shot: the comparator stays


def test_periodic_with_val_set_sets_accumulator_and_period() -> None:
    """Tn_VAL_SET_CNF: the next comparator write sets the accumulator (and the period, as
    QEMU); later writes set only the period; the register reads the next match."""
    b = Bench()
    b.enable()
    b.tconf(0, ENB | PERIODIC | VAL_SET | 2 << 9)
    assert b.r(T0) & VAL_SET
    b.tcmp(0, 50_000)  # 500 us
    assert not b.r(T0) & VAL_SET  # cleared by the write
    b.clock.advance(10 * 500_000 + 1)
    assert b.rises[2] == [500_000 * k for k in range(1, 11)]
    assert b.r(T0 + CMP) == 50_000 * 11
    b.tcmp(0, 100_000)  # period only: the next match stays at 5.5 ms
    b.clock.set(5_500_000 + 1_000_000 * 3)
    assert b.rises[2][10:] == [5_500_000, 6_500_000, 7_500_000, 8_500_000]


def test_periodic_without_val_set_keeps_the_comparator() -> None:
    b = Bench()
    b.tconf(0, ENB | PERIODIC | 2 << 9)
    b.tcmp(0, 300_000)  # period 3 ms, comparator still all-ones
    assert b.r(T0 + CMP, 8) == (1 << 64) - 1
    b.tconf(0, ENB | PERIODIC | VAL_SET | 2 << 9)
    b.tcmp(0, 100_000)
    b.enable()
    b.clock.advance(5_000_000)
    assert b.rises[2] == [1_000_000 * k for k in range(1, 6)]


def test_32_bit_mode_wraps_the_comparator_and_interrupts_at_the_wrap() -> None:
    b = Bench()
    b.w(0xF0, 0xFFFF_FF00, 8)
    b.tconf(2, ENB | MODE32 | 20 << 9)
    b.tcmp(2, 0x10, size=4)
    assert b.r(T0 + 0x40 + CMP + 4) == 0
    b.tcmp(2, 0x1_0000_0040)  # a 64-bit write keeps the low half in 32-bit mode
    assert b.r(T0 + 0x40 + CMP, 8) == 0x40
    b.enable()
    b.clock.advance(10_000)
    # The wrap of the low 32 bits after 0x100 ticks, then the match 0x40 ticks later.
    assert b.rises[20] == [0x100 * 10, 0x140 * 10]


def test_32_bit_periodic_wraps_modulo_2_32() -> None:
    b = Bench()
    b.w(0xF0, 0xFFF0_0000, 8)
    b.tconf(0, ENB | PERIODIC | VAL_SET | MODE32 | 2 << 9)
    b.tcmp(0, 0xFFF8_0000, 4)
    b.tcmp(0, 0x10_0000, 4)  # period
    b.enable()
    b.clock.advance(0x30_0000 * 10)
    assert b.rises[2] == [5_242_880, 15_728_640, 26_214_400]
    assert b.r(T0 + CMP, 8) == 0x28_0000  # 0xFFF80000 + 3 * 0x100000, mod 2^32


def test_level_interrupt_holds_the_line_until_status_is_cleared() -> None:
    """General Interrupt Status: set by a level timer's match, cleared by writing 1; the line
    stays asserted while it is set (and the timer's interrupt is enabled)."""
    b = Bench()
    b.tconf(1, LEVEL | ENB | 20 << 9)
    b.tcmp(1, 10)
    b.enable()
    b.clock.advance(100)
    assert b.r(0x20) == 0b10 and b.lines[20].level
    b.w(0x20, 0b01)  # writing 0s and other bits changes nothing
    assert b.lines[20].level
    b.tconf(1, LEVEL | 20 << 9)  # Tn_INT_ENB off: the line drops, status stays
    assert not b.lines[20].level and b.r(0x20) == 0b10
    b.tconf(1, LEVEL | ENB | 20 << 9)
    assert b.lines[20].level
    b.w(0x20, 0b10)
    assert b.r(0x20) == 0 and not b.lines[20].level


def test_disabled_timer_still_sets_status() -> None:
    b = Bench()
    b.tconf(1, LEVEL | 20 << 9)
    b.tcmp(1, 10)
    b.enable()
    b.clock.advance(100)
    assert b.r(0x20) == 0b10 and not b.lines[20].level and b.rises[20] == []


def test_unsupported_route_delivers_nothing() -> None:
    b = Bench(intcap=0x4)
    b.tconf(2, ENB | 20 << 9)  # input 20 is not in the capability mask
    b.tcmp(2, 5)
    b.enable()
    b.clock.advance(1_000)
    assert b.rises[20] == []


def test_legacy_replacement_routes_timers_0_and_1_and_tells_the_gates() -> None:
    b = Bench(intcap=0x4)
    b.tconf(0, ENB | PERIODIC | VAL_SET)
    b.tcmp(0, 100_000)  # 1 ms
    b.tconf(1, ENB | 31 << 9)
    b.tcmp(1, 50)
    b.w(0x10, 2)  # LEG_RT_CNF alone: no route change yet
    assert b.legacy == []
    b.enable(legacy=True)
    assert b.legacy == [True]
    b.clock.advance(3_000_000)
    assert b.rises[2] == [1_000_000, 2_000_000, 3_000_000]
    assert b.rises[8] == [500]
    b.w(0x10, 1)
    assert b.legacy == [True, False]


def test_a_64_bit_comparator_already_passed_fires_at_once() -> None:
    """QEMU arms a passed 64-bit comparator in the past: it interrupts at once; a periodic
    one then continues on its grid (comparator + k * period)."""
    b = Bench()
    b.w(0xF0, 100_000, 8)
    b.enable()
    b.tconf(2, ENB | 20 << 9)
    b.tcmp(2, 10)
    b.tconf(0, ENB | PERIODIC | VAL_SET | 2 << 9)
    b.tcmp(0, 30_000)  # accumulator and period 300 us: the grid 30000 k
    b.clock.advance(0)
    assert b.rises[20] == [0] and b.rises[2] == [0]
    assert b.r(T0 + CMP) == 120_000
    b.clock.advance(600_000)
    assert b.rises[2] == [0, 200_000, 500_000]
    assert b.rises[20] == [0]


def test_a_period_of_1_is_clamped_to_200_us_and_counts_exactly() -> None:
    b = Bench()
    b.tconf(0, ENB | PERIODIC | VAL_SET | 2 << 9)
    b.tcmp(0, 1)
    b.tcmp(0, 1)
    b.enable()
    b.clock.advance(NS_PER_SEC)
    assert len(b.rises[2]) == NS_PER_SEC // MIN_PERIOD_NS
    assert b.rises[2][:3] == [10, 10 + MIN_PERIOD_NS, 10 + 2 * MIN_PERIOD_NS]
    assert b.hpet.clamped_ticks == len(b.rises[2])
    b.clock.advance(1234)
    ticks = b.r(0xF0, 8)
    assert ticks == (NS_PER_SEC + 1234) // 10
    assert b.r(T0 + CMP, 8) == ticks + 1  # the next match, exact


def test_periods_at_the_minimum_are_not_clamped() -> None:
    b = Bench()
    b.tconf(0, ENB | PERIODIC | VAL_SET | 2 << 9)
    b.tcmp(0, 20_000)
    b.enable()
    b.clock.advance(10 * MIN_PERIOD_NS)
    assert b.hpet.clamped_ticks == 0 and len(b.rises[2]) == 10


def test_small_and_unaligned_accesses_read_0_and_are_dropped() -> None:
    b = Bench()
    assert b.r(0x000, 1) == 0 and b.r(0x000, 2) == 0 and b.r(0x002, 4) == 0
    assert b.r(0x004, 8) == 0
    b.w(0x010, 1, 1)
    b.w(0x010, 1, 2)
    assert b.r(0x010) == 0
    assert b.r(0x3FC) == 0  # beyond the three timers


def test_save_restore_round_trip_keeps_the_schedule() -> None:
    a = Bench()
    a.tconf(0, ENB | PERIODIC | VAL_SET | 2 << 9)
    a.tcmp(0, 100_000)
    a.tconf(1, LEVEL | ENB | 20 << 9)
    a.tcmp(1, 50)
    a.tconf(2, ENB | MODE32 | 20 << 9)
    a.tcmp(2, 0x10)
    a.w(0xF0, 0x20, 8)
    a.enable()
    a.clock.advance(12_345)
    state = a.hpet.save()
    assert [t["pending"] for t in state["timers"]] == ["match", "none", "wrap"]
    b = Bench()
    b.clock.advance(777)
    b.hpet.restore(state)
    assert b.hpet.save() == state
    assert b.lines[20].level  # the level timer's status holds its line after restore
    a.clock.advance(5_000_000)
    b.clock.advance(5_000_000)
    assert len(b.rises[2]) == 5
    assert [t - 12_345 for t in a.rises[2] if t > 12_345] == [t - 777 for t in b.rises[2]]
    assert a.hpet.save() == b.hpet.save()


def test_restore_rejects_states_the_hardware_cannot_be_in() -> None:
    import pytest

    from southbridge.core.state import StateError

    b = Bench()
    good = b.hpet.save()
    bad_states = []
    for field, value in (("config", 4), ("isr", 8), ("counter", 1 << 64)):
        bad_states.append(good | {field: value})
    t = dict(good["timers"][0])
    bad_states.append(good | {"timers": [t | {"config": 0}, *good["timers"][1:]]})
    bad_states.append(good | {"timers": [t | {"pending": "match"}, *good["timers"][1:]]})
    bad_states.append(
        good | {"timers": [t | {"config": 0x130, "cmp": 1 << 40}, *good["timers"][1:]]}
    )
    bad_states.append(good | {"isr": 1})  # status of an edge timer
    bad_states.append(good | {"timers": good["timers"][:2]})
    for bad in bad_states:
        with pytest.raises(StateError):
            b.hpet.restore(bad)
        assert b.hpet.save() == good
    # Running, a one-shot 64-bit comparator behind the counter cannot still wait a match.
    running = good | {"config": 1, "counter": 100}
    timers = [dict(x) | {"pending": "match"} for x in good["timers"]]
    timers[0]["cmp"] = 5
    with pytest.raises(StateError, match="pending"):
        b.hpet.restore(running | {"timers": timers})


def test_module_constants() -> None:
    assert hpet_mod.BASE == 0xFED00000 and hpet_mod.WINDOW_SIZE == 0x400
    assert hpet_mod.PC_INTCAP == 0x4


OFFSETS = [0x000, 0x004, 0x010, 0x014, 0x020, 0x024, 0x0F0, 0x0F4, 0x160, 0x3F8, 0x002]
OFFSETS += [0x100 + 0x20 * n + r for n in range(3) for r in (0, 4, 8, 0xC, 0x10, 0x14)]
ops = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["r", "w"]),
            st.sampled_from(OFFSETS),
            st.sampled_from([1, 2, 4, 8]),
            st.one_of(
                st.integers(0, (1 << 64) - 1),
                st.integers(0, 200_000),
                # timer configurations: level/edge, periodic, VAL_SET, 32-bit, routes 2/20/1
                st.sampled_from([0, 1, 3, 0x7FFF, 0x14E, 0x30E, 0x10A, 0xFFFF_FFFF]),
                st.sampled_from([0x2806, 0x280C, 0x284C, 0x40E, 0x44C, 0x54C, 0x406]),
            ),
        ),
        st.tuples(st.just("t"), st.just(0), st.just(0), st.integers(0, 3 * MIN_PERIOD_NS)),
    ),
    max_size=40,
)


def _check_invariants(b: Bench) -> None:
    h = b.hpet
    assert h.isr < 8 and h.config < 4
    for i, comp in enumerate(h.comparators):
        if h.isr >> i & 1:
            assert comp.level, "status bits belong to level-triggered timers"
    for pin, line in b.lines.items():
        want = any(h._asserting(i) and h._pin(i) == pin and h._line(i) is line for i in range(3))
        assert line.level == want
    assert (b.legacy[-1] if b.legacy else False) == h.legacy  # the gates were told


@settings(max_examples=300, deadline=None)
@given(seq=ops)
def test_any_register_sequence_never_raises_and_round_trips(
    seq: list[tuple[str, int, int, int]],
) -> None:
    b = Bench()
    last: int | None = None  # the counter while it runs without a stop
    for op, off, size, value in seq:
        if op == "r":
            b.r(off, size)
        elif op == "w":
            b.w(off, value & ((1 << (8 * size)) - 1), size)
        else:
            b.clock.advance(value)
        _check_invariants(b)
        if b.hpet.running:
            now = b.hpet.counter()
            if last is not None:
                assert 0 <= (now - last) % (1 << 64) <= 3 * MIN_PERIOD_NS // 10  # it counts up
            last = now
        else:
            last = None
    state = b.hpet.save()
    other = Bench()
    other.clock.advance(3)
    other.hpet.restore(state)
    assert other.hpet.save() == state
    b.hpet.restore(state)  # its own state, in place
    assert b.hpet.save() == state


ROUTES = (2, 8, 20, 1)
timer_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("conf"),
            st.integers(0, 2),
            st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans()),
            st.sampled_from(ROUTES),
        ),
        st.tuples(
            st.just("cmp"), st.integers(0, 2), st.integers(-2_000, 200_000), st.sampled_from([4, 8])
        ),
        st.tuples(st.just("gcfg"), st.integers(0, 3), st.just(0), st.just(0)),
        st.tuples(st.just("status"), st.integers(0, 7), st.just(0), st.just(0)),
        st.tuples(st.just("counter"), st.integers(0, (1 << 64) - 1), st.just(0), st.just(0)),
        st.tuples(st.just("adv"), st.integers(0, 600_000), st.just(0), st.just(0)),
    ),
    max_size=30,
)


setups = st.lists(
    st.tuples(
        st.tuples(st.booleans(), st.just(True), st.booleans(), st.booleans(), st.booleans()),
        st.sampled_from(ROUTES),
        st.integers(1, 100_000),
    ),
    min_size=3,
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(setup=setups, legacy=st.booleans(), seq=timer_ops)
def test_timer_programming_keeps_invariants_and_restores_to_the_same_future(
    setup: list[tuple[tuple[bool, bool, bool, bool, bool], int, int]],
    legacy: bool,
    seq: list[tuple[str, int, object, int]],
) -> None:
    """Guest-like programming of the comparators: the lines always follow status, enables
    and routes; a saved state restored into another HPET at the same instant interrupts
    at the same instants afterwards (unclamped timers) and saves the same again."""
    a = Bench()
    prologue: list[tuple[str, int, object, int]] = [("gcfg", 3 if legacy else 1, 0, 0)]
    for n, (bits, route, delta) in enumerate(setup):
        prologue += [("conf", n, bits, route), ("cmp", n, delta, 8), ("cmp", n, delta, 8)]
    for op, x, y, z in prologue + seq:
        if op == "conf":
            assert isinstance(y, tuple)
            level, enb, periodic, val_set, mode32 = y
            bits = LEVEL * level | ENB * enb | PERIODIC * periodic | VAL_SET * val_set
            a.tconf(x, bits | MODE32 * mode32 | z << 9)
        elif op == "cmp":
            assert isinstance(y, int)
            a.tcmp(x, max(0, a.hpet.counter() + y) & ((1 << (8 * z)) - 1), z)
        elif op == "gcfg":
            a.w(0x10, x)
        elif op == "status":
            a.w(0x20, x)
        elif op == "counter":
            a.w(0xF0, x, 8)
        else:
            a.clock.advance(x)
        _check_invariants(a)
    state = a.hpet.save()
    b = Bench()
    b.clock.set(a.clock.now())
    b.hpet.restore(state)
    assert b.hpet.save() == state
    assert {p: x.level for p, x in a.lines.items()} == {p: x.level for p, x in b.lines.items()}
    if any(c.clamped for c in a.hpet.comparators):
        return  # the clamped grid restarts at the next match after a restore
    now = a.clock.now()
    a.clock.advance(3_000_000)
    b.clock.advance(3_000_000)
    for pin in a.rises:
        assert [t for t in a.rises[pin] if t > now] == [t for t in b.rises[pin] if t > now]
    assert a.hpet.save() == b.hpet.save()


def test_same_instant_matches_interrupt_alike_after_a_restore() -> None:
    """Found by the test above: comparators 0 and 1 (edge) and 2 (level) on route 2 all
    match 10 ns ahead; timer 0's config is written again last, so it was armed after the
    others. A restored copy arms them in index order: the instant's interrupts must not
    depend on that (the HPET keeps same-instant matches in index order)."""
    edge, level = (False, True, False, False, False), (True, True, False, False, False)
    setup = [(edge, 2, 1), (edge, 2, 1), (level, 2, 1)]
    inner = test_timer_programming_keeps_invariants_and_restores_to_the_same_future
    inner.hypothesis.inner_test(setup=setup, legacy=False, seq=[("conf", 0, edge, 2)])  # type: ignore[attr-defined]
