"""The demo device: registers through its BARs, interrupts (INTx, MSI, MSI-X) and DMA."""

from __future__ import annotations

import pytest

from southbridge.core.clock import ManualClock
from southbridge.core.state import StateError
from southbridge.machine.pc import PcMachine
from southbridge.pci.config import CMD_IO, CMD_MASTER, CMD_MEMORY
from southbridge.pci.demo import (
    BUF_OFFSET,
    DEMO_ID,
    DMA_DONE_BIT,
    DMA_ERROR,
    DMA_IRQ,
    DMA_START,
    DMA_TO_MEMORY,
    DemoDevice,
)
from southbridge.pci.msi import MsiMessage, MsiRecorder
from southbridge.pci.piix3 import PIRQRC

BAR0 = 0xFEBF0000
IOBASE = 0xC000


def setup() -> tuple[PcMachine, DemoDevice]:
    """A pc machine with the demo device's BARs programmed as firmware would, by port I/O."""
    m = PcMachine(clock=ManualClock())

    def cfg(reg: int, value: int) -> None:
        m.ports.write(0xCF8, 4, 0x80001000 | reg)
        m.ports.write(0xCFC, 4, value)

    cfg(0x10, BAR0)
    cfg(0x14, IOBASE)
    cfg(0x18, 0xFEBE0000)
    cfg(0x1C, 0)
    cfg(0x20, 0x00000000)
    cfg(0x24, 0x1)  # BAR4 at 4 GiB
    cfg(0x04, CMD_IO | CMD_MEMORY | CMD_MASTER)
    return m, m.demo


def test_registers_through_mmio_and_io_bars() -> None:
    m, _ = setup()
    assert m.mmio.read(BAR0, 4) == DEMO_ID
    assert m.ports.read(IOBASE, 4) == DEMO_ID  # the I/O BAR mirrors the first registers
    m.mmio.write(BAR0 + 4, 4, 0x12345678)
    assert m.mmio.read(BAR0 + 4, 4) == 0xEDCBA987  # liveness: inverse of what was written
    m.ports.write(IOBASE + 4, 4, 0)
    assert m.mmio.read(BAR0 + 4, 4) == 0xFFFFFFFF
    m.mmio.write(BAR0 + BUF_OFFSET, 4, 0xCAFEF00D)
    assert m.mmio.read(BAR0 + BUF_OFFSET, 4) == 0xCAFEF00D
    # BAR4 is plain device memory at any size.
    m.mmio.write(0x1_0000_0010, 8, 0x1122334455667788)
    assert m.mmio.read(0x1_0000_0013, 2) == 0x4455


def test_intx_raise_and_ack_level() -> None:
    m, dev = setup()
    m.piix3.config_write(PIRQRC + 1, 1, 11)  # slot 2 INTA# -> PIRQB
    m.mmio.write(BAR0 + 0x0C, 4, 0b101)
    assert m.mmio.read(BAR0 + 0x08, 4) == 0b101
    assert m.gsi.line(11).level and m.gsi.line(17).level
    m.mmio.write(BAR0 + 0x10, 4, 0b001)
    assert m.gsi.line(11).level  # still one bit pending: level stays high
    m.ports.write(IOBASE + 0x10, 4, 0b100)
    assert not m.gsi.line(11).level and not m.gsi.line(17).level
    assert not dev.config.get(0x06, 2) & 0x8


def test_msi_replaces_intx() -> None:
    m, dev = setup()
    sink = MsiRecorder()
    m.pci_bus.msi_sink = sink
    msi = dev.msi
    assert msi is not None
    dev.config_write(msi.offset + 4, 4, 0xFEE00000)
    dev.config_write(msi.data_off, 2, 0x0031)
    dev.config_write(msi.offset + 2, 2, 1)
    m.mmio.write(BAR0 + 0x0C, 4, 1)
    assert sink.messages == [MsiMessage(0xFEE00000, 0x31)]
    assert not m.gsi.line(17).level  # no INTx while MSI is enabled (PCI 3.0, 6.8.1.3)
    dev.config_write(msi.offset + 2, 2, 0)  # back to INTx: the pending status asserts it
    assert m.gsi.line(17).level


