"""The config model reused for an assigned host function (issue 7's vPCI-style view).

Xen vPCI / XSA-126: BARs, command decode bits, interrupt line and MSI/MSI-X are virtual;
other registers read through from the host; guest writes to them never reach the host
unless a permissive mask allows the bits.
"""

from __future__ import annotations

import pytest

from southbridge.core.device import BusDevice
from southbridge.core.memory import AddressSpace, GuestMemory
from southbridge.core.mmiobus import MmioBus
from southbridge.core.portbus import PortBus
from southbridge.pci.bar import Bar, BarKind
from southbridge.pci.bus import PciRoot
from southbridge.pci.capabilities import walk_capabilities
from southbridge.pci.config import CMD_MASTER, CMD_MEMORY
from southbridge.pci.demo import DemoDevice
from southbridge.pci.msi import MsiMessage, MsiRecorder
from southbridge.pci.passthrough import FilteredFunction


class FakeHost:
    """A host function's config space (here: a demo device's bytes), recording writes."""

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)
        self.size = len(data)
        self.writes: list[tuple[int, int, int]] = []

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.data[offset : offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        self.writes.append((offset, size, value))
        self.data[offset : offset + size] = value.to_bytes(size, "little")


class HostBar(BusDevice):
    io_sizes = frozenset({1, 2, 4, 8})

    def read(self, offset: int, size: int) -> int:
        return 0x5A


def host_demo() -> FakeHost:
    dev = DemoDevice()
    dev.config.set(0x04, 2, 0x0007)  # the host has it enabled at its own addresses
    dev.config.set(0x10, 4, 0xF0000000)
    dev.config.set(0x18, 8, 0xF0100004)
    dev.config.set(0x3C, 1, 0x05)
    dev.config.set(0xE0, 4, 0x11223344)  # a vendor-specific register
    return FakeHost(bytes(dev.config.data))


def assigned(host: FakeHost, **kw: object) -> FilteredFunction:
    bars = {0: Bar(BarKind.MEM32, 0x1000, HostBar()), 2: Bar(BarKind.MEM64, 0x1000, HostBar())}
    return FilteredFunction(host, bars, **kw)  # type: ignore[arg-type]


def test_guest_sees_ids_and_chain_but_virtual_bars_and_command() -> None:
    host = host_demo()
    fn = assigned(host)
    assert fn.config_read(0, 4) == 0x00015342
    assert fn.config_read(0x04, 2) == 0  # decode off until the guest enables it
    assert fn.config_read(0x10, 4) == 0 and fn.config_read(0x3C, 1) == 0
    assert fn.config_read(0x14, 4) == 0  # BAR 1 is not assigned: reads zero
    assert [c for _, c in walk_capabilities(fn.config)] == [0x01, 0x05, 0x11]
    assert fn.config_read(0xE0, 4) == 0x11223344  # passed through


def test_no_guest_write_reaches_the_host_by_default() -> None:
    host = host_demo()
    fn = assigned(host)
    before = bytes(host.data)
    for off in range(0, 0x100):
        fn.config_write(off, 1, 0xFF)
    for off in range(0, 0x100, 4):
        fn.config_write(off, 4, 0)
    assert host.writes == [] and bytes(host.data) == before
    fn.config_write(0x10, 4, 0xFFFFFFFF)
    assert fn.config_read(0x10, 4) == 0xFFFFF000  # sizing the virtual BAR


def test_permissive_bits_reach_the_host() -> None:
    host = host_demo()
    fn = assigned(host, permissive={0xE0: 0x0F})
    fn.config_write(0xE0, 1, 0xFF)
    assert host.data[0xE0] == 0x4F and fn.config_read(0xE0, 1) == 0x4F


def test_guest_bar_mapping_and_emulated_msix() -> None:
    host = host_demo()
    fn = assigned(host)
    mmio = MmioBus()
    sink = MsiRecorder()
    root = PciRoot(PortBus(), mmio, AddressSpace(GuestMemory(), mmio), sink)
    root.add(fn, 4)
    fn.config_write(0x10, 4, 0xFE000000)
    fn.config_write(0x18, 4, 0xFE100000)
    fn.config_write(0x04, 2, CMD_MEMORY | CMD_MASTER)
    assert mmio.read(0xFE000000, 4) == 0x5A  # the host resource at the guest's address
    msix = fn.msix
    assert msix is not None
    mmio.write(0xFE100000, 8, 0xFEE00000)  # table entry 0, emulated
    mmio.write(0xFE100008, 4, 0x33)
    mmio.write(0xFE10000C, 4, 0)
    mmio.write(0xFE100000 + 16 * 64, 4, 0xDEAD)  # beyond the table: the host BAR, not ours
    assert mmio.read(0xFE100000 + 0x900, 4) == 0x5A
    fn.config_write(msix.offset + 2, 2, 0x8000)
    assert msix.notify(0) and sink.messages == [MsiMessage(0xFEE00000, 0x33)]
    assert host.writes == []


def test_only_type0_functions() -> None:
    host = host_demo()
    host.data[0x0E] = 1
    with pytest.raises(ValueError):
        FilteredFunction(host)
