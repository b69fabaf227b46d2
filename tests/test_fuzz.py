"""`southbridge fuzz` (issue 15, items 2-3): the decoder, the minimizer, each kind of
finding proved on a deliberately broken toy device, the scripts under tests/fuzz_regressions
replayed with every check, and the command line."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.cli import main
from southbridge.core import clock as clock_mod
from southbridge.core.device import BusDevice
from southbridge.fuzz import script
from southbridge.fuzz.detect import Bounds, Finding
from southbridge.fuzz.engine import Campaign, load_atheris, mutate
from southbridge.fuzz.minimize import minimize
from southbridge.fuzz.ops import (
    CONFIG_ADDRESS,
    DMA_BASE,
    DMA_SIZE,
    Layout,
    Op,
    ScriptError,
    decode,
    from_line,
    to_line,
)
from southbridge.fuzz.world import DomainsWorld, World, firmware_prelude, make_world
from southbridge.host.simulated import REG_SCRATCH
from southbridge.machine.pc import PcMachine
from tests import cli

REGRESSIONS = Path(__file__).parent / "fuzz_regressions"
TOY_PORT = 0x700
DESC = bytes([0xAA, 0xAB, 0xAC, 0xAD])  # pattern 0xAA, stride 1


# -- decoder ------------------------------------------------------------------------------
def test_decoder_reads_each_kind_from_its_bytes() -> None:
    lay = Layout(ports=[(0x40, 4)], mmio=[(0xFEE00000, 0x1000)], functions=[(0, 8)])
    kinds = lay.kinds()
    # out, size 1 (b // kinds = 0), in-range selector 1 -> range 0, offset 3; value raw 0xAB.
    out = bytes([kinds.index("out"), 1, 3, 0, 0, 0xAB])
    # MMIO write of size 4 (b // kinds = 2) at range offset 0x320, value small 5.
    w = bytes([kinds.index("write") + 2 * len(kinds), 1, 0x20, 0x03, 0, 0, 1 | 5 << 2])
    # config read of size 1 at register 0x41 of function (0, 8).
    c = bytes([kinds.index("cfgr"), 1, 0x41])
    step = bytes([kinds.index("step"), 3])  # STEPS[3] = 1 us
    ops = decode(out + w + c + step, lay)
    assert ops == [
        Op("out", 1, 0x43, 0xAB),
        Op("write", 4, 0xFEE00320, 5),
        Op("out", 4, CONFIG_ADDRESS, 0x8000_0840),
        Op("in", 1, 0xCFD),
        Op("step", 0, 1_000),
    ]


def test_decoder_drops_a_truncated_last_op_and_honours_max_ops() -> None:
    lay = Layout(ports=[(0x40, 4)])
    assert decode(bytes([lay.kinds().index("out"), 1, 3]), lay) == []
    assert len(decode(bytes(range(256)) * 8, lay, max_ops=5)) == 5


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_decode_to_ops_that_round_trip_through_qtest_lines(data: bytes) -> None:
    lay = Layout(ports=[(0x3F8, 8)], mmio=[(0xFEC00000, 0x1000)], domains=["a", "b"])
    for op in decode(data, lay):
        if op.kind == "pattern":  # a script has its fills as writes instead
            assert from_line(to_line(op, lay.domains), lay.domains) is None
            continue
        assert from_line(to_line(op, lay.domains), lay.domains) == op
        if op.kind == "mem":
            assert op.addr >= DMA_BASE and op.addr + len(op.data) <= DMA_BASE + DMA_SIZE
        if op.kind in ("in", "out"):
            assert 0 <= op.addr <= 0xFFFF


def test_script_parser_refuses_what_it_does_not_write() -> None:
    assert from_line("# a comment") is None and from_line("   ") is None
    for bad in ("frobnicate 1", "outb", "write 0x0 0x10000 0x00", "# domain nobody"):
        with pytest.raises(ScriptError):
            from_line(bad, ["u1"])


def test_mutator_is_deterministic_per_seed() -> None:
    corpus = [bytes(range(64))]
    a = [mutate(random.Random(7), corpus[0], corpus) for _ in range(5)]
    b = [mutate(random.Random(7), corpus[0], corpus) for _ in range(5)]
    assert a == b


# -- minimizer ----------------------------------------------------------------------------
def test_minimizer_keeps_only_the_ops_the_finding_needs() -> None:
    ops = [Op("out", 1, p, 0) for p in range(40)]
    need = {ops[3], ops[17], ops[31]}
    small = minimize(ops, lambda cand: need <= set(cand))
    assert small == [ops[3], ops[17], ops[31]]


def test_minimizer_respects_its_budget() -> None:
    calls = 0

    def repro(cand: list[Op]) -> bool:
        nonlocal calls
        calls += 1
        return True

    minimize([Op("out", 1, p, 0) for p in range(1000)], repro, max_tries=10)
    assert calls <= 10


# -- the machine and the prelude ------------------------------------------------------------
def test_prelude_maps_every_bar_so_the_targets_come_from_the_buses() -> None:
    w = make_world("virtio")
    try:
        w.run([])
        m = w.units[0].machine
        assert len(m.virtio) == 4
        names = {r.name for r in [*m.ports.regions(), *m.mmio.regions()]}
        assert all(any(n.startswith(fn.name) for n in names) for fn in m.virtio)
        assert w.layout.mmio and all(base >= 0xE000_0000 for base, _ in w.layout.mmio)
        assert sorted(w.layout.functions) == sorted((0, fn.devfn) for fn in m.virtio)
    finally:
        w.close()


def test_prelude_replays_as_plain_qtest_lines() -> None:
    ops = firmware_prelude(PcMachine())
    assert ops and all(op.kind == "out" for op in ops)


# -- each finding kind, on a toy device that has that bug ---------------------------------
class Toy(BusDevice):
    io_sizes = frozenset({1})

    def __init__(self, world: World) -> None:
        self.world = world
        self.clock = world.units[0].clock
        self.leak: list[bytes] = []
        self.timers: list[object] = []

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            raise RuntimeError("toy bug")
        if offset == 1:
            t = self.clock.timer(self._boom, "toy-boom")
            t.arm_in(10)
        elif offset == 2:
            time.sleep(0.05)  # a toy: real devices never sleep
        elif offset == 3:
            for _ in range(5000):
                self.clock.timer(lambda: None, "toy-many").arm_in(10**9)
        elif offset == 4:
            self.storm = self.clock.timer(self._again, "toy-storm")
            self.storm.arm_in(1)
        elif offset == 5:
            self.leak.append(bytes(1 << 20))
        elif offset == 6 and self._desc() == DESC:  # a bus master with a bad descriptor
            raise RuntimeError("toy DMA bug")

    def _desc(self) -> bytes:
        return self.world.units[0].machine.space.read_bytes(DMA_BASE + 0x100, 4)

    def _boom(self) -> None:
        raise ValueError("timer bug")

    def _again(self) -> None:
        self.storm.arm_in(1)


class ToyWorld(World):
    def build(self) -> None:
        super().build()
        self.units[0].machine.ports.register(TOY_PORT, 8, Toy(self), "toy")


@pytest.mark.parametrize(
    ("offset", "kind", "words"),
    [
        (0, "exception", "bus fault"),
        (1, "exception", "ValueError"),
        (2, "slow", "took"),
        (3, "memory", "timer heap"),
        (4, "rate", "toy-storm"),
    ],
)
def test_each_detector_fires_on_its_toy_bug(offset: int, kind: str, words: str) -> None:
    w = ToyWorld("toy", Bounds(op_s=0.02) if kind == "slow" else Bounds())
    try:
        ops = [Op("out", 1, 0x80, 1), Op("out", 1, TOY_PORT + offset, 1), Op("step", 0, 1_000)]
        f = w.run(ops)
        assert f is not None and f.kind == kind and words in f.detail, f
        assert f.index == (2 if kind in ("rate",) or offset == 1 else 1)
    finally:
        w.close()


def test_dma_reads_find_the_pattern_and_the_script_carries_it_as_writes() -> None:
    w = ToyWorld("toy")
    try:
        ops = [Op("pattern", 1, 0, 1, b"\xaa"), Op("out", 1, TOY_PORT + 6, 0)]
        f = w.run(ops)
        assert f is not None and f.kind == "exception" and f.index == 1
        assert [(i, gpa) for i, gpa, _ in w.fills] == [(1, DMA_BASE + 0x100)]
        explicit = w.materialize(ops)
        assert explicit == [Op("mem", 4, DMA_BASE + 0x100, 0, DESC), ops[1]]
        w.fill = False
        assert w.run(ops) is None, "without the fill the device reads zeroes"
        again = w.run(explicit)
        assert again is not None and again.signature() == f.signature()
        w.fill = True
        # The input's own data is never filled over.
        mine = Op("mem", 4, DMA_BASE + 0x100, 0, bytes(4))
        assert w.run([mine, *ops]) is None and w.fills == []
    finally:
        w.close()


def test_a_logged_traceback_is_a_finding() -> None:
    import logging

    class Logs(Toy):
        def write(self, offset: int, size: int, value: int) -> None:
            try:
                raise KeyError("hidden")
            except KeyError:
                logging.getLogger("southbridge.toy").exception("caught it")

    class LogWorld(World):
        def build(self) -> None:
            super().build()
            self.units[0].machine.ports.register(TOY_PORT, 1, Logs(self), "toy")

    w = LogWorld("toy")
    try:
        f = w.run([Op("out", 1, TOY_PORT, 0)])
        assert f is not None and f.kind == "exception" and "KeyError" in f.detail
    finally:
        w.close()


def test_heap_growth_over_an_input_is_a_finding_with_tracemalloc() -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        w = ToyWorld("toy", Bounds(memory_bytes=4 << 20), memory=True)
        try:
            f = w.run([Op("out", 1, TOY_PORT + 5, 0)] * 8)
            assert f is not None and f.kind == "memory" and "heap grows" in f.detail
        finally:
            w.close()
    finally:
        tracemalloc.stop()


class LeakyDomains(DomainsWorld):
    """u2 gets a device wired straight to u1's NIC registers (offset 0) and to u1's RTC
    (offset 1): the isolation bugs the checks must see."""

    def build(self) -> None:
        super().build()
        world = self
        u1 = self.units[1].machine

        class Bridge(BusDevice):
            io_sizes = frozenset({1})

            def read(self, offset: int, size: int) -> int:
                return 0

            def write(self, offset: int, size: int, value: int) -> None:
                if offset == 0:
                    assert world._nic.io is not None
                    world._nic.io.write(REG_SCRATCH, 1, value)
                else:
                    u1.rtc.cmos_set(0x50, value)

        self.units[2].machine.ports.register(TOY_PORT, 2, Bridge(), "bridge")


@pytest.mark.parametrize(("offset", "words"), [(0, "reached u1's"), (1, "changed u1's state")])
def test_isolation_detector_fires_on_a_leaky_domain(offset: int, words: str) -> None:
    w = LeakyDomains("domains")
    try:
        ops = [Op("domain", 0, 2), Op("out", 1, TOY_PORT + offset, 0x5A), Op("domain", 0, 0)]
        f = w.run(ops)
        assert f is not None and f.kind == "isolation" and words in f.detail, f
        assert "u2" in f.detail
    finally:
        w.close()


def test_a_domains_finding_script_switches_domains_on_replay() -> None:
    w = LeakyDomains("domains")
    try:
        ops = [Op("domain", 0, 2), Op("out", 1, TOY_PORT, 0x5A)]
        f = w.run(ops)
        assert f is not None
        text = script.render(w, f, ops)
        assert "# domain u2\noutb 0x700 0x5a\n" in text
        again = script.replay(text, w)
        assert again is not None and again.signature() == f.signature()
    finally:
        w.close()


def test_the_real_domains_pass_the_same_checks() -> None:
    w = make_world("domains")
    try:
        ops = [Op("domain", 0, 2), Op("out", 1, TOY_PORT, 0x5A), Op("out", 4, 0xC004, 1)]
        ops += [Op("domain", 0, 0), Op("out", 4, 0xC004, 1), Op("domain", 0, 1)]
        ops += [Op("out", 4, 0xC004, 7), Op("step", 0, 1_000_000)]
        assert w.run(ops) is None
    finally:
        w.close()


# -- campaigns, scripts, regressions ------------------------------------------------------
def test_campaign_minimizes_and_writes_a_script_that_replays(tmp_path: Path) -> None:
    class ToyCampaign(Campaign):
        def __post_init__(self) -> None:
            super().__post_init__()
            self.world.close()
            self.world = ToyWorld("toy", self.bounds)

    c = ToyCampaign("toy", seed=3, runs=30, out=tmp_path, report=lambda line: None)
    stats = c.run_random()
    assert stats.findings, "a toy with five bugs on 8 ports is found in 30 inputs"
    finding, path = stats.findings[0]
    assert path is not None and path.exists()
    text = path.read_text()
    assert text.startswith(f"# southbridge fuzz finding: {finding.kind}")
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(body) <= len(c.world.prelude) + 4, "minimized to the prelude and a few ops"
    w = ToyWorld("toy", c.bounds)
    try:
        again = script.replay(text, w)
        assert again is not None and again.signature() == finding.signature()
    finally:
        w.close()


def test_a_fixed_seed_campaign_is_reproducible() -> None:
    a = Campaign("rtc", seed=11, runs=4, report=lambda line: None).run_random()
    b = Campaign("rtc", seed=11, runs=4, report=lambda line: None).run_random()
    assert (a.inputs, a.ops) == (b.inputs, b.ops) and a.ops > 0 and not a.findings


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*.qtest")), ids=lambda p: p.name)
def test_regression_scripts_replay_without_findings(path: Path) -> None:
    text = path.read_text()
    w = make_world(script.target_of(text))
    try:
        assert script.replay(text, w) is None
    finally:
        w.close()


def test_the_regression_scripts_are_findings_without_the_fixes() -> None:
    """The clamps and the heap compaction are what make them pass."""

    class Unclamped(World):
        def build(self) -> None:
            super().build()
            m = self.units[0].machine
            m.pit.min_period_ns = 0
            for lapic in m.lapics:
                lapic.min_timer_period_ns = 1

    for name, kind in (
        ("rate-lapic-periodic-vector-below-16.qtest", "rate"),
        ("rate-pit-count-2.qtest", "rate"),
    ):
        w = Unclamped("all")
        try:
            f = script.replay((REGRESSIONS / name).read_text(), w)
            assert f is not None and f.kind == kind, (name, f)
        finally:
            w.close()


def test_heap_regression_is_a_finding_without_compaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock_mod, "COMPACT_MIN", 1 << 40)
    w = make_world("lapic")
    try:
        f = script.replay((REGRESSIONS / "memory-lapic-oneshot-rearm.qtest").read_text(), w)
        assert f is not None and f.kind == "memory"
    finally:
        w.close()


def test_plain_qtest_replays_a_finding_script(tmp_path: Path) -> None:
    path = REGRESSIONS / "rate-pit-count-2.qtest"
    r = cli.run("qtest", str(path))
    assert r.returncode == 0 and "FAIL" not in r.stdout, r
    assert r.stdout.count("OK") == 4


# -- command line -------------------------------------------------------------------------
def test_cli_runs_lists_and_replays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--list"]) == 0
    listed = capsys.readouterr().out.split()
    for t in ("all", "domains", "pit", "pic", "rtc", "uart", "pci", "fw_cfg", "lapic"):
        assert t in listed
    assert {"ioapic", "piix4pm", "virtio", "virtio-blk0"} <= set(listed)
    argv = ["fuzz", "--engine", "random", "--target", "uart", "--runs", "3", "--seed", "5"]
    assert main([*argv, "--out", str(tmp_path / "f"), "--corpus", str(tmp_path / "c")]) == 0
    assert "3 inputs" in capsys.readouterr().out
    scripts = [str(p) for p in sorted(REGRESSIONS.glob("*.qtest"))]
    assert main(["fuzz", "--replay", *scripts]) == 0
    assert capsys.readouterr().out.count("no finding") == len(scripts)


def test_cli_replay_of_a_finding_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    heap = REGRESSIONS / "memory-lapic-oneshot-rearm.qtest"
    monkeypatch.setattr(clock_mod, "COMPACT_MIN", 1 << 40)  # the heap as it was
    assert main(["fuzz", "--replay", str(heap)]) == 1
    assert "finding memory: timer heap holds" in capsys.readouterr().out
    bad = tmp_path / "f.qtest"
    bad.write_text("# target: nosuch\n")
    assert "nosuch" in cli.refused(cli.run("fuzz", "--replay", str(bad)))


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["--runs", "0"], "--runs"),
        (["--runs", "x"], "--runs"),
        (["--ops", "-3"], "--ops"),
        (["--time", "nan"], "--time"),
        (["--time", "1e308"], "--time"),
        (["--seed", "1" + "0" * 30], "--seed"),
        (["--target", "nope"], "nope"),
        (["--engine", "libfuzzer"], "--engine"),
    ],
)
def test_bad_options_are_one_line(args: list[str], word: str) -> None:
    assert word in cli.refused(cli.run("fuzz", *args))


@pytest.mark.skipif(load_atheris() is None, reason="atheris is not installed")
def test_atheris_engine_runs_a_bounded_campaign(tmp_path: Path) -> None:
    r = cli.run("fuzz", "--engine", "atheris", "--target", "rtc", "--runs", "20", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "fuzz: target rtc: 20 inputs" in r.stderr
    # libFuzzer sees southbridge's edges (the package was imported before the command ran,
    # so the functions already loaded are instrumented in place).
    inited = re.search(r"INITED cov: (\d+)", r.stderr)
    assert inited is not None and int(inited.group(1)) > 200, r.stderr[-2000:]


def test_finding_signature_ignores_the_numbers_that_vary() -> None:
    a = Finding("rate", "timer pit-ch0 fired 9 times in 10 ns", 4)
    b = Finding("rate", "timer pit-ch0 fired 12 times in 10 ns", 7)
    assert a.signature() == b.signature()