def test_msix_vector_0() -> None:
    m, dev = setup()
    sink = MsiRecorder()
    m.pci_bus.msi_sink = sink
    msix = dev.msix
    assert msix is not None
    m.mmio.write(0xFEBE0000, 8, 0xFEE01000)
    m.mmio.write(0xFEBE0008, 4, 0x41)
    m.mmio.write(0xFEBE000C, 4, 0)
    dev.config_write(msix.offset + 2, 2, 0x8000)
    m.mmio.write(BAR0 + 0x0C, 4, 2)
    assert sink.messages == [MsiMessage(0xFEE01000, 0x41)]


def test_dma_memory_to_buffer_and_back() -> None:
    m, dev = setup()
    m.space.write_bytes(0x10000, b"southbridge demo DMA!")
    m.mmio.write(BAR0 + 0x20, 4, 0x10000)
    m.mmio.write(BAR0 + 0x24, 4, 0)
    m.mmio.write(BAR0 + 0x28, 4, 0x10)  # buffer offset
    m.mmio.write(BAR0 + 0x30, 4, 21)
    m.mmio.write(BAR0 + 0x34, 4, DMA_START)
    assert bytes(dev.buffer[0x10 : 0x10 + 21]) == b"southbridge demo DMA!"
    m.mmio.write(BAR0 + 0x20, 4, 0x10)
    m.mmio.write(BAR0 + 0x28, 4, 0x20000)
    m.mmio.write(BAR0 + 0x34, 4, DMA_START | DMA_TO_MEMORY | DMA_IRQ)
    assert m.space.read_bytes(0x20000, 21) == b"southbridge demo DMA!"
    assert m.mmio.read(BAR0 + 0x08, 4) == DMA_DONE_BIT
    assert not m.mmio.read(BAR0 + 0x34, 4) & DMA_ERROR


def test_dma_needs_bus_master_and_a_valid_buffer_range() -> None:
    m, dev = setup()
    m.space.write_bytes(0x30000, b"x" * 16)
    dev.config_write(0x04, 2, CMD_MEMORY)  # bus master off
    m.mmio.write(BAR0 + 0x20, 4, 0x30000)
    m.mmio.write(BAR0 + 0x30, 4, 16)
    m.mmio.write(BAR0 + 0x34, 4, DMA_START)
    assert m.mmio.read(BAR0 + 0x34, 4) & DMA_ERROR
    assert bytes(dev.buffer[:16]) == bytes(16)
    dev.config_write(0x04, 2, CMD_MEMORY | CMD_MASTER)
    m.mmio.write(BAR0 + 0x28, 4, 0x7F8)  # 16 bytes from 0x7F8 run past the 2 KiB buffer
    m.mmio.write(BAR0 + 0x34, 4, DMA_START)
    assert m.mmio.read(BAR0 + 0x34, 4) & DMA_ERROR
    m.mmio.write(BAR0 + 0x28, 4, 0x7F0)
    m.mmio.write(BAR0 + 0x34, 4, DMA_START)
    assert not m.mmio.read(BAR0 + 0x34, 4) & DMA_ERROR
    assert bytes(dev.buffer[0x7F0:]) == b"x" * 16


def test_expansion_rom_image() -> None:
    m, dev = setup()
    dev.config_write(0x30, 4, 0xFEB80001)
    assert m.mmio.read(0xFEB80000, 2) == 0xAA55
    ptr = m.mmio.read(0xFEB80018, 2)
    assert m.space.read_bytes(0xFEB80000 + ptr, 4) == b"PCIR"
    assert m.mmio.read(0xFEB80000 + ptr + 4, 4) == 0x00015342
    assert sum(m.space.read_bytes(0xFEB80000, 0x800)) & 0xFF == 0


