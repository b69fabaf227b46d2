"""The PIIX3 IDE function with ATA disks, through the port bus as a guest drives it
(ATA/ATAPI-6 T13/1410D, 82371SB datasheet 2.7, SFF-8038i; QEMU hw/ide as the peer)."""

from __future__ import annotations

import copy
import struct

import pytest

from southbridge.core.state import StateError
from southbridge.devices.ide import regs as r
from southbridge.machine.ide import IdeUnit
from tests.idehelp import PRI, PRI_CTL, SEC, MemDisk, QueuedExecutor, Rig, pattern

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


BM = 0xC000  # primary channel's bus-master block (tests/idehelp.py programs BAR4 there)
BUF, TABLE = 0x200000, 0x10000


def dma_cmd(t: Rig, cmd: int, lba: int, count: int, write_mem: bool = True) -> None:
    t.m.ports.write(BM + 4, 4, TABLE)
    t.lba28(PRI, lba, count)
    t.outb(PRI + 7, cmd)
    t.outb(BM, 0x09 if write_mem else 0x01)


def test_read_dma_through_prd_table() -> None:
    """SFF-8038i: regions scattered as the table says; the table used up exactly, so
    active clears and the interrupt bit is set with INTRQ."""
    t, d = disk_rig()
    t.prd(TABLE, [(BUF, 1024, False), (BUF + 0x5000, 512, True)])
    dma_cmd(t, r.CMD_READ_DMA, 7, 3)
    assert t.irq(14) and t.inb(BM + 2) & 7 == 0x04
    assert t.inb(PRI + 7) == r.DRDY | r.DSC and not t.irq(14)
    assert t.m.space.read_bytes(BUF, 1024) == bytes(d.data[7 * 512 : 9 * 512])
    assert t.m.space.read_bytes(BUF + 0x5000, 512) == bytes(d.data[9 * 512 : 10 * 512])
    t.outb(BM + 2, 0x04)  # write 1 to clear
    assert t.inb(BM + 2) & 0x04 == 0


def test_write_dma_ext_and_start_after_command() -> None:
    """The bus master may be started after the command (the device waits with DRQ)."""
    t, d = disk_rig()
    t.m.space.write_bytes(BUF, b"\x5a" * 1024)
    t.prd(TABLE, [(BUF, 1024, True)])
    t.m.ports.write(BM + 4, 4, TABLE)
    t.lba48(PRI, 100, 2)
    t.outb(PRI + 7, r.CMD_WRITE_DMA_EXT)
    assert t.inb(PRI_CTL) & r.DRQ and not t.irq(14)
    t.outb(BM, 0x01)
    assert t.irq(14) and t.inb(PRI + 7) == r.DRDY | r.DSC
    assert d.data[100 * 512 : 102 * 512] == b"\x5a" * 1024


def test_prd_longer_than_transfer_keeps_active() -> None:
    t, _ = disk_rig()
    t.prd(TABLE, [(BUF, 4096, True)])
    dma_cmd(t, r.CMD_READ_DMA, 0, 1)
    assert t.irq(14) and t.inb(BM + 2) & 7 == 0x05  # interrupt with active still set


def test_prd_shorter_than_transfer_stops_without_interrupt() -> None:
    """The table ends first: active clears, no interrupt, the device does not complete."""
    t, _ = disk_rig()
    t.prd(TABLE, [(BUF, 512, True)])
    dma_cmd(t, r.CMD_READ_DMA, 0, 4)
    assert not t.irq(14) and t.inb(BM + 2) & 7 == 0
    assert not t.inb(PRI + 7) & (r.BSY | r.DRQ)


