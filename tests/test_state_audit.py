"""Restored state is attacker input (issue 14 item 3): every device kind of the pc, handed a
mutated copy of its own saved state (keys dropped or added, wrong types, huge integers, lists
nested thousands deep, out-of-range values, another device's state), either restores or
raises StateError, and a rejected machine state leaves the machine as it was."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from southbridge.core.state import (
    StateError,
    Stateful,
    brief,
    check_version,
    get_hex,
    get_int,
)
from southbridge.machine.pc import PcConfig, PcMachine


def _deep(depth: int, inner: object = 0) -> object:
    x = inner
    for _ in range(depth):
        x = [x]
    return x


def _deep_dict(depth: int) -> object:
    x: object = {}
    for _ in range(depth):
        x = {"a": x}
    return x


# Values a hostile state file could hold in any position.
HOSTILE: list[object] = [
    None,
    True,
    False,
    1.0,
    float("nan"),
    -1,
    0,
    1 << 64,
    1 << 70_000,  # repr() of this raises ValueError (int-to-str digit limit)
    -(1 << 70_000),
    "",
    "zz",
    "0",
    "00" * 100_000,
    b"\x00" * 16,
    [],
    {},
    [0] * 100_000,
    _deep(5_000),  # repr() of this raises RecursionError
    _deep_dict(5_000),
    {"kind": "i8254", "version": 1},
]


def _machine() -> PcMachine:
    return PcMachine(PcConfig(smp=2), with_ram=False, debugcon=_Sink())


class _Sink:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def _slots(state: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every position inside a saved state, as a path of keys and indexes."""
    out = [path]
    if len(path) > 6:  # not into the hostile deep values an earlier mutation put there
        return out
    if isinstance(state, dict):
        for k, v in state.items():
            out += _slots(v, (*path, k))
    elif isinstance(state, list) and len(state) <= 64:
        for i, v in enumerate(state):
            out += _slots(v, (*path, i))
    return out


def _mutate(state: Any, path: tuple[object, ...], op: str, value: object, other: Any) -> Any:
    if not path:
        return value if op != "other" else other
    parent = state
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    old = parent[key]
    if op == "drop":
        del parent[key]
    elif op == "add" and isinstance(parent, dict):
        parent["x-unknown"] = value
    elif op == "bump" and isinstance(old, int) and not isinstance(old, bool):
        parent[key] = old + (1 if isinstance(value, bool) and value else -1)
    elif op == "flip" and isinstance(old, int) and not isinstance(old, bool):
        parent[key] = old ^ (1 << (len(path) * 7 % 64))
    elif op == "other":
        parent[key] = other
    else:
        parent[key] = value
    return state


_KEYS = sorted(_machine().stateful())


OPS = ("drop", "add", "bump", "flip", "set", "set", "other")

# A mutation plan is plain integers (slot, op, value, other): drawn independently of the
# state so generation is reproducible and a failure report stays readable.
plans = st.lists(
    st.tuples(
        st.integers(0, 1 << 16),
        st.integers(0, len(OPS) - 1),
        st.integers(0, len(HOSTILE) - 1),
        st.integers(0, 63),
    ),
    min_size=1,
    max_size=3,
)


def mutated(base: Any, others: list[Any], plan: list[tuple[int, int, int, int]]) -> Any:
    state = copy.deepcopy(base)
    for slot, op, value, other in plan:
        slots = _slots(state)
        path = slots[slot % len(slots)]
        other_state = copy.deepcopy(others[other % len(others)])
        with contextlib.suppress(KeyError, IndexError, TypeError):  # path gone: skip
            state = _mutate(state, path, OPS[op], HOSTILE[value], other_state)
    return state


def _restore_or_state_error(part: Stateful, state: object) -> None:
    try:
        part.restore(state)  # type: ignore[arg-type]
    except StateError as e:
        assert len(str(e)) < 1000, "error messages stay short whatever the state holds"
    except Exception as e:
        pytest.fail(f"{type(e).__name__} escaped restore: {brief(str(e))}")


@pytest.mark.parametrize("key", _KEYS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans)
def test_mutated_device_state_restores_or_raises_state_error(
    key: str, plan: list[tuple[int, int, int, int]]
) -> None:
    m = _machine()
    parts = m.stateful()
    part = parts[key]
    base = part.save()
    others = [p.save() for p in parts.values()]
    _restore_or_state_error(part, mutated(base, others, plan))
    part.restore(base)  # the device still takes its own saved state afterwards
    assert part.save() == base


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans)
def test_mutated_machine_state_restores_or_leaves_machine_unchanged(
    plan: list[tuple[int, int, int, int]],
) -> None:
    m = _machine()
    m.ports.write(0x21, 1, 0xB8)  # some non-reset state: PIC mask, CMOS index, POST code
    m.ports.write(0x70, 1, 0x0A)
    m.ports.write(0x80, 1, 0x42)
    base = m.save()
    others = list(base["devices"].values())
    bad = mutated(base, others, plan)
    try:
        m.restore(bad)
    except StateError:
        assert m.save() == base, "a rejected state changes nothing"
    except Exception as e:
        pytest.fail(f"{type(e).__name__} escaped Machine.restore: {brief(str(e))}")


