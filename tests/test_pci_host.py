"""Config access: mechanism #1 at 0xCF8/0xCFC, ECAM, bus routing through bridges.

PCI 3.0, 3.2.2.3.2: CONFIG_ADDRESS is a DWORD register (enable bit 31, bus 23:16, device
15:11, function 10:8, register 7:2); CONFIG_DATA at 0xCFC-0xCFF takes byte, word and DWORD
accesses at any offset inside the window. PCIe 3.0, 7.2.2: ECAM offset = bus<<20 | dev<<15 |
fn<<12 | register.
"""

from __future__ import annotations

import pytest

from southbridge.core.clock import ManualClock
from southbridge.core.device import BusDevice
from southbridge.core.memory import AddressSpace, GuestMemory
from southbridge.core.mmiobus import MmioBus
from southbridge.core.portbus import PortBus
from southbridge.core.state import StateError
from southbridge.machine.pc import PcConfig, PcMachine
from southbridge.pci.bridge import PciBridge
from southbridge.pci.bus import PciRoot
from southbridge.pci.demo import DemoDevice
from southbridge.pci.host import Ecam, PciHost
from southbridge.pci.i440fx import I440fx
from tests.qtesting import Qtest


def cfg_addr(bus: int, dev: int, fn: int, reg: int) -> int:
    return 0x80000000 | bus << 16 | dev << 11 | fn << 8 | (reg & 0xFC)


def make() -> tuple[PciRoot, PortBus, PciHost]:
    ports, mmio = PortBus(), MmioBus()
    root = PciRoot(ports, mmio, AddressSpace(GuestMemory(), mmio))
    root.add(I440fx(), 0)
    root.add(DemoDevice(), 2)
    host = PciHost(root)
    ports.register(0xCF8, 4, host.address_port)
    ports.register(0xCFC, 4, host.data_port)
    return root, ports, host


def test_qtest_reads_the_platform_ids() -> None:
    """The issue's acceptance check through qtest on the pc machine."""
    q = Qtest(PcMachine(clock=ManualClock()))

    def ask(line: str) -> str:
        return q.ask(line).strip()

    assert ask("outl 0xcf8 0x80000000") == "OK"
    assert int(ask("inl 0xcfc").split()[1], 16) == 0x12378086
    ask("outl 0xcf8 0x80000800")
    assert int(ask("inl 0xcfc").split()[1], 16) == 0x70008086
    ask("outl 0xcf8 0x80001800")  # slot 3: nothing there
    assert int(ask("inl 0xcfc").split()[1], 16) == 0xFFFFFFFF
    ask("outl 0xcf8 0x80001000")  # the demo device in slot 2
    assert int(ask("inl 0xcfc").split()[1], 16) == 0x00015342


def test_data_window_every_size_and_offset() -> None:
    _, ports, _ = make()
    ports.write(0xCF8, 4, cfg_addr(0, 0, 0, 0))
    dword = 0x12378086
    for off in range(4):
        assert ports.read(0xCFC + off, 1) == (dword >> (8 * off)) & 0xFF
    for off in range(3):
        assert ports.read(0xCFC + off, 2) == (dword >> (8 * off)) & 0xFFFF
    assert ports.read(0xCFC, 4) == dword
    # A word at 0xCFF straddles the window: the low byte is register 3, the high unassigned.
    assert ports.read(0xCFF, 2) == 0xFF12
    # Writes land at the register plus the window offset.
    ports.write(0xCF8, 4, cfg_addr(0, 2, 0, 0x3C))
    ports.write(0xCFC, 1, 0x0B)
    ports.write(0xCFD, 1, 0x44)  # interrupt pin is read-only
    assert ports.read(0xCFC, 2) == 0x010B
    ports.write(0xCFE, 2, 0xFFFF)  # min_gnt/max_lat are read-only zero
    assert ports.read(0xCFC, 4) == 0x0000010B


