"""The IDE function's saved state is attacker input too (tests/test_state_audit.py's audit,
applied here with drives attached, which the audit's default machine has none of): a disk
mid PIO read, a CD-ROM mid packet data-in, a bus-master table loaded. Every position dropped
or replaced by each hostile value restores or raises StateError, and a rejected state
leaves the function as it was; a transfer in progress resumes after a restore."""

from __future__ import annotations

import copy

from southbridge.core.state import StateError
from southbridge.devices.ide import regs as r
from southbridge.machine.ide import IdeUnit
from tests.idehelp import PRI, SEC, MemDisk, Rig, pattern
from tests.test_state_audit import HOSTILE, _mutate, _slots


def _busy_rig() -> tuple[Rig, MemDisk, MemDisk]:
    disk, disc = MemDisk(pattern(64)), MemDisk(pattern(8, 2048))
    t = Rig([IdeUnit(0, disk), IdeUnit(2, disc, cdrom=True)])
    t.m.ports.write(0xC004, 4, 0x10000)
    t.outb(0xC000, 0x08)
    t.lba28(PRI, 3, 2)
    t.outb(PRI + 7, r.CMD_READ_SECTORS)
    t.read_data(PRI, 64)
    t.outb(SEC + 6, 0xA0)
    t.outb(SEC + 4, 0x00)
    t.outb(SEC + 5, 0x08)  # byte count limit 2048
    t.outb(SEC + 7, r.CMD_PACKET)
    t.write_data(SEC, bytes([r.SC_READ_10, 0, 0, 0, 0, 1, 0, 0, 3]).ljust(12, b"\0"))
    t.read_data(SEC, 100)
    return t, disk, disc


def test_every_slot_with_every_hostile_value() -> None:
    t, _, _ = _busy_rig()
    part = t.ide
    base = part.save()
    ops: list[tuple[str, object]] = [("drop", None), ("bump", True), ("bump", False)]
    ops += [("flip", None), *(("set", v) for v in HOSTILE)]
    escaped = []
    for path in _slots(base):
        for n, (op, value) in enumerate(ops):
            if op == "drop" and not path:
                continue
            try:
                part.restore(_mutate(copy.deepcopy(base), path, op, value, value))
            except StateError as e:
                assert len(str(e)) < 1000
                assert part.save() == base, f"{path} {op} #{n}: a rejected state changed it"
            except Exception as e:
                escaped.append(f"{path} {op} #{n}: {type(e).__name__} {str(e)[:100]}")
            else:
                part.restore(base)
    assert not escaped, "\n".join(escaped[:20])
    part.restore(base)
    assert part.save() == base


def test_transfers_in_progress_resume_on_a_fresh_machine() -> None:
    t, disk, disc = _busy_rig()
    state = t.ide.save()
    t2, _, _ = _busy_rig()
    t2.ide.restore(state)
    t2.outb(SEC + 6, 0xA0)  # (the rig's selection is restored anyway)
    rest = t2.read_data(PRI, 1024 - 64)
    assert rest == bytes(disk.data[3 * 512 + 64 : 5 * 512])
    cd = t2.read_data(SEC, 2048 - 100)
    assert cd == bytes(disc.data[2048 + 100 : 2 * 2048])
    total = 0
    while t2.inb(SEC + 7) & r.DRQ:
        n = t2.inb(SEC + 4) | t2.inb(SEC + 5) << 8
        assert t2.read_data(SEC, n) == bytes(disc.data[2 * 2048 + total : 2 * 2048 + total + n])
        total += n
    assert total == 2 * 2048
