"""The ATAPI CD-ROM on the secondary master: the PACKET protocol (ATA/ATAPI-6 9.10-9.11:
CoD/IO interrupt reason, byte count limit, status phase) and the MMC commands, through
the port bus as a driver makes them; DMA through the bus master."""

from __future__ import annotations

import struct

from southbridge.devices.ide import regs as r
from southbridge.devices.ide.atapi import AtapiCdrom
from southbridge.machine.ide import IdeUnit
from tests.idehelp import BM_BASE, SEC, SEC_CTL, MemDisk, Rig, pattern

CD_SECTORS = 40


def cd_rig(media: bool = True) -> tuple[Rig, AtapiCdrom, MemDisk]:
    disc = MemDisk(pattern(CD_SECTORS, 2048))
    t = Rig([IdeUnit(2, disc, cdrom=True)])
    cd = t.ide.drive(2)
    assert isinstance(cd, AtapiCdrom)
    if not media:
        cd.change_media(None)
    return t, cd, disc


def packet(t: Rig, cdb: bytes, bcl: int = 0xFFFE, dma: bool = False) -> tuple[bytes, list[int]]:
    """Run one packet command by PIO; returns the data and each DRQ block's byte count."""
    t.outb(SEC + 6, 0xA0)
    t.outb(SEC + 1, 1 if dma else 0)
    t.outb(SEC + 4, bcl & 0xFF)
    t.outb(SEC + 5, bcl >> 8)
    t.outb(SEC + 7, r.CMD_PACKET)
    assert t.inb(SEC_CTL) & r.DRQ and t.inb(SEC + 2) & 3 == r.IR_COD
    assert not t.irq(15)  # accelerated DRQ: no interrupt for the packet
    t.write_data(SEC, cdb.ljust(12, b"\0"))
    data, blocks = b"", []
    for _ in range(10_000):
        if dma:
            break
        st = t.inb(SEC_CTL)
        if not st & r.DRQ:
            break
        assert t.irq(15) and t.inb(SEC + 2) & 3 == r.IR_IO
        n = t.inb(SEC + 4) | t.inb(SEC + 5) << 8
        t.inb(SEC + 7)
        blocks.append(n)
        data += t.read_data(SEC, n)
    return data, blocks


def status_phase(t: Rig) -> int:
    """The command's end: interrupt, I/O and CoD; returns the status read (clears INTRQ)."""
    assert t.irq(15)
    assert t.inb(SEC + 2) & 3 == r.IR_IO | r.IR_COD
    st = t.inb(SEC + 7)
    assert not t.irq(15)
    return st


def sense(t: Rig) -> tuple[int, int]:
    data, _ = packet(t, bytes([r.SC_REQUEST_SENSE, 0, 0, 0, 18]))
    status_phase(t)
    return data[2] & 0xF, data[12]


def test_signature_identify_and_ata_commands_abort() -> None:
    """After reset: the ATAPI signature 14h/EBh, DRDY clear (9.1); IDENTIFY DEVICE aborts
    with the signature kept; IDENTIFY PACKET DEVICE gives word 0 = ATAPI CD-ROM."""
    t, _, _ = cd_rig()
    assert (t.inb(SEC + 4), t.inb(SEC + 5)) == (0x14, 0xEB) and t.inb(SEC + 7) == 0
    t.outb(SEC + 6, 0xA0)
    t.outb(SEC + 7, r.CMD_IDENTIFY)
    assert t.inb(SEC + 7) & r.ERR and t.inb(SEC + 1) == r.ABRT
    assert (t.inb(SEC + 4), t.inb(SEC + 5)) == (0x14, 0xEB)
    t.outb(SEC + 7, r.CMD_IDENTIFY_PACKET)
    assert t.irq(15) and t.inb(SEC + 7) & r.DRQ
    w = struct.unpack("<256H", t.read_data(SEC, 512))
    assert w[0] >> 14 == 2 and w[0] >> 8 & 0x1F == 5 and w[0] & 0x80
    model = b"".join(struct.pack(">H", x) for x in w[27:47]).decode().strip()
    assert model == "SOUTHBRIDGE CD-ROM"


