"""The IDE function through the qtest protocol, as QEMU's tests/qtest/ide-test.c drives
QEMU's: PCI set-up by config cycles, IDENTIFY and READ DMA, IRQ 14 watched on the IOAPIC's
inputs (edge: raised by completion, lowered by the status read)."""

from __future__ import annotations

from southbridge.core.clock import ManualClock
from southbridge.machine.ide import IdeSetup, IdeUnit
from southbridge.machine.pc import PcMachine
from tests.idehelp import MemDisk, pattern
from tests.qtesting import Qtest


def _qtest() -> tuple[Qtest, MemDisk]:
    disk = MemDisk(pattern(64))
    m = PcMachine(clock=ManualClock(), ide=IdeSetup([IdeUnit(0, disk)]))
    q = Qtest(m)
    for off, size, value in ((0x40, "w", 0x8000), (0x20, "l", 0xC000), (0x04, "w", 0x0005)):
        assert q.ask(f"outl 0xcf8 0x{0x80000900 | off:x}") == "OK\n"
        assert q.ask(f"out{size} 0xcfc 0x{value:x}") == "OK\n"
    assert q.ask("irq_intercept_in ioapic") == "OK\n"
    return q, disk


def test_identify_raises_irq14_and_status_read_lowers_it() -> None:
    q, _ = _qtest()
    assert q.ask("outb 0x1f6 0xa0") == "OK\n"
    assert q.ask("outb 0x1f7 0xec") == "IRQ raise 14\nOK\n"
    assert q.ask("inb 0x3f6") == "OK 0x0058\n"
    assert q.ask("inb 0x1f7") == "IRQ lower 14\nOK 0x0058\n"
    assert q.ask("inw 0x1f0") == "OK 0x0040\n"  # word 0: fixed disk


def test_read_dma_via_qtest_memory() -> None:
    q, disk = _qtest()
    # One PRD entry: 1024 bytes at 0x100000, end of table; the table at 0x8000.
    assert q.ask("writel 0x8000 0x100000") == "OK\n"
    assert q.ask("writel 0x8004 0x80000400") == "OK\n"
    assert q.ask("outl 0xc004 0x8000") == "OK\n"
    for port, value in ((0x1F6, 0xE0), (0x1F2, 2), (0x1F3, 4), (0x1F4, 0), (0x1F5, 0)):
        q.ask(f"outb 0x{port:x} 0x{value:x}")
    assert q.ask("outb 0x1f7 0xc8") == "OK\n"
    assert q.ask("outb 0xc000 0x09") == "IRQ raise 14\nOK\n"
    assert q.ask("inb 0xc002") == "OK 0x0004\n"
    reply = q.ask("read 0x100000 0x400")
    assert reply == f"OK 0x{bytes(disk.data[4 * 512 : 6 * 512]).hex()}\n"