def test_whole_machine_keys_are_checked() -> None:
    m = _machine()
    state = m.save()
    missing = copy.deepcopy(state)
    del missing["devices"]["rtc"]
    with pytest.raises(StateError, match="missing rtc"):
        m.restore(missing)
    unknown = copy.deepcopy(state)
    unknown["devices"]["x-unknown"] = {}
    with pytest.raises(StateError, match="unknown 'x-unknown'"):
        m.restore(unknown)
    # A state of a 1-CPU pc does not fit a 2-CPU one (lapic1 is missing).
    one = PcMachine(PcConfig(smp=1), with_ram=False, debugcon=_Sink()).save()
    with pytest.raises(StateError, match="missing lapic1"):
        m.restore(one)


def test_cross_device_invariant_pic_and_ioapic_see_the_same_wires() -> None:
    """ISA IRQ 4 reaches 8259 IR4 and IOAPIC pin 4 (MP spec / ACPI: identity-mapped ISA
    IRQs but IRQ0 -> pin 2); a state where only one of them sees it high is rejected."""
    m = _machine()
    m.gsi.input(4, "probe").set(True)
    state = m.save()
    assert state["devices"]["ioapic"]["lines"] & (1 << 4)
    state["devices"]["ioapic"]["lines"] &= ~(1 << 4)
    with pytest.raises(StateError, match="ISA IRQ 4"):
        m.restore(state)


def test_round_trip_into_a_fresh_machine_gives_the_same_answers() -> None:
    """Save, restore into a new machine on its own manual clock, then the same accesses
    (PIT counter, CMOS, PIC, UART scratch and LSR, fw_cfg signature stream) answer alike."""
    a = _machine()
    a.ports.write(0x43, 1, 0x34)  # PIT ch0 mode 2, lobyte/hibyte
    a.ports.write(0x40, 1, 0x00)
    a.ports.write(0x40, 1, 0x10)
    a.clock.advance(12_345)  # type: ignore[attr-defined]
    a.ports.write(0x21, 1, 0xFA)
    a.ports.write(0x3FF, 1, 0x5A)  # COM1 scratch
    a.ports.write(0x510, 2, 0x0000)  # fw_cfg signature, one byte read so far
    a.ports.read(0x511, 1)
    a.ports.write(0x70, 1, 0x0B)
    state = a.save()
    b = _machine()
    b.clock.advance(999_999)  # type: ignore[attr-defined]
    b.restore(state)

    def probe(m: PcMachine) -> list[int]:
        m.clock.advance(1_000)  # type: ignore[attr-defined]
        m.ports.write(0x43, 1, 0x00)  # latch ch0
        out = [m.ports.read(0x40, 1), m.ports.read(0x40, 1)]
        out += [m.ports.read(0x21, 1), m.ports.read(0x3FF, 1), m.ports.read(0x3FD, 1)]
        out += [m.ports.read(0x511, 1) for _ in range(3)]
        out.append(m.ports.read(0x71, 1))
        return out

    assert probe(a) == probe(b)
    assert a.save() == b.save()


def test_messages_are_bounded_and_versions_must_be_ints() -> None:
    with pytest.raises(StateError) as e:
        get_int({"x": 1 << 70_000}, "x", 0, 1)
    assert len(str(e.value)) < 200
    with pytest.raises(StateError):
        get_int({"x": _deep(5_000)}, "x", 0, 1)
    with pytest.raises(StateError):
        get_hex({"x": _deep(5_000)}, "x")
    for version in (True, 1.0, "1", None):
        with pytest.raises(StateError, match="unsupported state version"):
            check_version({"kind": "k", "version": version}, "k", 1)
    assert check_version({"kind": "k", "version": 1}, "k", 1) == {"kind": "k", "version": 1}
    assert brief(_deep(5_000)) == "<list of 1>"
    assert brief(1 << 100) == "<101-bit integer>"


@pytest.mark.parametrize("key", _KEYS)
def test_every_slot_of_every_device_state_with_every_hostile_value(key: str) -> None:
    """The audit, exhaustively: each position of the device's saved state dropped, or
    replaced by each hostile value, restores or raises StateError."""
    m = _machine()
    parts = m.stateful()
    part = parts[key]
    base = part.save()
    others = [p.save() for k, p in parts.items() if p.STATE_KIND != part.STATE_KIND]
    escaped = []
    ops: list[tuple[str, object]] = [("drop", None), ("bump", True), ("bump", False)]
    ops += [("flip", None), *(("set", v) for v in HOSTILE)]
    for path in _slots(base):
        for n, (op, value) in enumerate(ops + [("other", o) for o in others]):
            if op == "drop" and not path:
                continue
            try:
                part.restore(_mutate(copy.deepcopy(base), path, op, value, value))
            except StateError as e:
                assert len(str(e)) < 1000, "error messages stay short whatever the state holds"
            except Exception as e:
                escaped.append(f"{path} {op} #{n}: {type(e).__name__} {brief(str(e))}")
    assert not escaped, "\n".join(escaped)
    part.restore(base)
    assert part.save() == base


def test_a_state_of_another_kind_is_rejected() -> None:
    """Each device checks the kind its state was saved by: every pair of distinct kinds is
    refused (StateError), so states cannot be restored into the wrong device."""
    parts = _machine().stateful()
    saved = {key: part.save() for key, part in parts.items()}
    for key, part in parts.items():
        for other in saved.values():
            if other["kind"] != part.STATE_KIND:
                with pytest.raises(StateError):
                    part.restore(copy.deepcopy(other))
        assert part.save() == saved[key] or key.startswith(("pit", "rtc"))
