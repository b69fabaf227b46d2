"""Capabilities: list integrity, PM, MSI, MSI-X and PCI Express / extended capabilities."""

from __future__ import annotations

import pytest

from southbridge.core.memory import AddressSpace, GuestMemory
from southbridge.core.mmiobus import MmioBus
from southbridge.core.portbus import PortBus
from southbridge.core.state import StateError
from southbridge.pci.bus import PciRoot
from southbridge.pci.capabilities import (
    CAP_MSI,
    CAP_MSIX,
    CAP_PCIE,
    CAP_PM,
    EXT_DSN,
    ExtendedCapability,
    MsiCapability,
    MsixCapability,
    PmCapability,
    walk_capabilities,
    walk_extended,
)
from southbridge.pci.config import CMD_MASTER, CMD_MEMORY
from southbridge.pci.demo import DemoDevice
from southbridge.pci.function import PciFunction
from southbridge.pci.msi import MsiMessage, MsiRecorder


def make(pcie: bool = False) -> tuple[PciRoot, DemoDevice, MsiRecorder]:
    mmio = MmioBus()
    sink = MsiRecorder()
    root = PciRoot(PortBus(), mmio, AddressSpace(GuestMemory(), mmio), sink)
    dev = DemoDevice(pcie=pcie)
    root.add(dev, 2)
    return root, dev, sink


def test_capability_chain_links_every_structure() -> None:
    """PCI 3.0, 6.7: status bit 4 set, pointer at 0x34, DWORD-aligned entries >= 0x40, the
    last next pointer 0."""
    _, dev, _ = make(pcie=True)
    chain = walk_capabilities(dev.config)
    assert [cid for _, cid in chain] == [CAP_PM, CAP_MSI, CAP_MSIX, CAP_PCIE]
    assert chain[0][0] == dev.config.get(0x34, 1)
    assert dev.config.get(chain[-1][0] + 1, 1) == 0
    assert [cid for _, cid in walk_extended(dev.config)] == [EXT_DSN]


def test_chain_is_read_only_to_the_guest() -> None:
    _, dev, _ = make(pcie=True)
    before = walk_capabilities(dev.config)
    for off, _ in before:
        dev.config_write(off, 2, 0xFFFF)
    dev.config_write(0x34, 1, 0xFF)
    dev.config_write(0x100, 4, 0xFFFFFFFF)
    assert walk_capabilities(dev.config) == before
    assert [c for _, c in walk_extended(dev.config)] == [EXT_DSN]


def test_add_capability_refuses_overlaps_and_bad_offsets() -> None:
    fn = PciFunction(0x5342, 0xF1, 0xFF0000)
    fn.add_capability(PmCapability(), 0x50)
    with pytest.raises(ValueError):
        fn.add_capability(MsiCapability(), 0x54)
    with pytest.raises(ValueError):
        fn.add_capability(MsiCapability(), 0x3C)
    with pytest.raises(ValueError):
        fn.add_capability(ExtendedCapability(3, bytes(8)))  # conventional function
    fn.add_capability(MsiCapability(addr64=False, per_vector_mask=False))
    assert [c for _, c in walk_capabilities(fn.config)] == [CAP_PM, CAP_MSI]


def test_pm_state_transitions() -> None:
    """PM 1.2, 5.4.2: PowerState is RW for supported states; writing an unsupported one
    completes but changes nothing. No_Soft_Reset is read-only."""
    fn = PciFunction(0x5342, 0xF1, 0xFF0000)
    pm = fn.add_capability(PmCapability(d1=True))
    assert isinstance(pm, PmCapability)
    o = pm.offset + 4
    fn.config_write(o, 2, 3)
    assert pm.power_state == 3
    fn.config_write(o, 2, 2)  # D2 not supported
    assert pm.power_state == 3
    fn.config_write(o, 1, 1)
    assert pm.power_state == 1
    assert fn.config.get(o, 2) & 0x8