def test_zero_count_entry_is_64k_and_table_past_ram() -> None:
    """A byte count of 0 means 64 KiB; a table past RAM reads all-ones (an entry with the
    end bit pointing at the top of memory, writes dropped): handled, never raising."""
    t, d = disk_rig()
    t.prd(TABLE, [(BUF, 0, True)])
    dma_cmd(t, r.CMD_READ_DMA, 0, 128)
    assert t.irq(14) and t.inb(BM + 2) & 7 == 0x04
    assert t.m.space.read_bytes(BUF, 65536) == bytes(d.data[:65536])
    t.inb(PRI + 7)
    t.outb(BM, 0)
    t.outb(BM + 2, 0x06)
    t.m.ports.write(BM + 4, 4, 0xFFFF0000)  # unassigned: entries read 0xFFFFFFFF
    t.lba28(PRI, 0, 1)
    t.outb(PRI + 7, r.CMD_READ_DMA)
    t.outb(BM, 0x09)
    assert t.inb(PRI + 7) & r.DRDY and not t.inb(PRI + 7) & r.BSY


def test_table_without_end_bit_stops_at_its_64k_page() -> None:
    t, _ = disk_rig()
    entries = [(BUF, 2, False)] * 8192  # one whole 64 KiB page of 2-byte regions
    t.prd(TABLE, entries)
    dma_cmd(t, r.CMD_READ_DMA, 0, 128)  # wants 64 KiB, the table moves 16 KiB
    assert not t.irq(14) and t.inb(BM + 2) & 1 == 0


def test_bus_mastering_off_is_a_master_abort() -> None:
    t, _ = disk_rig()
    t.cfg_w(0x04, 2, 0x0001)  # I/O only
    t.prd(TABLE, [(BUF, 512, True)])
    dma_cmd(t, r.CMD_READ_DMA, 0, 1)
    assert t.inb(BM + 2) & 3 == 0x02  # error, not active
    assert t.inb(PRI + 7) & r.ERR and t.inb(PRI + 1) == r.ABRT


def test_multiple_mode_blocks() -> None:
    t, d = disk_rig()
    t.outb(PRI + 2, 3)
    t.outb(PRI + 7, r.CMD_SET_MULTIPLE)
    assert t.inb(PRI + 7) & r.ERR  # not a power of two
    t.outb(PRI + 2, 4)
    t.outb(PRI + 7, r.CMD_SET_MULTIPLE)
    assert not t.inb(PRI + 7) & r.ERR
    t.lba28(PRI, 0, 6)
    t.outb(PRI + 7, r.CMD_READ_MULTIPLE)
    assert t.inb(PRI + 7) & r.DRQ
    got = t.read_data(PRI, 4 * 512)  # one DRQ block of four sectors
    assert t.irq(14) and t.inb(PRI + 7) & r.DRQ
    got += t.read_data(PRI, 2 * 512)
    assert got == bytes(d.data[: 6 * 512]) and not t.inb(PRI + 7) & r.DRQ
    t.outb(PRI + 2, 0)
    t.outb(PRI + 7, r.CMD_SET_MULTIPLE)
    t.outb(PRI + 7, r.CMD_READ_MULTIPLE)
    assert t.inb(PRI + 7) & r.ERR  # multiple mode disabled: ABRT


def test_chs_and_initialize_device_parameters() -> None:
    """CHS (6.2.1): LBA = (C * heads + H) * spt + S - 1 with the current geometry."""
    t, d = disk_rig()
    t.outb(PRI + 2, 32)
    t.outb(PRI + 6, 0xA0 | 3)  # 4 heads
    t.outb(PRI + 7, r.CMD_INIT_DEV_PARAMS)
    assert not t.inb(PRI + 7) & r.ERR
    t.outb(PRI + 6, 0xA0 | 2)  # CHS, head 2
    t.outb(PRI + 2, 1)
    t.outb(PRI + 3, 5)  # sector 5
    t.outb(PRI + 4, 1)  # cylinder 1
    t.outb(PRI + 5, 0)
    t.outb(PRI + 7, r.CMD_READ_SECTORS)
    lba = (1 * 4 + 2) * 32 + 4
    assert t.read_data(PRI, 512) == bytes(d.data[lba * 512 : (lba + 1) * 512])
    t.outb(PRI + 3, 0)  # sector 0 does not exist
    t.outb(PRI + 7, r.CMD_READ_SECTORS)
    assert t.inb(PRI + 7) & r.ERR and t.inb(PRI + 1) & r.IDNF


