"""The privileged domain's PCI view (issue 7, item 3): host numbering, hidden devices absent,
reads passed through, writes filtered (BARs and decode bits virtual, the rest dropped unless
permissive), visible devices' I/O ranges opened."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.domains.assignment import Assignments
from southbridge.domains.privileged import PrivilegedView
from southbridge.host.hide import parse_hide
from southbridge.host.pciaddr import PciAddress
from southbridge.host.simulated import SimulatedHost, build_simulated_host, example_specs
from southbridge.machine.pc import PcMachine
from tests.pcicfg import cfg_read, cfg_write

NIC = PciAddress.parse("02:00.0")
FN0 = PciAddress.parse("00:03.0")


def setup(
    tmp: Path,
    hide: str = "(02:00.0)",
    permissive: dict[PciAddress, list[tuple[int, int]]] | None = None,
) -> tuple[SimulatedHost, PcMachine, PrivilegedView]:
    sim = build_simulated_host(tmp, example_specs())
    a = Assignments(sim.inventory(), parse_hide(hide))
    m = PcMachine(host_ports=sim.ports)
    view = PrivilegedView(a, sim, permissive)
    view.install(m)
    return sim, m, view


def enumerate_bus(m: PcMachine) -> list[str]:
    found = []
    for bus in range(4):
        for devfn in range(256):
            a = PciAddress(0, bus, devfn >> 3, devfn & 7)
            if cfg_read(m, a, 0) != 0xFFFFFFFF:
                found.append(a.short())
    return found


def test_mirrors_host_numbering_minus_hidden(tmp_path: Path) -> None:
    sim, m, _ = setup(tmp_path)
    want = sorted(d.addr.short() for d in sim.inventory() if d.addr != NIC)
    assert enumerate_bus(m) == want  # the host bridge's own 00:00.0, not the emulated one
    assert cfg_read(m, PciAddress.parse("00:00.0"), 0) == 0x12378086


def test_nothing_hidden_shows_everything(tmp_path: Path) -> None:
    _sim, m, _ = setup(tmp_path, hide="")
    assert NIC.short() in enumerate_bus(m)
    assert cfg_read(m, NIC, 0) == 0x813910EC


def test_bar_is_virtual_sizing_reads_host_size(tmp_path: Path) -> None:
    # PCI 3.0 6.2.5.1: all-ones then read back gives ~(size-1) | type bits.
    sim, m, _ = setup(tmp_path)
    dev = sim.get(FN0)
    assert dev is not None
    assert cfg_read(m, FN0, 0x10) == 0xC101
    cfg_write(m, FN0, 0x10, 4, 0xFFFFFFFF)
    assert cfg_read(m, FN0, 0x10) == 0xFFFFFFF1
    cfg_write(m, FN0, 0x10, 4, 0xC101)
    assert dev.config_writes == [] and dev.read(0x10, 4) == 0xC101


def test_decode_bits_virtual_other_writes_dropped(tmp_path: Path) -> None:
    # XSA-126: decode bits never reach the host; by default nothing else does either.
    sim, m, _ = setup(tmp_path)
    dev = sim.get(FN0)
    assert dev is not None
    cfg_write(m, FN0, 0x04, 2, 0x0404)  # decode off, master on, INTx disable
    assert cfg_read(m, FN0, 0x04, 2) & 3 == 0
    assert dev.read(0x04, 2) == 0x0007
    cfg_write(m, FN0, 0x3C, 1, 5)
    cfg_write(m, FN0, 0x0C, 1, 0x10)
    assert dev.config_writes == []
    assert cfg_read(m, FN0, 0x0C, 1) == 0


def test_permissive_bytes_reach_the_host(tmp_path: Path) -> None:
    sim, m, _ = setup(tmp_path, permissive={FN0: [(0x0C, 1), (0x04, 2)]})
    dev = sim.get(FN0)
    assert dev is not None
    cfg_write(m, FN0, 0x0C, 1, 0x10)
    assert dev.read(0x0C, 1) == 0x10
    cfg_write(m, FN0, 0x04, 2, 0x0400)  # decode bits still stay virtual
    assert dev.read(0x04, 2) == 0x0403
    assert (0x05, 1, 0x04) in dev.config_writes


def test_visible_io_ranges_opened_hidden_ones_not(tmp_path: Path) -> None:
    _sim, m, view = setup(tmp_path)
    assert m.permissions.allowed(0xC100) and m.permissions.allowed(0xC11F)
    assert not m.permissions.allowed(0xC000)  # the hidden NIC's ports
    assert m.ports.read(0xC100, 4) == 0x00051B36
    assert m.ports.read(0xC000, 4) == 0xFFFFFFFF
    view.uninstall(m)
    assert m.permissions.count() == 0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 0xFF), st.sampled_from([1, 2, 4]), st.integers(0, 2**32 - 1)),
        max_size=40,
    )
)
def test_any_config_writes_never_reach_host_or_raise(
    tmp_path_factory: object, ops: list[tuple[int, int, int]]
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        sim, m, _ = setup(Path(d))
        before = {a: bytes(dev.cfg) for a, dev in sim.devices.items()}
        for off, size, val in ops:
            for a in (FN0, NIC, PciAddress.parse("00:1c.0")):
                cfg_write(m, a, off & ~(size - 1), size, val & ((1 << 8 * size) - 1))
                cfg_read(m, a, off & ~(size - 1), size)
        assert all(not dev.config_writes for dev in sim.devices.values())
        assert {a: bytes(dev.cfg) for a, dev in sim.devices.items()} == before
        assert cfg_read(m, NIC, 0) == 0xFFFFFFFF


def test_64bit_bar_and_bridge_header_are_virtual(tmp_path: Path) -> None:
    from southbridge.host.fakesysfs import FakeBar, FakeDevice
    from southbridge.host.simulated import SimSpec

    specs = [
        SimSpec(
            FakeDevice(
                "00:05.0",
                0x1234,
                0x5678,
                0x030000,
                bars={2: FakeBar("mem64", 0x8_0000_0000, 0x4000, prefetch=True)},
            )
        ),
        SimSpec(FakeDevice("00:06.0", 0x8086, 0x244E, 0x060400, bridge=(1, 1))),
    ]
    sim = build_simulated_host(tmp_path, specs)
    m = PcMachine(host_ports=sim.ports)
    PrivilegedView(Assignments(sim.inventory(), []), sim).install(m)
    gpu, br = PciAddress.parse("00:05.0"), PciAddress.parse("00:06.0")
    # PCI 3.0 6.2.5.1: a 64-bit BAR sizes over both registers; type bits stay.
    assert cfg_read(m, gpu, 0x18) == 0x0000000C and cfg_read(m, gpu, 0x1C) == 8
    cfg_write(m, gpu, 0x18, 4, 0xFFFFFFFF)
    cfg_write(m, gpu, 0x1C, 4, 0xFFFFFFFF)
    assert cfg_read(m, gpu, 0x18) == 0xFFFFC00C and cfg_read(m, gpu, 0x1C) == 0xFFFFFFFF
    # A BAR with no host resource reads as the host has it and takes no address.
    cfg_write(m, gpu, 0x10, 4, 0xFFFFFFFF)
    assert cfg_read(m, gpu, 0x10) == 0
    # Bridge: bus numbers and windows are read from the host, never written.
    assert cfg_read(m, br, 0x18) & 0xFFFFFF == 0x010100
    cfg_write(m, br, 0x18, 4, 0x00050500)
    assert cfg_read(m, br, 0x18) & 0xFFFFFF == 0x010100
    assert all(not d.config_writes for d in sim.devices.values())