def test_inquiry_tur_capacity() -> None:
    t, _, _ = cd_rig()
    data, _ = packet(t, bytes([r.SC_INQUIRY, 0, 0, 0, 36]))
    assert data[0] == 5 and data[1] & 0x80 and len(data) == 36
    assert status_phase(t) == r.DRDY | r.DSC
    packet(t, bytes([r.SC_TEST_UNIT_READY]))
    assert not status_phase(t) & r.ERR
    data, _ = packet(t, bytes([r.SC_READ_CAPACITY]))
    assert struct.unpack(">II", data) == (CD_SECTORS - 1, 2048)
    status_phase(t)


def test_read10_with_byte_count_limit() -> None:
    """DRQ blocks of at most the byte count limit (an odd limit is made even)."""
    t, _, disc = cd_rig()
    cdb = bytes([r.SC_READ_10, 0, 0, 0, 0, 3, 0, 0, 2])
    data, blocks = packet(t, cdb, bcl=3001)
    assert data == bytes(disc.data[3 * 2048 : 5 * 2048])
    assert max(blocks) == 3000 and sum(blocks) == 4096
    assert status_phase(t) == r.DRDY | r.DSC


def test_read12_out_of_range_and_sense() -> None:
    t, _, _ = cd_rig()
    packet(t, bytes([r.SC_READ_12, 0, 0, 0, 0, CD_SECTORS - 1, 0, 0, 0, 2]))
    st = status_phase(t)
    assert st & r.ERR and t.inb(SEC + 1) >> 4 == r.SK_ILLEGAL_REQUEST
    assert sense(t) == (r.SK_ILLEGAL_REQUEST, r.ASC_LBA_OUT_OF_RANGE)
    assert sense(t) == (r.SK_NO_SENSE, 0)  # REQUEST SENSE cleared it


def test_unknown_opcode_and_no_media() -> None:
    t, _, _ = cd_rig(media=False)
    packet(t, bytes([0xFF]))
    assert status_phase(t) & r.ERR and sense(t)[1] == r.ASC_INVALID_OPCODE
    packet(t, bytes([r.SC_TEST_UNIT_READY]))
    assert status_phase(t) & r.ERR
    assert sense(t) == (r.SK_NOT_READY, r.ASC_MEDIUM_NOT_PRESENT)


def test_media_change_unit_attention_once_and_event() -> None:
    """MMC-5 4.1.6.1: the next command after a change reports UNIT ATTENTION 28h once;
    INQUIRY and GET EVENT STATUS NOTIFICATION do not consume it; the media event is
    reported once as new media."""
    t, cd, disc = cd_rig(media=False)
    cd.change_media(disc)
    packet(t, bytes([r.SC_INQUIRY, 0, 0, 0, 36]))
    assert not status_phase(t) & r.ERR
    gesn = bytes([r.SC_GET_EVENT_STATUS, 1, 0, 0, 0x10, 0, 0, 0, 8])
    data, _ = packet(t, gesn)
    status_phase(t)
    assert data[2] == 4 and data[4] == 2 and data[5] & 2  # media class, new media, present
    data, _ = packet(t, gesn)
    status_phase(t)
    assert data[4] == 0
    packet(t, bytes([r.SC_TEST_UNIT_READY]))
    assert status_phase(t) & r.ERR and t.inb(SEC + 1) >> 4 == r.SK_UNIT_ATTENTION
    packet(t, bytes([r.SC_TEST_UNIT_READY]))
    assert not status_phase(t) & r.ERR