def test_set_features_flush_and_power() -> None:
    t, d = disk_rig()
    t.outb(PRI + 1, r.SF_XFER_MODE)
    t.outb(PRI + 2, 0x22)  # MWDMA 2
    t.outb(PRI + 7, r.CMD_SET_FEATURES)
    assert not t.inb(PRI + 7) & r.ERR
    t.outb(PRI + 7, r.CMD_IDENTIFY)
    t.inb(PRI + 7)
    w = struct.unpack("<256H", t.read_data(PRI, 512))
    assert w[63] >> 8 == 0x04 and w[88] >> 8 == 0
    t.outb(PRI + 1, r.SF_XFER_MODE)
    t.outb(PRI + 2, 0x47)  # UDMA 7 does not exist
    t.outb(PRI + 7, r.CMD_SET_FEATURES)
    assert t.inb(PRI + 7) & r.ERR
    t.outb(PRI + 7, r.CMD_FLUSH_CACHE)
    assert not t.inb(PRI + 7) & r.ERR and d.flushes == 1
    t.outb(PRI + 7, r.CMD_STANDBY_IMMEDIATE)
    t.outb(PRI + 7, r.CMD_CHECK_POWER_MODE)
    assert t.inb(PRI + 2) == 0x00
    t.outb(PRI + 7, r.CMD_IDLE_IMMEDIATE)
    t.outb(PRI + 7, r.CMD_CHECK_POWER_MODE)
    assert t.inb(PRI + 2) == 0xFF


def test_lba48_read_and_hob_readback() -> None:
    t, d = disk_rig()
    t.lba48(PRI, 0x12, 1)
    t.outb(PRI_CTL, r.CTL_HOB)
    assert t.inb(PRI + 3) == 0  # the previous (HOB) LBA byte
    t.outb(PRI_CTL, 0)
    t.outb(PRI + 7, r.CMD_READ_SECTORS_EXT)
    assert t.read_data(PRI, 512) == bytes(d.data[0x12 * 512 : 0x13 * 512])


def test_errors_io_and_read_only() -> None:
    d = MemDisk(pattern(64), read_only=True)
    t = Rig([IdeUnit(0, d)])
    t.lba28(PRI, 0, 1)
    t.outb(PRI + 7, r.CMD_WRITE_SECTORS)
    assert t.inb(PRI + 7) & r.ERR and t.inb(PRI + 1) == r.ABRT
    d.fail = True
    t.outb(PRI + 7, r.CMD_READ_SECTORS)
    assert t.inb(PRI + 7) & r.ERR and t.inb(PRI + 1) == r.UNC


def test_nien_masks_intrq_and_srst_resets() -> None:
    """nIEN (7.8) masks INTRQ without losing the pending interrupt; SRST: BSY while set,
    the signature and diagnostic code 01h when it clears (9.2)."""
    t, _ = disk_rig()
    t.outb(PRI_CTL, r.CTL_NIEN)
    t.outb(PRI + 7, r.CMD_IDENTIFY)
    assert not t.irq(14)
    t.outb(PRI_CTL, 0)
    assert t.irq(14)
    t.outb(PRI_CTL, r.CTL_SRST)
    assert t.inb(PRI_CTL) & r.BSY and not t.irq(14)
    t.outb(PRI + 7, r.CMD_IDENTIFY)  # ignored in reset
    t.outb(PRI_CTL, 0)
    assert t.inb(PRI + 7) == r.DRDY | r.DSC
    assert [t.inb(PRI + i) for i in (1, 2, 3, 4, 5)] == [1, 1, 1, 0, 0]