def test_enable_bit_and_address_register() -> None:
    _, ports, host = make()
    ports.write(0xCF8, 4, 0x00000000)
    assert ports.read(0xCFC, 4) == 0xFFFFFFFF  # disabled: no config cycle
    ports.write(0xCFC, 4, 0)
    ports.write(0xCF8, 4, 0xFFFFFFFF)
    assert ports.read(0xCF8, 4) == 0x80FFFFFC  # reserved bits 30:24 and 1:0 read zero
    assert host.target() == (0xFF, 0xFF, 0xFC)


def test_narrow_cf8_accesses_do_not_touch_the_address() -> None:
    """Only DWORD accesses decode CONFIG_ADDRESS; byte 0xCF9 is the PIIX reset control."""

    class Rc(BusDevice):
        io_sizes = frozenset({1})
        value = 0

        def read(self, offset: int, size: int) -> int:
            return self.value

        def write(self, offset: int, size: int, value: int) -> None:
            self.value = value

    _, ports, host = make()
    ports.write(0xCF8, 4, cfg_addr(0, 0, 0, 0))
    ports.write(0xCF8, 1, 0x12)
    ports.write(0xCFA, 2, 0x3456)
    assert ports.read(0xCF8, 4) == 0x80000000
    assert ports.read(0xCF8, 2) == 0xFFFF
    assert ports.read(0xCF9, 1) == 0xFF  # no reset control wired
    rc = Rc()
    host.reset_control = rc
    ports.write(0xCF9, 1, 0x02)
    assert rc.value == 0x02 and ports.read(0xCF9, 1) == 0x02
    assert ports.read(0xCF8, 4) == 0x80000000


def test_pc_machine_forwards_cf9_to_reset_control() -> None:
    m = PcMachine(clock=ManualClock())
    assert m.pci_host.reset_control is getattr(m, "reset_control", None)
    if m.pci_host.reset_control is not None:
        m.ports.write(0xCF9, 1, 0x06)  # Linux's reboot: SRST + RCPU
        assert m.run_request is not None and m.run_request.kind == "reset"


def test_absent_functions_and_multifunction() -> None:
    root, ports, _ = make()
    for fn in range(1, 8):
        ports.write(0xCF8, 4, cfg_addr(0, 2, fn, 0))
        assert ports.read(0xCFC, 4) == 0xFFFFFFFF
    ports.write(0xCF8, 4, cfg_addr(0, 2, 0, 0xC))
    assert (ports.read(0xCFC, 4) >> 16) & 0x80 == 0  # single function
    root.add(DemoDevice(name="demo-f3"), 2, 3)
    assert (ports.read(0xCFC, 4) >> 16) & 0x80 == 0x80  # now multi-function
    ports.write(0xCF8, 4, cfg_addr(0, 2, 3, 0))
    assert ports.read(0xCFC, 4) == 0x00015342
    ports.write(0xCF8, 4, cfg_addr(1, 2, 0, 0))
    assert ports.read(0xCFC, 4) == 0xFFFFFFFF  # no bus 1


