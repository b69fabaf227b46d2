"""Hypothesis: random register/unregister/permit/access/clock sequences never raise out of the
buses and keep their invariants."""

from __future__ import annotations

import itertools

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from southbridge.core.clock import ManualClock
from southbridge.core.device import BusError
from southbridge.core.hostports import FakeHostPorts
from southbridge.core.mmiobus import MmioBus
from southbridge.core.permissions import PortPermissions
from southbridge.core.portbus import PortBus
from tests.conftest import Reg

ports = st.integers(0, 0xFFFF)
sizes = st.sampled_from([1, 2, 4])
dev_sizes = st.sampled_from(
    [frozenset({1}), frozenset({2}), frozenset({4}), frozenset({1, 2, 4}), frozenset({2, 4})]
)


class PortBusMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.perms = PortPermissions()
        self.host = FakeHostPorts()
        self.bus = PortBus(self.perms, self.host)
        self.model: dict[int, tuple[int, Reg]] = {}  # base -> (length, device)
        self.clock = ManualClock()

    def _owner(self, port: int) -> Reg | None:
        for base, (length, dev) in self.model.items():
            if base <= port < base + length:
                return dev
        return None

    @rule(base=ports, length=st.integers(1, 16), sizes=dev_sizes)
    def register(self, base: int, length: int, sizes: frozenset[int]) -> None:
        dev = Reg(length, sizes)
        overlap = any(self._owner(p) for p in range(base, min(base + length, 0x10000)))
        try:
            self.bus.register(base, length, dev)
        except BusError:
            assert overlap or base + length > 0x10000
        else:
            assert not overlap
            self.model[base] = (length, dev)

    @rule(data=st.data())
    def unregister(self, data: st.DataObject) -> None:
        if self.model:
            base = data.draw(st.sampled_from(sorted(self.model)))
            self.bus.unregister(base)
            del self.model[base]

    @rule(base=ports, length=st.integers(1, 8), allow=st.booleans())
    def permit(self, base: int, length: int, allow: bool) -> None:
        length = min(length, 0x10000 - base)
        (self.perms.allow if allow else self.perms.deny)(base, length)

    @rule(port=ports, size=sizes)
    def read(self, port: int, size: int) -> None:
        v = self.bus.read(port, size)
        assert 0 <= v < 1 << (8 * size)
        if size == 1 and self._owner(port) is None and not self.perms.allowed(port):
            assert v == 0xFF

    @rule(port=ports, size=sizes, value=st.integers(0, 0xFFFFFFFF))
    def write(self, port: int, size: int, value: int) -> None:
        before = len(self.host.log)
        self.bus.write(port, size, value & ((1 << (8 * size)) - 1))
        for _, p, s, _ in self.host.log[before:]:
            assert all(self.perms.allowed(q) for q in range(p, p + s)), "forbidden host access"

    @rule(ns=st.integers(0, 10**9))
    def step(self, ns: int) -> None:
        self.clock.advance(ns)

    @invariant()
    def routes_match_model(self) -> None:
        for base, (length, dev) in self.model.items():
            for p in (base, base + length - 1):
                r = self.bus.find(p)
                assert r is not None and r.device is dev
        assert self.bus.faults == 0


TestPortBus = PortBusMachine.TestCase
TestPortBus.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


class MmioBusMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.bus = MmioBus()
        self.model: dict[int, int] = {}

    @rule(base=st.integers(0, 1 << 20), length=st.integers(1, 4096), sizes=dev_sizes)
    def register(self, base: int, length: int, sizes: frozenset[int]) -> None:
        overlap = any(b < base + length and base < b + n for b, n in self.model.items())
        try:
            self.bus.register(base, length, Reg(length, sizes | {8} if 4 in sizes else sizes))
        except BusError:
            assert overlap
        else:
            assert not overlap
            self.model[base] = length

    @rule(
        addr=st.integers(0, (1 << 20) + 8192),
        size=st.sampled_from([1, 2, 4, 8]),
        value=st.integers(0, (1 << 64) - 1),
    )
    def access(self, addr: int, size: int, value: int) -> None:
        self.bus.write(addr, size, value & ((1 << (8 * size)) - 1))
        assert 0 <= self.bus.read(addr, size) < 1 << (8 * size)

    @invariant()
    def sorted_and_disjoint(self) -> None:
        rs = self.bus.regions()
        assert all(a.end <= b.base for a, b in itertools.pairwise(rs))
        assert self.bus.faults == 0


TestMmioBus = MmioBusMachine.TestCase
TestMmioBus.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