def test_msi_delivery_masking_and_pending() -> None:
    """PCI 3.0, 6.8.1: message = address + data with the vector in the low bits of data
    (MME enables 2^n vectors); masked vectors set their pending bit and are sent on unmask."""
    _, dev, sink = make()
    msi = dev.msi
    assert msi is not None
    o = msi.offset
    dev.config_write(0x04, 2, CMD_MEMORY | CMD_MASTER)
    dev.config_write(o + 4, 4, 0xFEE01003)  # low address bits are read-only zero
    dev.config_write(o + 8, 4, 0)
    dev.config_write(o + 0xC, 2, 0x4160)
    dev.config_write(o + 2, 2, 0x0021)  # enable, 4 vectors (MME=2)
    assert msi.enabled and msi.enabled_vectors == 4
    assert msi.notify(3)
    assert sink.messages[-1] == MsiMessage(0xFEE01000, 0x4163)
    dev.config_write(msi.mask_off, 4, 0b1000)
    assert not msi.notify(3)
    assert dev.config.get(msi.pending_off, 4) == 0b1000
    dev.config_write(msi.pending_off, 4, 0)  # pending bits are read-only
    assert dev.config.get(msi.pending_off, 4) == 0b1000
    n = len(sink.messages)
    dev.config_write(msi.mask_off, 4, 0)
    assert len(sink.messages) == n + 1 and sink.messages[-1].data == 0x4163
    assert dev.config.get(msi.pending_off, 4) == 0
    assert not msi.notify(4)  # beyond the enabled vectors


def test_msi_mme_clamped_to_capable_and_mask_bits_limited() -> None:
    _, dev, _ = make()
    msi = dev.msi
    assert msi is not None
    dev.config_write(msi.offset + 2, 2, 0x0071)  # asks for 128 vectors, capable of 4
    assert msi.enabled_vectors == 4
    assert (dev.config.get(msi.offset + 2, 2) >> 1) & 7 == 2  # MMC is read-only
    dev.config_write(msi.mask_off, 4, 0xFFFFFFFF)
    assert dev.config.get(msi.mask_off, 4) == 0xF


def test_msi_needs_bus_master() -> None:
    _, dev, sink = make()
    msi = dev.msi
    assert msi is not None
    dev.config_write(msi.offset + 2, 2, 1)
    assert not msi.notify(0) and not sink.messages


def msix_setup() -> tuple[PciRoot, DemoDevice, MsiRecorder, MsixCapability, int]:
    root, dev, sink = make()
    msix = dev.msix
    assert msix is not None
    dev.config_write(0x18, 4, 0xFEB00000)
    dev.config_write(0x1C, 4, 0)
    dev.config_write(0x04, 2, CMD_MEMORY | CMD_MASTER)
    return root, dev, sink, msix, 0xFEB00000


def test_msix_table_and_pba_through_the_bar() -> None:
    """PCI 3.0, 6.8.2: entries are 16 bytes (address, upper address, data, vector control);
    vectors start masked; masked vectors set their PBA bit and are sent when unmasked."""
    root, dev, sink, msix, base = msix_setup()
    mmio = root.mmio
    assert mmio.read(base + 12, 4) == 1  # masked at reset
    assert mmio.read(base + 0x800, 8) == 0
    mmio.write(base + 16, 8, 0x00000000FEE00000)
    mmio.write(base + 24, 4, 0x51)
    dev.config_write(msix.offset + 2, 2, 0x8000)  # enable
    assert not msix.notify(1)
    assert mmio.read(base + 0x800, 8) == 0b10
    mmio.write(base + 0x800, 8, 0)  # PBA is read-only
    assert mmio.read(base + 0x800, 8) == 0b10
    mmio.write(base + 28, 4, 0)  # unmask vector 1 -> pending message goes out
    assert sink.messages[-1] == MsiMessage(0xFEE00000, 0x51)
    assert mmio.read(base + 0x800, 8) == 0
    # Function mask holds everything back until cleared.
    dev.config_write(msix.offset + 2, 2, 0xC000)
    assert not msix.notify(1)
    dev.config_write(msix.offset + 2, 2, 0x8000)
    assert len(sink.messages) == 2 and sink.messages[-1].data == 0x51