def test_busy_ignores_commands_and_interrupt_follows_completion() -> None:
    ex = QueuedExecutor()
    t, d = disk_rig(executor=lambda lock, name: ex)
    t.lba28(PRI, 1, 1)
    t.outb(PRI + 7, r.CMD_READ_SECTORS)
    assert t.inb(PRI + 7) & r.BSY and not t.irq(14)
    t.outb(PRI + 7, r.CMD_IDENTIFY)  # ignored while BSY
    ex.run_all()
    assert t.irq(14)
    assert t.read_data(PRI, 512) == bytes(d.data[512:1024])


def test_save_restore_mid_pio_transfer() -> None:
    """A PIO read saved between DRQ words continues after restore on a fresh machine."""
    t, d = disk_rig()
    t.lba28(PRI, 2, 2)
    t.outb(PRI + 7, r.CMD_READ_SECTORS)
    first = t.read_data(PRI, 100)
    state = t.m.ide.save()
    t2, _ = disk_rig()
    t2.ide.restore(state)
    rest = t2.read_data(PRI, 1024 - 100)
    assert first + rest == bytes(d.data[1024:2048])
    assert t2.inb(PRI + 7) == r.DRDY | r.DSC


def test_save_refused_while_io_in_flight_and_bad_states_rejected() -> None:
    ex = QueuedExecutor()
    t, _ = disk_rig(executor=lambda lock, name: ex)
    t.lba28(PRI, 1, 1)
    t.outb(PRI + 7, r.CMD_READ_SECTORS)
    with pytest.raises(StateError):
        t.ide.save()
    ex.run_all()
    good = t.ide.save()
    drive = good["device"]["channels"][0]["drives"][0]
    for key, value in [
        ("phase", "bogus"),
        ("pos", 10_000),
        ("status", r.BSY),
        ("buf", "zz"),
        ("select", 1 << 70),
    ]:
        bad = copy.deepcopy(good)
        bad["device"]["channels"][0]["drives"][0][key] = value
        with pytest.raises(StateError):
            t.ide.restore(bad)
    bad = copy.deepcopy(good)
    bad["device"]["channels"][0]["drives"][0]["command"]["remaining"] = SECTORS + 1
    with pytest.raises(StateError):
        t.ide.restore(bad)
    bad = copy.deepcopy(good)
    bad["device"]["channels"][0]["drives"][1] = drive  # a disk where there is none
    with pytest.raises(StateError):
        t.ide.restore(bad)
    assert t.ide.save() == good  # rejected states left it unchanged
    t.ide.restore(good)


def test_nien_keeps_the_bus_master_interrupt_bit_clear() -> None:
    """The interrupt bit latches the rising edge of the channel's INTRQ (SFF-8038i): with
    nIEN the device does not drive it, so only active (clear: table used up) shows the end."""
    t, _ = disk_rig()
    t.outb(PRI_CTL, r.CTL_NIEN)
    t.prd(TABLE, [(BUF, 512, True)])
    dma_cmd(t, r.CMD_READ_DMA, 0, 1)
    assert t.inb(BM + 2) & 7 == 0 and t.inb(PRI + 7) == r.DRDY | r.DSC


@pytest.mark.parametrize("size", [2, 4])
def test_string_io_matches_item_by_item(size: int) -> None:
    """REP INS/OUTS through the data port's string path (one call per KVM exit) answers as
    the same number of single accesses, across DRQ block boundaries and past the data."""
    t, d = disk_rig()
    t.lba28(PRI, 4, 3)
    t.outb(PRI + 7, r.CMD_READ_SECTORS)
    cb = t.ide.channels[0].command_block
    got = cb.read_string(0, size, 300 // size) + cb.read_string(0, size, 1300 // size)
    assert got[: 3 * 512] == bytes(d.data[4 * 512 : 7 * 512]) and not any(got[3 * 512 :])
    t.lba28(PRI, 20, 2)
    t.outb(PRI + 7, r.CMD_WRITE_SECTORS)
    cb.write_string(0, size, b"\x11" * 700 + b"\x22" * 324)
    assert t.inb(PRI + 7) == r.DRDY | r.DSC
    assert d.data[20 * 512 : 22 * 512] == b"\x11" * 700 + b"\x22" * 324