def test_read_toc_formats_0_and_1() -> None:
    t, _, _ = cd_rig()
    data, _ = packet(t, bytes([r.SC_READ_TOC, 0, 0, 0, 0, 0, 0, 0, 100]))
    status_phase(t)
    assert data[:4] == bytes([0, 18, 1, 1])
    assert data[4:12] == bytes([0, 0x14, 1, 0, 0, 0, 0, 0])
    assert data[14] == 0xAA and int.from_bytes(data[16:20], "big") == CD_SECTORS
    data, _ = packet(t, bytes([r.SC_READ_TOC, 2, 0, 0, 0, 0, 0, 0, 100]))  # MSF
    status_phase(t)
    assert data[8:12] == bytes([0, 0, 2, 0])  # track 1 at 00:02:00
    data, _ = packet(t, bytes([r.SC_READ_TOC, 0, 1, 0, 0, 0, 0, 0, 12]))
    status_phase(t)
    assert data == bytes([0, 10, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0])
    packet(t, bytes([r.SC_READ_TOC, 0, 5, 0, 0, 0, 0, 0, 12]))
    assert status_phase(t) & r.ERR


def test_mode_sense_and_get_configuration() -> None:
    t, _, _ = cd_rig()
    data, _ = packet(t, bytes([r.SC_MODE_SENSE_10, 0, 0x2A, 0, 0, 0, 0, 0, 64]))
    status_phase(t)
    assert int.from_bytes(data[:2], "big") == len(data) - 2 and data[8] == 0x2A
    packet(t, bytes([r.SC_MODE_SENSE_10, 0, 0xC1, 0, 0, 0, 0, 0, 64]))
    assert status_phase(t) & r.ERR  # saved values: not supported
    data, _ = packet(t, bytes([r.SC_GET_CONFIGURATION, 0, 0, 0, 0, 0, 0, 0, 64]))
    status_phase(t)
    assert int.from_bytes(data[6:8], "big") == 0x0008  # current profile: CD-ROM
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    data, _ = packet(t, bytes([r.SC_GET_CONFIGURATION, 2, 0, 1, 0, 0, 0, 0, 64]))
    status_phase(t)
    assert len(data) == 8 + 12 and data[8:10] == b"\x00\x01"


def test_start_stop_eject_and_prevent() -> None:
    t, _, _ = cd_rig()
    packet(t, bytes([r.SC_PREVENT_ALLOW, 0, 0, 0, 1]))
    status_phase(t)
    packet(t, bytes([r.SC_START_STOP, 0, 0, 0, 2]))
    assert status_phase(t) & r.ERR  # removal prevented
    packet(t, bytes([r.SC_PREVENT_ALLOW, 0, 0, 0, 0]))
    status_phase(t)
    packet(t, bytes([r.SC_START_STOP, 0, 0, 0, 2]))
    assert not status_phase(t) & r.ERR
    packet(t, bytes([r.SC_TEST_UNIT_READY]))
    assert status_phase(t) & r.ERR
    packet(t, bytes([r.SC_START_STOP, 0, 0, 0, 3]))  # load
    status_phase(t)
    packet(t, bytes([r.SC_TEST_UNIT_READY]))
    assert not status_phase(t) & r.ERR


def test_read10_by_dma() -> None:
    """Feature bit 0: the data goes through the bus master; one interrupt at the end."""
    t, _, disc = cd_rig()
    buf, table = 0x100000, 0x8000
    t.prd(table, [(buf, 4096, False), (buf + 4096, 2048, True)])
    bm = BM_BASE + 8
    t.m.ports.write(bm + 4, 4, table)
    t.outb(bm, 0x09)  # start, write to memory
    packet(t, bytes([r.SC_READ_10, 0, 0, 0, 0, 1, 0, 0, 3]), dma=True)
    assert status_phase(t) == r.DRDY | r.DSC
    assert t.inb(bm + 2) & 0x07 == 0x04  # interrupt, table used up: not active
    assert t.m.space.read_bytes(buf, 6144) == bytes(disc.data[2048 : 4 * 2048])
