"""The PIIX3 IDE function with ATA disks, through the port bus as a guest drives it
(ATA/ATAPI-6 T13/1410D, 82371SB datasheet 2.7, SFF-8038i; QEMU hw/ide as the peer)."""

from __future__ import annotations

import struct

from southbridge.devices.ide import regs as r
from southbridge.machine.ide import IdeUnit
from tests.idehelp import PRI, PRI_CTL, SEC, MemDisk, Rig, pattern

SECTORS = 2048


def disk_rig(n: int = SECTORS, **kw: object) -> tuple[Rig, MemDisk]:
    d = MemDisk(pattern(n))
    return Rig([IdeUnit(0, d)], **kw), d  # type: ignore[arg-type]


def test_identity_class_and_no_decode_at_power_on() -> None:
    """82371SB: 8086:7010, class 0101 prog-if 80h; IDETIM 0 at power-on, so the legacy ports
    read all-ones until the BIOS enables decode (SeaBIOS writes 0x8000 to 0x40/0x42)."""
    t, _ = disk_rig(enable=False)
    assert t.cfg_r(0, 4) == 0x70108086
    assert t.cfg_r(8, 4) >> 8 == 0x010180
    assert t.cfg_r(0x40, 2) == 0 and t.cfg_r(0x3D, 1) == 0
    assert t.inb(PRI + 7) == 0xFF
    t.cfg_w(0x04, 2, 1)
    t.cfg_w(0x40, 2, 0x8000)
    assert t.inb(PRI + 7) == r.DRDY | r.DSC
    assert t.inb(SEC + 7) == 0xFF  # secondary still off


def test_signature_and_absent_devices() -> None:
    """After reset device 0 shows the ATA signature (9.12); an absent device 1 reads 0, and
    a channel with no devices reads 0 (QEMU's core.c)."""
    t, _ = disk_rig()
    assert [t.inb(PRI + i) for i in (1, 2, 3, 4, 5)] == [1, 1, 1, 0, 0]
    t.outb(PRI + 6, 0xB0)
    assert t.inb(PRI + 7) == 0 and t.inb(PRI_CTL) == 0 and t.inb(PRI + 2) == 0
    t.outb(PRI + 0x6, 0xA0)
    assert t.inb(PRI + 7) & r.DRDY
    assert t.inb(SEC + 7) == 0 and t.inb(SEC + 2) == 0


def test_identify_device() -> None:
    t, _ = disk_rig()
    t.outb(PRI + 6, 0xA0)
    t.outb(PRI + 7, r.CMD_IDENTIFY)
    assert t.irq(14)
    assert t.inb(PRI_CTL) & r.DRQ and t.irq(14)  # alternate status leaves INTRQ alone
    assert t.inb(PRI + 7) == r.DRDY | r.DSC | r.DRQ
    assert not t.irq(14)  # the status read cleared it
    w = struct.unpack("<256H", t.read_data(PRI, 512))
    assert not t.inb(PRI + 7) & r.DRQ
    assert w[0] == 0x0040 and w[49] & (1 << 9) and w[83] & (1 << 10)
    assert w[60] | w[61] << 16 == SECTORS
    assert sum(w[100 + i] << (16 * i) for i in range(4)) == SECTORS
    model = b"".join(struct.pack(">H", x) for x in w[27:47]).decode().strip()
    serial = b"".join(struct.pack(">H", x) for x in w[10:20]).decode().strip()
    assert model == "SOUTHBRIDGE HARDDISK" and serial == "MEMDISK"
    assert w[88] & 0x3F == 0x3F and w[63] & 7 == 7


def test_read_sectors_pio_lba28() -> None:
    t, d = disk_rig()
    t.lba28(PRI, 5, 3)
    t.outb(PRI + 7, r.CMD_READ_SECTORS)
    got = b""
    for _ in range(3):
        assert t.irq(14)
        assert t.inb(PRI + 7) & r.DRQ
        got += t.read_data(PRI, 512)
    assert got == bytes(d.data[5 * 512 : 8 * 512])
    assert t.inb(PRI + 7) == r.DRDY | r.DSC and not t.irq(14)


def test_write_sectors_pio_and_interrupts() -> None:
    """PIO data-out (9.8): DRQ for the first block without an interrupt, an interrupt after
    each block written."""
    t, d = disk_rig()
    t.lba28(PRI, 10, 2)
    t.outb(PRI + 7, r.CMD_WRITE_SECTORS)
    assert t.inb(PRI_CTL) & r.DRQ and not t.irq(14)
    t.write_data(PRI, b"\xaa" * 512)
    assert t.irq(14) and t.inb(PRI + 7) & r.DRQ
    t.write_data(PRI, b"\xbb" * 512)
    assert t.irq(14) and t.inb(PRI + 7) == r.DRDY | r.DSC
    assert d.data[10 * 512 : 12 * 512] == b"\xaa" * 512 + b"\xbb" * 512


def test_out_of_range_is_idnf_and_unknown_abrt() -> None:
    t, _ = disk_rig()
    t.lba28(PRI, SECTORS - 1, 2)
    t.outb(PRI + 7, r.CMD_READ_SECTORS)
    assert t.inb(PRI + 7) == r.DRDY | r.DSC | r.ERR and t.inb(PRI + 1) == r.IDNF
    t.outb(PRI + 7, 0xFE)
    assert t.inb(PRI + 7) & r.ERR and t.inb(PRI + 1) == r.ABRT
    t.outb(PRI + 7, r.CMD_PACKET)
    assert t.inb(PRI + 1) == r.ABRT