def test_config_routing_through_bridges_by_bus_number() -> None:
    """PCI-to-PCI Bridge 1.2, 3.2.2.3: a type 1 cycle is forwarded when secondary <= bus <=
    subordinate; it becomes type 0 on the secondary bus; other numbers master-abort."""
    root, ports, _ = make()
    br1 = PciBridge(name="br1")
    root.add(br1, 5)
    br2 = PciBridge(name="br2")
    br1.add(br2, 1)
    leaf = DemoDevice(name="leaf")
    br2.add(leaf, 4)

    def read(bus: int, dev: int) -> int:
        ports.write(0xCF8, 4, cfg_addr(bus, dev, 0, 0))
        return ports.read(0xCFC, 4)

    assert read(1, 1) == 0xFFFFFFFF  # bridge unconfigured: secondary bus 0
    ports.write(0xCF8, 4, cfg_addr(0, 5, 0, 0x18))
    ports.write(0xCFC, 4, 0x00030100)  # primary 0, secondary 1, subordinate 3
    assert read(1, 1) == 0x00025342  # br2 on bus 1
    assert read(2, 4) == 0xFFFFFFFF  # br2 still unconfigured
    ports.write(0xCF8, 4, cfg_addr(1, 1, 0, 0x18))
    ports.write(0xCFC, 4, 0x00030201)
    assert read(2, 4) == 0x00015342
    assert leaf.address() == "02:04.0"
    assert read(3, 0) == 0xFFFFFFFF  # in range, nothing there
    assert read(4, 4) == 0xFFFFFFFF  # beyond subordinate
    ports.write(0xCF8, 4, cfg_addr(0, 5, 0, 0x18))
    ports.write(0xCFC, 4, 0x00010100)  # subordinate 1: bus 2 no longer reachable
    assert read(2, 4) == 0xFFFFFFFF
    # Config writes reach the leaf the same way.
    ports.write(0xCF8, 4, cfg_addr(0, 5, 0, 0x18))
    ports.write(0xCFC, 4, 0x00030100)
    ports.write(0xCF8, 4, cfg_addr(2, 4, 0, 0x3C))
    ports.write(0xCFC, 1, 0x0A)
    assert leaf.config.get(0x3C, 1) == 0x0A


def test_ecam_reaches_the_same_functions() -> None:
    root, ports, _ = make()
    ecam = Ecam(root)
    ecam.map(root.mmio, 0xB0000000)
    mmio = root.mmio
    assert mmio.read(0xB0000000, 4) == 0x12378086
    assert mmio.read(0xB0000000 + (2 << 15), 4) == 0x00015342
    assert mmio.read(0xB0000000 + (3 << 15), 4) == 0xFFFFFFFF
    assert mmio.read(0xB0000000 + (1 << 20), 2) == 0xFFFF
    mmio.write(0xB0000000 + (2 << 15) + 0x3C, 1, 0x07)
    ports.write(0xCF8, 4, cfg_addr(0, 2, 0, 0x3C))
    assert ports.read(0xCFC, 1) == 0x07
    # Extended space of a conventional function reads all-ones (QEMU does the same).
    assert mmio.read(0xB0000000 + (2 << 15) + 0x100, 4) == 0xFFFFFFFF
    # A QWORD is split into two DWORDs.
    assert mmio.read(0xB0000000, 8) == 0x02000006_12378086
    with pytest.raises(ValueError):
        ecam.map(root.mmio, 0xB0001000)


def test_ecam_reaches_pcie_extended_space() -> None:
    root, _, _ = make()
    pcie = DemoDevice(pcie=True, name="pcie")
    root.add(pcie, 4)
    ecam = Ecam(root, buses=16)
    ecam.map(root.mmio, 0xE0000000)
    assert root.mmio.read(0xE0000000 + (4 << 15) + 0x100, 4) & 0xFFFF == 0x0003  # DSN
    ecam.unmap()
    assert root.mmio.read(0xE0000000, 4) == 0xFFFFFFFF


def test_pc_machine_ecam_is_opt_in() -> None:
    m = PcMachine(clock=ManualClock())
    assert m.pci_ecam is None and m.mmio.read(0xB0000000, 4) == 0xFFFFFFFF
    m2 = PcMachine(PcConfig(extra={"pci_ecam_base": 0xB0000000}), clock=ManualClock())
    assert m2.mmio.read(0xB0000000, 4) == 0x12378086


def test_host_state_round_trip_and_validation() -> None:
    _, ports, host = make()
    ports.write(0xCF8, 4, cfg_addr(0, 2, 0, 0x10))
    state = host.save()
    _, _, other = make()
    other.restore(state)
    assert other.address == host.address
    with pytest.raises(StateError):
        other.restore({"kind": "pci-host", "version": 1, "address": 0x7F000000})
