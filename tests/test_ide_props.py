"""Hypothesis: any sequence of port accesses to both IDE channels and the bus-master block,
with any PRD table contents in guest memory, never raises and never hangs (each access
returns: a DMA walk is bounded by the transfer and the table's 64 KiB page), and the state
then saved restores into a fresh machine as the same state."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from southbridge.machine.ide import IdeUnit
from tests.idehelp import MemDisk, QueuedExecutor, Rig, pattern

TABLE = 0x10000
PORTS = [
    *((0, off) for off in range(8)),  # primary command block
    (1, 0),  # primary control
    *((2, off) for off in range(8)),  # secondary command block
    (3, 0),
    *((4, off) for off in range(16)),  # bus master
]
# Registers and values that make the interesting paths likely: commands, DMA, packets.
COMMANDS = [0x20, 0x24, 0x30, 0xC4, 0xC5, 0xC6, 0xC8, 0xCA, 0x25, 0x35, 0xEC, 0xA1, 0xA0]
COMMANDS += [0x91, 0xEF, 0xE7, 0xE5, 0x08, 0x90, 0x40, 0x70, 0x00, 0xFF]
access = st.one_of(
    st.tuples(
        st.just("w"), st.sampled_from(PORTS), st.sampled_from([1, 2, 4]), st.integers(0, 0xFFFFFFFF)
    ),
    st.tuples(
        st.just("w"), st.sampled_from([(0, 7), (2, 7)]), st.just(1), st.sampled_from(COMMANDS)
    ),
    st.tuples(
        st.just("w"), st.sampled_from([(4, 0), (4, 8)]), st.just(1), st.sampled_from([0, 1, 8, 9])
    ),
    st.tuples(st.just("r"), st.sampled_from(PORTS), st.sampled_from([1, 2, 4]), st.just(0)),
    st.tuples(st.just("run"), st.just((0, 0)), st.just(1), st.just(0)),
)


def _rig(queued: bool) -> tuple[Rig, QueuedExecutor]:
    ex = QueuedExecutor()
    units = [
        IdeUnit(0, MemDisk(pattern(256))),
        IdeUnit(1, MemDisk(pattern(8), read_only=True)),
        IdeUnit(2, MemDisk(pattern(8, 2048)), cdrom=True),
    ]
    t = Rig(units, executor=(lambda lock, name: ex) if queued else None)
    t.m.ports.write(0xC004, 4, TABLE)
    t.m.ports.write(0xC00C, 4, TABLE + 0x100)
    return t, ex


def _device(t: Rig, which: int) -> Any:
    chans = t.ide.channels
    return [
        chans[0].command_block,
        chans[0].control_block,
        chans[1].command_block,
        chans[1].control_block,
        t.ide.bmio,
    ][which]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.booleans(),
    st.binary(min_size=0, max_size=512),
    st.lists(access, max_size=80),
)
def test_any_port_sequence_and_prd_table_never_raise(
    queued: bool, table: bytes, ops: list[tuple[str, tuple[int, int], int, int]]
) -> None:
    t, ex = _rig(queued)
    t.m.space.write_bytes(TABLE, table)
    for kind, (which, off), size, value in ops:
        dev = _device(t, which)
        if kind == "run":
            ex.run_all()
        elif kind == "w":
            if which in (1, 3):
                size = 1
            dev.write(off, size, value & ((1 << (8 * size)) - 1))
        else:
            if which in (1, 3):
                size = 1
            assert 0 <= dev.read(off, size) < 1 << (8 * size)
    ex.run_all()
    state = t.ide.save()
    t2, _ = _rig(queued)
    t2.m.space.write_bytes(TABLE, table)
    t2.ide.restore(state)
    assert t2.ide.save() == state
