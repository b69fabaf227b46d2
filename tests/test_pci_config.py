"""Config space model: per-byte writable and RW1C masks, header types 0 and 1.

PCI Local Bus 3.0, 6.1-6.2: read-only registers ignore writes at any width and offset,
RW1C status bits clear only on a written 1, reserved bits read 0.
"""

from __future__ import annotations

import pytest

from southbridge.core.state import StateError
from southbridge.pci.bridge import PciBridge
from southbridge.pci.config import (
    COMMAND,
    STATUS,
    STS_CAP_LIST,
    STS_DEVSEL_MEDIUM,
    STS_INTERRUPT,
    STS_RCV_MASTER_ABORT,
    STS_SIG_SYSTEM_ERROR,
    ConfigSpace,
)
from southbridge.pci.demo import DemoDevice
from southbridge.pci.function import COMMAND_WMASK, PciFunction
from southbridge.pci.i440fx import I440fx
from southbridge.pci.piix3 import Piix3

SIZES = (1, 2, 4)


def test_masks_apply_per_byte() -> None:
    cs = ConfigSpace()
    cs.set(0x40, 4, 0x11223344)
    cs.set_wmask(0x40, 4, 0x00FF00F0)
    changed = cs.write(0x40, 4, 0xAABBCCDD)
    # Only the writable nibbles/bytes take the new value; the rest keep theirs.
    assert cs.get(0x40, 4) == (0x11223344 & ~0x00FF00F0) | (0xAABBCCDD & 0x00FF00F0)
    assert changed == 0b0101  # bytes 0 and 2 moved


def test_rw1c_clears_only_written_ones() -> None:
    cs = ConfigSpace()
    cs.set(0x06, 2, 0xF900)
    cs.set_w1c(0x06, 2, 0xF900)
    cs.write(0x06, 2, 0x0000)
    assert cs.get(0x06, 2) == 0xF900  # writing 0 leaves RW1C bits alone
    cs.write(0x07, 1, 0x20)  # byte access to the high half clears bit 13 only
    assert cs.get(0x06, 2) == 0xD900
    cs.write(0x06, 2, 0xFFFF)
    assert cs.get(0x06, 2) == 0


def test_reads_beyond_the_space_are_all_ones() -> None:
    cs = ConfigSpace()
    assert cs.read(0xFE, 4) == 0xFFFF0000
    assert cs.write(0xFF, 4, 0xFFFFFFFF) == 0


def test_invalid_size_rejected() -> None:
    with pytest.raises(ValueError):
        ConfigSpace(512)


def _functions() -> list[PciFunction]:
    return [DemoDevice(), DemoDevice(pcie=True), I440fx(), Piix3(), PciBridge()]


@pytest.mark.parametrize("fn", _functions(), ids=lambda f: f.name + str(f.config.size))
def test_read_only_bytes_ignore_writes_at_every_width_and_offset(fn: PciFunction) -> None:
    """Every byte with an empty writable/RW1C mask keeps its value under 1-, 2- and 4-byte
    writes of zeroes and of ones at every offset (the PCI 3.0 read-only rule; CVE-2015-4106
    is what happens when masks are not applied per byte)."""
    cs = fn.config
    ro = [o for o in range(cs.size) if not (cs.wmask[o] | cs.w1c[o])]
    before = {o: cs.data[o] for o in ro}
    for size in SIZES:
        for offset in range(0, min(cs.size, 0x100) - size + 1):
            for value in (0, (1 << (8 * size)) - 1):
                fn.config_write(offset, size, value)
    for o in ro:
        assert cs.data[o] == before[o], f"read-only byte 0x{o:x} changed"


def test_standard_header_type0() -> None:
    fn = DemoDevice()
    cs = fn.config
    assert cs.get(0x0E, 1) == 0x00
    assert cs.get(0x00, 4) == 0x00015342
    # Command: only the implemented bits are writable (PCI 3.0, 6.2.2).
    fn.config_write(COMMAND, 2, 0xFFFF)
    assert fn.command == COMMAND_WMASK
    # Status: capabilities list bit set, DEVSEL timing read-only.
    assert cs.get(STATUS, 2) & (STS_CAP_LIST | STS_DEVSEL_MEDIUM) == STS_CAP_LIST | 0x200
    fn.config_write(STATUS, 2, 0)
    assert cs.get(STATUS, 2) & STS_CAP_LIST


def test_status_rw1c_error_bits_and_interrupt_status() -> None:
    fn = PciFunction(0x5342, 0x00FE, 0xFF0000)
    fn.set_interrupt_pin(1)
    fn.config.set_bits(STATUS, 2, STS_RCV_MASTER_ABORT | STS_SIG_SYSTEM_ERROR, True)
    fn.config_write(STATUS, 2, STS_RCV_MASTER_ABORT)
    st = fn.config.get(STATUS, 2)
    assert not st & STS_RCV_MASTER_ABORT and st & STS_SIG_SYSTEM_ERROR
    # Interrupt status (bit 3) follows the device, not the guest.
    fn.set_intx(True)
    fn.config_write(STATUS, 2, 0xFFFF)
    assert fn.config.get(STATUS, 2) & STS_INTERRUPT
    fn.set_intx(False)
    assert not fn.config.get(STATUS, 2) & STS_INTERRUPT


def test_interrupt_line_rw_pin_ro() -> None:
    fn = DemoDevice()
    fn.config_write(0x3C, 2, 0xFF0B)
    assert fn.config.get(0x3C, 1) == 0x0B and fn.config.get(0x3D, 1) == 1


def test_header_type1_registers() -> None:
    """PCI-to-PCI Bridge 1.2, 3.2: bus numbers RW, I/O base/limit upper nibble RW with a
    16-bit addressing code, prefetchable base/limit 64-bit code, class 0604."""
    br = PciBridge()
    cs = br.config
    assert cs.get(0x0E, 1) == 0x01
    assert cs.get(0x09, 3) == 0x060400
    br.config_write(0x18, 4, 0xFF030201)
    assert (br.primary_bus, br.secondary_bus, br.subordinate_bus) == (1, 2, 3)
    br.config_write(0x1C, 2, 0xFFFF)
    assert cs.get(0x1C, 2) == 0xF0F0
    br.config_write(0x24, 4, 0xFFFFFFFF)
    assert cs.get(0x24, 4) == 0xFFF1FFF1
    br.config_write(0x1E, 2, 0xFFFF)  # secondary status: RW1C/RO
    assert cs.get(0x1E, 2) == 0x0200


def test_restore_rejects_a_different_device() -> None:
    a, b = DemoDevice(), DemoDevice()
    state = a.save()
    state["config"] = "00" + state["config"][2:]  # vendor ID byte changed
    with pytest.raises(StateError):
        b.restore(state)
    state = a.save()
    state["config"] = state["config"][:-2]
    with pytest.raises(StateError):
        b.restore(state)
    with pytest.raises(StateError):
        b.restore({"kind": "demo", "version": 2})


def test_restore_round_trip_of_writable_state() -> None:
    a = DemoDevice()
    a.config_write(0x3C, 1, 0x0A)
    a.config_write(0x04, 2, 0x0107)
    a.config_write(0x10, 4, 0xFEB00000)
    b = DemoDevice()
    b.restore(a.save())
    assert b.save() == a.save()
