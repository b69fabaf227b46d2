"""Config sources of host functions (issue 7): sysfs files read with pread (read-only unless
the tree is a fake one), inventory snapshots, and the choice between them; plus the EOI
listeners of the 8259 pair and the IOAPIC that assigned INTx relies on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from southbridge.core.clock import ManualClock
from southbridge.devices.apicbus import ApicBus
from southbridge.devices.ioapic import IoApic
from southbridge.devices.lapic import LocalApic
from southbridge.devices.pic import PicPair
from southbridge.domains.sources import SnapshotConfigSource, SysfsConfigSource, source_for
from southbridge.host.inventory import probe_sysfs
from southbridge.host.pciaddr import PciAddress
from southbridge.host.simulated import SimulatedDevice, build_simulated_host, example_specs

REAL = Path("/sys/bus/pci/devices")


@pytest.mark.skipif(not REAL.is_dir() or not any(REAL.iterdir()), reason="no host PCI in sysfs")
def test_real_sysfs_is_read_only_and_matches_the_file() -> None:
    # HACKING: never write real PCI sysfs. The source opens O_RDONLY and drops writes.
    entry = sorted(REAL.iterdir())[0]
    src = SysfsConfigSource(entry / "config")
    try:
        raw = (entry / "config").read_bytes()
        assert src.read(0, 4) == int.from_bytes(raw[:4], "little")
        assert src.size in (256, 4096)
        assert os.stat(entry / "config").st_size >= 64
        src.write(0x0C, 1, 0x55)  # dropped and logged, never written
        assert (entry / "config").read_bytes() == raw
        assert src.read(src.size, 4) == 0xFFFFFFFF
    finally:
        src.close()


def test_real_inventory_sources_are_sysfs_files() -> None:
    if not REAL.is_dir():
        pytest.skip("no host PCI in sysfs")
    inv = probe_sysfs("/sys")
    for dev in list(inv)[:4]:
        src = source_for(dev)
        assert isinstance(src, SysfsConfigSource) and not src.writable
        assert src.read(0, 2) == dev.vendor
        src.close()


def test_fake_tree_can_be_opened_writable(tmp_path: Path) -> None:
    build_simulated_host(tmp_path, example_specs())
    cfg = tmp_path / "bus/pci/devices/0000:00:03.0/config"
    src = SysfsConfigSource(cfg, writable=True)
    src.write(0x0C, 1, 0x10)
    assert cfg.read_bytes()[0x0C] == 0x10 and src.read(0x0C, 1) == 0x10
    src.close()


def test_short_config_reads_float_high(tmp_path: Path) -> None:
    # Without root the kernel shows 64 bytes of a real device: the rest reads all-ones.
    f = tmp_path / "config"
    f.write_bytes(bytes(range(64)))
    src = SysfsConfigSource(f)
    assert src.size == 256
    assert src.read(0x3C, 4) == 0x3F3E3D3C and src.read(0x40, 4) == 0xFFFFFFFF
    src.close()


def test_snapshot_source_reads_dump_bytes_and_drops_writes() -> None:
    snap = SnapshotConfigSource(bytes(range(64)))
    assert snap.size == 256 and snap.read(2, 2) == 0x0302
    snap.write(0, 4, 0)
    assert snap.read(0, 4) == 0x03020100 and snap.read(0x3E, 4) == 0xFFFF3F3E


def test_source_for_prefers_the_live_simulated_device(tmp_path: Path) -> None:
    sim = build_simulated_host(tmp_path, example_specs())
    inv = sim.inventory()
    dev = inv.get(PciAddress.parse("00:03.0"))
    assert dev is not None
    assert isinstance(source_for(dev, sim), SimulatedDevice)
    assert isinstance(source_for(dev), SysfsConfigSource)
    dev.sysfs_path = None
    assert isinstance(source_for(dev), SnapshotConfigSource)


def _pic() -> tuple[PicPair, list[int]]:
    pic = PicPair()
    seen: list[int] = []
    pic.eoi_listeners.append(seen.append)
    for port, words in ((pic.master, (0x11, 0x08, 0x04, 0x01)), (pic.slave, (0x11, 0x70, 2, 1))):
        port.write(0, 1, words[0])
        for w in words[1:]:
            port.write(1, 1, w)
    return pic, seen


def test_pic_eoi_listeners_hear_the_irq_whose_service_ended() -> None:
    # 8259A OCW2: non-specific EOI clears the highest ISR bit, specific EOI the named one.
    pic, seen = _pic()
    pic.set_irq(11, True)
    assert pic.acknowledge() == 0x73
    pic.slave.write(0, 1, 0x20)  # non-specific EOI on the slave: IRQ 11
    pic.master.write(0, 1, 0x62)  # specific EOI of IR2 on the master: the cascade
    assert seen == [11, 2]
    pic.set_irq(11, False)
    pic.set_irq(4, True)
    pic.acknowledge()
    pic.master.write(0, 1, 0x64)  # specific EOI of IR4
    pic.master.write(0, 1, 0x20)  # nothing in service: no notification
    assert seen == [11, 2, 4]


def test_pic_in_aeoi_mode_ends_service_at_inta_and_tells_the_listeners() -> None:
    # 8259A ICW4 AEOI: the ISR bit is reset at the end of the INTA sequence, so no EOI
    # command follows; an assigned device's INTx held "in service" must still be released.
    pic, seen = _pic()
    pic.master.write(0, 1, 0x11)
    for w in (0x08, 0x04, 0x03):  # ICW4 with AEOI
        pic.master.write(1, 1, w)
    pic.set_irq(4, True)
    assert pic.acknowledge() == 0x0C
    assert seen == [4]
    pic.master.write(0, 1, 0x0B)  # OCW3: read ISR
    assert pic.master.read(0, 1) == 0


def test_pic_eoi_listener_runs_before_the_line_is_resampled() -> None:
    # A listener that lowers the level line in time sees no second interrupt.
    pic, _ = _pic()
    pic.elcr.write(1, 1, 0x08)  # IRQ 11 level
    pic.eoi_listeners.append(lambda irq: pic.set_irq(11, False) if irq == 11 else None)
    pic.set_irq(11, True)
    pic.acknowledge()
    pic.slave.write(0, 1, 0x20)
    pic.master.write(0, 1, 0x20)
    assert not pic.intr.level


def test_ioapic_eoi_listener_runs_before_remote_irr_redelivery() -> None:
    # 82093AA: an EOI clears remote IRR and a still-asserted level pin is delivered again;
    # a listener that withdraws the level first prevents the second delivery.
    bus = ApicBus()
    lapic = LocalApic(0, ManualClock(), bus, bsp=True)
    lapic.write(0xF0, 4, 0x1FF)
    io = IoApic(bus)
    io.write_register(0x10 + 2 * 17, 0x8000 | 0x45)  # level, vector 0x45, to APIC 0
    pins: list[int] = []
    io.eoi_listeners.append(pins.append)
    io.eoi_listeners.append(lambda pin: io.set_irq(17, False))
    io.set_irq(17, True)
    assert lapic.ack() == 0x45
    lapic.write(0xB0, 4, 0)  # LAPIC EOI, broadcast for the level vector
    assert pins == [17] and lapic.highest_pending() is None
    io.set_irq(17, True)  # a new assertion is delivered as usual
    assert lapic.highest_pending() == 0x45
