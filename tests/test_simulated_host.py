"""The simulated host (issue 7, item 6): one declarative description gives a fake sysfs tree
that the real probe reads, and live devices behind the fake host port backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from southbridge.host.fakesysfs import FakeBar, FakeDevice
from southbridge.host.inventory import HostInventory, parse_lspci_dump
from southbridge.host.pciaddr import PciAddress
from southbridge.host.simulated import (
    REG_DOORBELL,
    REG_ID,
    REG_SCRATCH,
    REG_STATUS,
    SimSpec,
    build_simulated_host,
    example_specs,
    specs_from_inventory,
)
from southbridge.pci.capabilities import CAP_MSI, CAP_MSIX, walk_capabilities
from southbridge.pci.config import ConfigSpace

NIC = PciAddress.parse("02:00.0")


def test_probe_sees_every_described_function_with_parents(tmp_path: Path) -> None:
    sim = build_simulated_host(tmp_path, example_specs())
    inv = sim.inventory()
    assert {str(d.addr) for d in inv} == {str(s.addr) for s in sim.specs}
    nic = inv.get(NIC)
    assert nic is not None
    # sysfs paths nest a device under the bridge whose bus range holds it.
    assert nic.parent == PciAddress.parse("00:1c.0")
    assert [(r.start, r.size) for r in nic.io_ranges()] == [(0xC000, 0x100)]
    assert [(r.start, r.size) for r in nic.mem_ranges()] == [(0xFEB00000, 0x1000)]


def test_config_file_carries_the_capability_chain(tmp_path: Path) -> None:
    # PCI 3.0 6.7: status bit 4 and the pointer at 0x34 announce the list.
    sim = build_simulated_host(tmp_path, example_specs())
    raw = (tmp_path / "bus/pci/devices/0000:02:00.0/config").read_bytes()
    cs = ConfigSpace(256)
    cs.data[:] = raw
    assert raw[6] & 0x10
    assert [cid for _, cid in walk_capabilities(cs)] == [CAP_MSI, CAP_MSIX]
    dev = sim.get(NIC)
    assert dev is not None and dev.read(0, 4) == 0x813910EC


def test_io_registers_through_the_fake_port_backend(tmp_path: Path) -> None:
    sim = build_simulated_host(tmp_path, example_specs())
    p = sim.ports
    assert p.read(0xC000 + REG_ID, 4) == 0x10EC | 0x8139 << 16
    p.write(0xC000 + REG_SCRATCH, 4, 0xDEADBEEF)
    assert p.read(0xC000 + REG_SCRATCH, 4) == 0xDEADBEEF
    p.write(0xC000 + REG_SCRATCH + 1, 1, 0x55)  # byte lanes of a 32-bit register
    assert p.read(0xC000 + REG_SCRATCH, 4) == 0xDEAD55EF
    assert ("out", 0xC004, 4, 0xDEADBEEF) in p.log


def test_level_interrupt_doorbell_and_ack(tmp_path: Path) -> None:
    sim = build_simulated_host(tmp_path, example_specs())
    dev = sim.get(NIC)
    assert dev is not None
    seen: list[bool] = []
    dev.irq.intx_listeners.append(seen.append)
    sim.ports.write(0xC000 + REG_DOORBELL, 4, 0)
    assert dev.irq.level and sim.ports.read(0xC000 + REG_STATUS, 4) == 0x101
    sim.ports.write(0xC000 + REG_DOORBELL, 4, 0)  # still asserted: no new edge
    sim.ports.write(0xC000 + REG_STATUS, 4, 0)
    assert seen == [True, False]


def test_edge_interrupt_pulses_and_msi_mode_signals_vectors(tmp_path: Path) -> None:
    sim = build_simulated_host(tmp_path, example_specs())
    edge = sim.get(PciAddress.parse("00:03.1"))
    assert edge is not None
    seen: list[bool] = []
    edge.irq.intx_listeners.append(seen.append)
    sim.ports.write(0xC110 + REG_DOORBELL, 4, 0)
    assert seen == [True, False] and not edge.irq.level
    nic = sim.get(NIC)
    assert nic is not None
    vectors: list[int] = []
    nic.irq.msi_listeners.append(vectors.append)
    nic.irq.msi_enabled = True
    sim.ports.write(0xC000 + REG_DOORBELL, 4, 3)
    assert vectors == [3] and not nic.irq.level


def test_config_writes_are_logged(tmp_path: Path) -> None:
    sim = build_simulated_host(tmp_path, example_specs())
    dev = sim.get(NIC)
    assert dev is not None
    dev.write(0x0C, 1, 0x10)
    dev.write(0x08, 1, 0x77)  # revision/class are read-only on the device
    assert dev.config_writes == [(0x0C, 1, 0x10), (0x08, 1, 0x77)]
    assert dev.read(0x0C, 1) == 0x10 and dev.read(0x08, 1) == 0
    assert dev.read(0x1000, 4) == 0xFFFFFFFF


def test_msix_needs_a_memory_bar(tmp_path: Path) -> None:
    spec = SimSpec(
        FakeDevice("00:05.0", 1, 2, 0xFF0000, bars={0: FakeBar("io", 0xC200, 16)}),
        msix_vectors=2,
    )
    with pytest.raises(ValueError, match="MSI-X needs a memory BAR"):
        build_simulated_host(tmp_path, [spec])


def test_unknown_interrupt_mode_is_refused(tmp_path: Path) -> None:
    spec = SimSpec(FakeDevice("00:05.0", 1, 2, 0xFF0000), irq_mode="pulse")
    with pytest.raises(ValueError, match="interrupt mode"):
        build_simulated_host(tmp_path, [spec])


def _dump(inv: HostInventory) -> str:
    """`lspci -xxx` text for an inventory: a header line, then 16 bytes per row."""
    lines = []
    for dev in inv:
        lines.append(f"{dev.addr.short()} Device {dev.vendor:04x}:{dev.device:04x}")
        for off in range(0, len(dev.config), 16):
            row = " ".join(f"{b:02x}" for b in dev.config[off : off + 16])
            lines.append(f"{off:02x}: {row}")
        lines.append("")
    return "\n".join(lines)


def test_simulated_host_from_an_lspci_dump(tmp_path: Path) -> None:
    # Item 6: a simulated host built from a dump looks like the dumped one: same functions,
    # same config bytes, BARs at the same addresses (sizes from the alignment, or given).
    first = build_simulated_host(tmp_path / "a", example_specs())
    inv = parse_lspci_dump(_dump(first.inventory()))
    specs = specs_from_inventory(inv, sizes={(PciAddress.parse("00:03.0"), 0): 0x10})
    second = build_simulated_host(tmp_path / "b", specs)
    again = second.inventory()
    assert [d.addr for d in again] == [d.addr for d in first.inventory()]
    for dev in first.inventory():
        other = again.get(dev.addr)
        assert other is not None and other.config == dev.config
        assert [r.start for r in other.io_ranges()] == [r.start for r in dev.io_ranges()]
    nic = again.get(NIC)
    assert nic is not None and [(r.start, r.size) for r in nic.io_ranges()] == [(0xC000, 0x100)]
    fn0 = again.get(PciAddress.parse("00:03.0"))
    assert fn0 is not None and [r.size for r in fn0.io_ranges()] == [0x10]
    assert second.ports.read(0xC100, 4) == 0x00051B36  # live registers behind the BAR
    assert nic.parent == PciAddress.parse("00:1c.0")
