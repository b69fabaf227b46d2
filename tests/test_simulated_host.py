"""The simulated host (issue 7, item 6): one declarative description gives a fake sysfs tree
that the real probe reads, and live devices behind the fake host port backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from southbridge.host.fakesysfs import FakeBar, FakeDevice
from southbridge.host.pciaddr import PciAddress
from southbridge.host.simulated import (
    REG_DOORBELL,
    REG_ID,
    REG_SCRATCH,
    REG_STATUS,
    SimSpec,
    build_simulated_host,
    example_specs,
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