def test_state_round_trip_and_validation() -> None:
    m, dev = setup()
    m.mmio.write(BAR0 + 4, 4, 7)
    m.mmio.write(BAR0 + 0x0C, 4, 3)
    m.mmio.write(BAR0 + BUF_OFFSET + 8, 4, 0xAB)
    state = dev.save()
    m2 = PcMachine(clock=ManualClock())
    m2.demo.restore(state)
    assert m2.demo.save() == state
    assert m2.mmio.read(BAR0 + 4, 4) == ~7 & 0xFFFFFFFF  # BARs decoded again after restore
    bad = dict(state, device=dict(state["device"], dma_cmd=0x100))
    with pytest.raises(StateError):
        m2.demo.restore(bad)
    with pytest.raises(StateError):
        m2.demo.restore(dict(state, device=dict(state["device"], buffer="00")))


def test_unaligned_accesses_never_resize_state() -> None:
    """A DWORD at an unaligned offset reads the bytes of the aligned registers and never
    grows the buffer (the bus passes unaligned accesses that stay inside the BAR)."""
    m, dev = setup()
    m.mmio.write(BAR0 + BUF_OFFSET, 4, 0x44332211)
    m.mmio.write(BAR0 + BUF_OFFSET + 4, 4, 0x88776655)
    assert m.mmio.read(BAR0 + BUF_OFFSET + 2, 4) == 0x66554433
    assert m.mmio.read(BAR0 + 2, 4) == (DEMO_ID >> 16) | (~0 & 0xFFFF) << 16
    m.mmio.write(BAR0 + 0xFFA, 4, 0xAABBCCDD)
    assert dev.buffer[0x7FA:0x7FE] == b"\xdd\xcc\xbb\xaa" and len(dev.buffer) == 0x800
    m.mmio.write(BAR0 + 0xFFD, 8, 2**64 - 1)  # straddles the BAR's end: split by the bus
    assert len(dev.buffer) == 0x800
    m.mmio.write(BAR0 + 0x0E, 4, 0xFFFFFFFF)  # unaligned register write: ignored
    assert m.mmio.read(BAR0 + 0x08, 4) == 0
    dev.restore(dev.save())


def test_dma_onto_its_own_command_register_does_not_recurse() -> None:
    m, dev = setup()
    dev.buffer[0:4] = (DMA_START | DMA_TO_MEMORY).to_bytes(4, "little")
    m.mmio.write(BAR0 + 0x20, 4, 0)
    m.mmio.write(BAR0 + 0x28, 4, BAR0 + 0x34)
    m.mmio.write(BAR0 + 0x2C, 4, 0)
    m.mmio.write(BAR0 + 0x30, 4, 4)
    m.mmio.write(BAR0 + 0x34, 4, DMA_START | DMA_TO_MEMORY)
    assert m.mmio.read(BAR0 + 0x34, 4) & DMA_ERROR
    assert m.mmio.faults == 0


def test_intx_end_to_end_through_qtest() -> None:
    """Program the demo by config cycles and MMIO over qtest; INTA# of slot 2 (PIRQB) shows
    up on IOAPIC input 17 and on the routed ISA IRQ, and drops on acknowledge."""
    from southbridge.qtest.server import QtestSession

    out: list[str] = []
    s = QtestSession(PcMachine(clock=ManualClock()), out.append)
    script = [
        "irq_intercept_in ioapic",
        "outl 0xcf8 0x80001010",
        f"outl 0xcfc {BAR0:#x}",
        "outl 0xcf8 0x80001004",
        "outw 0xcfc 0x0006",
        "outl 0xcf8 0x80000860",
        "outb 0xcfd 0x0a",  # PIRQB -> IRQ 10 (PIIX3 0x61)
        f"writel {BAR0 + 0x0C:#x} 0x1",
    ]
    for line in script:
        s.handle(line)
    text = "".join(out)
    assert "IRQ raise 17" in text and "IRQ raise 10" in text
    out.clear()
    s.handle(f"writel {BAR0 + 0x10:#x} 0x1")
    assert "IRQ lower 17" in "".join(out) and "IRQ lower 10" in "".join(out)