def test_msix_table_index_clamped() -> None:
    """XSA-164: indexes beyond the vector count never reach memory outside the table."""
    root, _dev, _, msix, base = msix_setup()
    table = bytes(msix.table)
    root.mmio.write(base + 4 * 16, 4, 0xDEADBEEF)  # entry 4 of a 4-entry table
    assert root.mmio.read(base + 4 * 16, 4) == 0
    assert bytes(msix.table) == table
    assert msix.table_read(-16, 4) == 0 and msix.table_read(0x40, 8) == 0
    msix.table_write(0x1000, 4, 1)
    assert not msix.notify(4) and not msix.notify(-1)
    assert bytes(msix.table) == table


def test_msix_reserved_bits_read_zero() -> None:
    root, _, _, _, base = msix_setup()
    root.mmio.write(base, 4, 0xFEE00003)
    root.mmio.write(base + 12, 4, 0xFFFFFFFF)
    assert root.mmio.read(base, 4) == 0xFEE00000
    assert root.mmio.read(base + 12, 4) == 1


def test_msix_restore_validates() -> None:
    _, _dev, _, msix, _ = msix_setup()
    good = msix.save()
    bad = dict(good, table="00" * (msix.table_size - 1))
    with pytest.raises(StateError):
        msix.restore(bad)
    t = bytearray(msix.table)
    t[13] = 1
    with pytest.raises(StateError):
        msix.restore(dict(good, table=t.hex()))
    with pytest.raises(StateError):
        msix.restore(dict(good, pba="ff" + "00" * 7))  # pending vector 5..7 of 4
    msix.restore(good)


def test_pcie_capability_registers() -> None:
    """PCIe 3.0, 7.8: capability version 2, endpoint; device status error bits RW1C."""
    _, dev, _ = make(pcie=True)
    off = next(o for o, c in walk_capabilities(dev.config) if c == CAP_PCIE)
    assert dev.config.get(off + 2, 2) == 0x0002
    dev.config.set(off + 0x0A, 2, 0x000F)
    dev.config_write(off + 0x0A, 2, 0x0005)
    assert dev.config.get(off + 0x0A, 2) == 0x000A
    dev.config_write(off + 0x12, 2, 0)  # link status is read-only
    assert dev.config.get(off + 0x12, 2) == 0x11


def test_msi_32bit_layout_with_masking() -> None:
    """PCI 3.0, figure 6-9: a 32-bit MSI with per-vector masking has data at +8, mask bits
    at +0xC and pending bits at +0x10; the upper address register does not exist."""
    mmio = MmioBus()
    sink = MsiRecorder()
    root = PciRoot(PortBus(), mmio, AddressSpace(GuestMemory(), mmio), sink)
    fn = PciFunction(0x5342, 0xF3, 0xFF0000)
    msi = fn.add_capability(MsiCapability(vectors=2, addr64=False, per_vector_mask=True))
    assert isinstance(msi, MsiCapability)
    root.add(fn, 4)
    o = msi.offset
    assert (msi.data_off, msi.mask_off, msi.pending_off) == (o + 8, o + 0xC, o + 0x10)
    assert msi.length == 0x14 and fn.config.get(o + 2, 2) == 0x0102
    fn.config_write(0x04, 2, CMD_MASTER)
    fn.config_write(o + 4, 4, 0xFEE00000)
    fn.config_write(o + 8, 4, 0xFFFF0040)  # the upper half of the data DWORD is reserved
    assert fn.config.get(o + 8, 4) == 0x0040
    fn.config_write(o + 2, 2, 0x0011)  # enable, 2 vectors
    fn.config_write(o + 0xC, 4, 0b01)
    assert not msi.notify(0) and msi.notify(1)
    assert sink.messages == [MsiMessage(0xFEE00000, 0x41)]
    fn.config_write(o + 0xC, 4, 0)
    assert sink.messages[-1] == MsiMessage(0xFEE00000, 0x40)
