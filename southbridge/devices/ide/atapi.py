"""An ATAPI CD-ROM on an ISO image: the PACKET protocol (ATA/ATAPI-6 clause 9.10-9.11) and
the MMC commands a BIOS, a boot loader and an OS driver use.

* PACKET: DRQ for the 12-byte command with the interrupt reason "command out" (CoD), no
  interrupt (accelerated DRQ in IDENTIFY PACKET DEVICE word 0, as QEMU). Data-in goes in
  DRQ blocks of at most the byte count limit the host put in LBA mid/high (even, 0 meaning
  the largest, 0xFFFE), each with an interrupt and the block's length in the same registers;
  the status phase (I/O and CoD) ends the command with an interrupt. Feature bit 0 asks for
  DMA instead: the data goes through the bus master and one interrupt ends it.
* A failed command: CHECK (ERR) with the sense key in bits 7:4 of the error register, the
  sense data kept for REQUEST SENSE (SPC fixed format).
* Media: a disc inserted or changed later (`change_media`) gives one UNIT ATTENTION (28h,
  medium may have changed) to the next command other than INQUIRY, REQUEST SENSE, GET
  CONFIGURATION and GET EVENT STATUS NOTIFICATION (MMC-5 4.1.6.1), and a media event for GET
  EVENT STATUS NOTIFICATION. START STOP UNIT with LoEj opens or closes the tray (refused
  while PREVENT ALLOW MEDIUM REMOVAL holds it). Without a disc, media commands answer NOT
  READY, MEDIUM NOT PRESENT.
* READ(10), READ(12) and READ CD (user data only) read 2048-byte sectors; READ TOC formats
  0 (TOC) and 1 (session info) in LBA or MSF, READ CAPACITY, MODE SENSE(6/10) pages 01h and
  2Ah, GET CONFIGURATION (profile list, core, removable medium), INQUIRY, TEST UNIT READY.
"""

from __future__ import annotations

import struct
from typing import Any

from southbridge.core.state import StateError, get_bool, get_hex, get_int
from southbridge.devices.blockdev import BlockBackend, BlockError, BlockExecutor
from southbridge.devices.ide import regs as r
from southbridge.devices.ide.ata import ata_string
from southbridge.devices.ide.busmaster import DmaFault
from southbridge.devices.ide.drive import DMA, IDLE, PACKET, PIO_IN, IdeDrive

CD_SECTOR = 2048
PACKET_LEN = 12
READ_CHUNK = 16  # sectors buffered per back-end request (32 KiB)
MAX_PENDING = READ_CHUNK * CD_SECTOR
PROFILE_CDROM = 0x0008
# Media event codes (MMC-5 table 315)
EV_NONE, EV_NEW_MEDIA, EV_REMOVAL = 0, 2, 3
# Commands that neither report nor clear a unit attention.
NO_UA = (r.SC_INQUIRY, r.SC_REQUEST_SENSE, r.SC_GET_CONFIGURATION, r.SC_GET_EVENT_STATUS)
NEED_MEDIA = (
    r.SC_TEST_UNIT_READY,
    r.SC_READ_CAPACITY,
    r.SC_READ_10,
    r.SC_READ_12,
    r.SC_READ_CD,
    r.SC_READ_TOC,
    r.SC_SEEK_10,
)


def msf(lba: int) -> bytes:
    """An MSF address (MMC: LBA 0 is 00:02:00), as the 4 bytes of a TOC entry."""
    lba += 150
    return bytes([0, lba // 4500 & 0xFF, lba // 75 % 60, lba % 75])


class AtapiCdrom(IdeDrive):
    kind = "atapi"

    def __init__(
        self,
        backend: BlockBackend | None,
        executor: BlockExecutor,
        serial: str = "",
        model: str = "SOUTHBRIDGE CD-ROM",
        firmware: str = "2.5+",
    ) -> None:
        self.serial = serial or (backend.serial if backend is not None else "") or "SBCD0000"
        self.model = model
        self.firmware = firmware
        self.mode = 0x45
        self.sense = (r.SK_NO_SENSE, 0, 0)
        self.unit_attention = False
        self.media_event = EV_NONE
        self.tray_open = False
        self.locked = False
        self.bcl = 0
        self.use_dma = False
        self.pending = b""  # reply bytes not yet in a DRQ block
        self.rd_lba = 0
        self.rd_left = 0
        super().__init__(backend, executor)

    def signature(self) -> tuple[int, int, int, int]:
        return r.ATAPI_SIG

    def ready_status(self) -> int:
        return 0  # ATA-6 9.1: PACKET devices clear DRDY after a reset

    def reset_command_state(self) -> None:
        self.bcl = 0
        self.use_dma = False
        self.pending = b""
        self.rd_lba = self.rd_left = 0

    @property
    def present(self) -> bool:
        return self.backend is not None and not self.tray_open

    @property
    def capacity(self) -> int:
        """Sectors on the disc (a partial last sector is not readable)."""
        return self.backend.size // CD_SECTOR if self.present and self.backend else 0

    def change_media(self, backend: BlockBackend | None) -> None:
        """Insert (or remove, with None) a disc from the host side."""
        self.backend = backend
        self.tray_open = False
        self.unit_attention = backend is not None
        self.media_event = EV_NEW_MEDIA if backend is not None else EV_REMOVAL

    # -- ATA commands -------------------------------------------------------------------
    def execute(self, cmd: int) -> None:
        if cmd == r.CMD_PACKET:
            g = self.regs
            self.use_dma = bool(g["feature"] & 1)
            self.bcl = g["lcyl"] | g["hcyl"] << 8
            self.phase = PACKET
            self.buf = bytearray(PACKET_LEN)
            self.pos = 0
            g["nsector"] = r.IR_COD
            self.status = r.DRDY | r.DSC | r.DRQ
        elif cmd == r.CMD_IDENTIFY_PACKET:
            self.start_pio_in(self.identify())
        elif cmd == r.CMD_DEVICE_RESET:
            self.reset_device()  # no interrupt (ATA-6 9.3, device reset protocol)
        elif cmd == r.CMD_SET_FEATURES:
            if self.regs["feature"] == r.SF_XFER_MODE:
                self.mode = self.regs["nsector"]
            self.complete()
        elif cmd in (r.CMD_CHECK_POWER_MODE, r.CMD_CHECK_POWER_MODE_OLD):
            self.regs["nsector"] = r.POWER_IDLE
            self.complete()
        elif cmd in (r.CMD_IDLE_IMMEDIATE, r.CMD_STANDBY_IMMEDIATE, r.CMD_SLEEP):
            self.complete()
        else:
            # IDENTIFY DEVICE, READ SECTORS and the rest: ABRT with the signature, so a
            # driver probing with them finds a PACKET device (ATA-6 8.15.7).
            self.set_signature()
            self.abort()

    def block_done(self) -> None:
        if self.phase == PACKET:
            self.phase = IDLE
            self.packet(bytes(self.buf))
        elif self.phase == PIO_IN and self.cmd == r.CMD_PACKET:
            if self.pending:
                self._next_drq()
            elif self.rd_left:
                self._fill()
            else:
                self._ok()
        else:
            self.complete(irq=False)

    # -- the packet protocol --------------------------------------------------------------
    def _ok(self) -> None:
        self.phase = IDLE
        self.buf = bytearray()
        self.pos = 0
        self.pending = b""
        self.rd_left = 0
        self.sense = (r.SK_NO_SENSE, 0, 0)
        self.regs["nsector"] = r.IR_IO | r.IR_COD
        self.status = r.DRDY | r.DSC
        self.raise_irq()

    def _check(self, key: int, asc: int, ascq: int = 0) -> None:
        self.phase = IDLE
        self.buf = bytearray()
        self.pos = 0
        self.pending = b""
        self.rd_left = 0
        self.sense = (key, asc, ascq)
        self.error = key << 4
        self.regs["nsector"] = r.IR_IO | r.IR_COD
        self.status = r.DRDY | r.ERR
        self.raise_irq()

    def _reply(self, data: bytes, alloc: int) -> None:
        """Data-in of a short reply, cut to the allocation length."""
        data = data[:alloc]
        if not data:
            self._ok()
            return
        self.pending = data
        self.rd_left = 0
        self._data_phase()

    def _data_phase(self) -> None:
        if self.use_dma:
            self.phase = DMA
            self.status = r.DRDY | r.DSC | r.DRQ
            bm = self.channel.bm if self.channel is not None else None
            if bm is not None:
                bm.kick()
        elif self.pending:
            self._next_drq()
        else:
            self._fill()

    def _limit(self) -> int:
        bcl = self.bcl if self.bcl not in (0, 0xFFFF) else 0xFFFE
        return bcl & ~1 or 2

    def _next_drq(self) -> None:
        n = min(len(self.pending), self._limit())
        block, self.pending = self.pending[:n], self.pending[n:]
        self.regs["lcyl"], self.regs["hcyl"] = n & 0xFF, n >> 8
        self.regs["nsector"] = r.IR_IO
        self.start_pio_in(block)

    def _fill(self) -> None:
        be = self.backend
        if be is None:
            self._check(r.SK_NOT_READY, r.ASC_MEDIUM_NOT_PRESENT)
            return
        n = min(self.rd_left, READ_CHUNK)
        off = self.rd_lba * CD_SECTOR
        self.submit(lambda: be.read(off, n * CD_SECTOR), lambda res: self._filled(n, res))

    def _filled(self, n: int, result: Any) -> None:
        if isinstance(result, BlockError):
            self._check(r.SK_MEDIUM_ERROR, r.ASC_READ_ERROR)
            return
        self.rd_lba += n
        self.rd_left -= n
        self.pending = bytes(result)
        if self.use_dma:
            self.status = r.DRDY | r.DSC | r.DRQ
            bm = self.channel.bm if self.channel is not None else None
            if bm is not None:
                bm.kick()
        else:
            self._next_drq()

    def packet(self, cdb: bytes) -> None:
        op = cdb[0]
        if self.unit_attention and op not in NO_UA:
            self.unit_attention = False
            self._check(r.SK_UNIT_ATTENTION, r.ASC_MEDIUM_CHANGED)
            return
        if op in NEED_MEDIA and not self.present:
            self._check(r.SK_NOT_READY, r.ASC_MEDIUM_NOT_PRESENT)
            return
        handler = _HANDLERS.get(op)
        if handler is None:
            self.log.debug("op", "ide cd: unsupported packet command 0x%02x", op)
            self._check(r.SK_ILLEGAL_REQUEST, r.ASC_INVALID_OPCODE)
            return
        handler(self, cdb)

    # -- MMC commands ------------------------------------------------------------------
    def _tur(self, cdb: bytes) -> None:
        self._ok()

    def _request_sense(self, cdb: bytes) -> None:
        key, asc, ascq = self.sense
        data = bytes([0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0])
        self.sense = (r.SK_NO_SENSE, 0, 0)
        self._reply(data, cdb[4])

    def _inquiry(self, cdb: bytes) -> None:
        if cdb[1] & 1:
            self._check(r.SK_ILLEGAL_REQUEST, r.ASC_INVALID_FIELD)  # no VPD pages
            return
        data = bytes([0x05, 0x80, 0x00, 0x21, 31, 0, 0, 0])
        data += b"SBRIDGE ".ljust(8) + self.model.encode()[:16].ljust(16) + b"2.5+"
        self._reply(data, cdb[3] << 8 | cdb[4])

    def _read_capacity(self, cdb: bytes) -> None:
        self._reply(struct.pack(">II", max(self.capacity - 1, 0), CD_SECTOR), 8)

    def _read(self, cdb: bytes) -> None:
        op = cdb[0]
        lba = int.from_bytes(cdb[2:6], "big")
        if op == r.SC_READ_10:
            count = int.from_bytes(cdb[7:9], "big")
        elif op == r.SC_READ_12:
            count = int.from_bytes(cdb[6:10], "big")
        else:  # READ CD: user data only (MMC-5 6.19, expected sector type any or mode 1)
            count = int.from_bytes(cdb[6:9], "big")
            if cdb[9] & 0xF8 != 0x10 or cdb[1] >> 2 & 7 not in (0, 2):
                self._check(r.SK_ILLEGAL_REQUEST, r.ASC_INVALID_FIELD)
                return
        if lba + count > self.capacity:
            self._check(r.SK_ILLEGAL_REQUEST, r.ASC_LBA_OUT_OF_RANGE)
            return
        if count == 0:
            self._ok()
            return
        self.rd_lba, self.rd_left = lba, count
        self.pending = b""
        self._data_phase()

    def _seek(self, cdb: bytes) -> None:
        if int.from_bytes(cdb[2:6], "big") >= self.capacity:
            self._check(r.SK_ILLEGAL_REQUEST, r.ASC_LBA_OUT_OF_RANGE)
        else:
            self._ok()

    def _read_toc(self, cdb: bytes) -> None:
        use_msf = bool(cdb[1] & 2)
        fmt = cdb[2] & 0x0F or cdb[9] >> 6  # SFF-8020 put the format in byte 9
        start = cdb[6]
        alloc = int.from_bytes(cdb[7:9], "big")

        def addr(lba: int) -> bytes:
            return msf(lba) if use_msf else lba.to_bytes(4, "big")

        if fmt == 0:
            if start > 1 and start != 0xAA:
                self._check(r.SK_ILLEGAL_REQUEST, r.ASC_INVALID_FIELD)
                return
            body = b"" if start == 0xAA else bytes([0, 0x14, 1, 0]) + addr(0)
            body += bytes([0, 0x16, 0xAA, 0]) + addr(self.capacity)
            data = (len(body) + 2).to_bytes(2, "big") + bytes([1, 1]) + body
        elif fmt == 1:
            data = bytes([0, 10, 1, 1, 0, 0x14, 1, 0]) + addr(0)
        else:
            self._check(r.SK_ILLEGAL_REQUEST, r.ASC_INVALID_FIELD)
            return
        self._reply(data, alloc)

    def _mode_sense(self, cdb: bytes) -> None:
        ten = cdb[0] == r.SC_MODE_SENSE_10
        pc, page = cdb[2] >> 6, cdb[2] & 0x3F
        alloc = int.from_bytes(cdb[7:9], "big") if ten else cdb[4]
        if pc == 3:
            self._check(r.SK_ILLEGAL_REQUEST, r.ASC_SAVING_NOT_SUPPORTED)
            return
        error_page = bytes([0x01, 0x06, 0x00, 0x05, 0, 0, 0, 0])
        caps = bytes([0x2A, 0x12, 0x00, 0x00, 0x71, 0x29 | (2 if self.locked else 0), 0, 0])
        caps += struct.pack(">HHHH", 706, 256, 512, 706) + bytes(4)
        if pc == 1:  # changeable values: none
            error_page = error_page[:2] + bytes(len(error_page) - 2)
            caps = caps[:2] + bytes(len(caps) - 2)
        pages = {0x01: error_page, 0x2A: caps}
        if page == 0x3F:
            body = error_page + caps
        elif page in pages:
            body = pages[page]
        else:
            self._check(r.SK_ILLEGAL_REQUEST, r.ASC_INVALID_FIELD)
            return
        medium = 0x01 if self.present else 0x70  # 120 mm data disc / door closed, no disc
        if ten:
            head = (len(body) + 6).to_bytes(2, "big") + bytes([medium, 0, 0, 0, 0, 0])
        else:
            head = bytes([len(body) + 3, medium, 0, 0])
        self._reply(head + body, alloc)

    def _get_configuration(self, cdb: bytes) -> None:
        rt = cdb[1] & 3
        first = int.from_bytes(cdb[2:4], "big")
        alloc = int.from_bytes(cdb[7:9], "big")
        if rt == 3:
            self._check(r.SK_ILLEGAL_REQUEST, r.ASC_INVALID_FIELD)
            return
        cur = self.present
        profiles = struct.pack(">HBB", 0x0000, 0x03, 4) + struct.pack(
            ">HBB", PROFILE_CDROM, int(cur), 0
        )
        core = struct.pack(">HBBIB3x", 0x0001, 0x0B, 8, 2, 0x01)  # ATAPI, DBE
        removable = struct.pack(">HBBB3x", 0x0003, 0x03, 4, 0x29)  # tray, eject, lock
        # Every feature here is current: RT 0 (all) and 1 (current) list the same ones.
        feats = [(0x0000, profiles), (0x0001, core), (0x0003, removable)]
        body = b"".join(d for code, d in feats if (code == first if rt == 2 else code >= first))
        head = struct.pack(">IHH", len(body) + 4, 0, PROFILE_CDROM if cur else 0)
        self._reply(head + body, alloc)

    def _event_status(self, cdb: bytes) -> None:
        if not cdb[1] & 1:
            self._check(r.SK_ILLEGAL_REQUEST, r.ASC_INVALID_FIELD)  # only polled mode
            return
        alloc = int.from_bytes(cdb[7:9], "big")
        if cdb[4] & 0x10:
            code, self.media_event = self.media_event, EV_NONE
            status = (2 if self.present else 0) | (1 if self.tray_open else 0)
            data = struct.pack(">HBB", 6, 0x04, 0x10) + bytes([code, status, 0, 0])
        else:
            data = struct.pack(">HBB", 2, 0x80, 0x10)  # no event available
        self._reply(data, alloc)

    def _start_stop(self, cdb: bytes) -> None:
        loej, start = cdb[4] & 2, cdb[4] & 1
        if loej and not start:
            if self.locked:
                self._check(r.SK_ILLEGAL_REQUEST, 0x53, 0x02)  # medium removal prevented
                return
            if not self.tray_open:
                self.tray_open = True
                self.media_event = EV_REMOVAL
        elif loej and self.tray_open:
            self.tray_open = False
            if self.backend is not None:
                self.media_event = EV_NEW_MEDIA
        self._ok()

    def _prevent_allow(self, cdb: bytes) -> None:
        self.locked = bool(cdb[4] & 1)
        self._ok()

    # -- DMA --------------------------------------------------------------------------------
    def dma_step(self) -> None:
        bm = self.channel.bm if self.channel is not None else None
        assert bm is not None
        if not self.pending:
            if self.rd_left:
                self._fill()
            else:
                self._ok()
            return
        try:
            moved = bm.to_memory(self.pending)
        except DmaFault:
            bm.fault()
            self._check(r.SK_ILLEGAL_REQUEST, r.ASC_NONE)
            return
        if moved < len(self.pending):
            bm.stop_short()
            self.pending = b""
            self.rd_left = 0
            self.phase = IDLE
            self.status = r.DRDY | r.DSC
            return
        self.pending = b""
        if not self.rd_left:
            bm.transfer_done()
            self._ok()

    # -- IDENTIFY PACKET DEVICE ------------------------------------------------------------------
    def identify(self) -> bytes:
        w = [0] * 256
        w[0] = (2 << 14) | (5 << 8) | (1 << 7) | (2 << 5)  # ATAPI CD-ROM, removable
        w[48] = 1
        w[49] = (1 << 9) | (1 << 8)  # LBA, DMA
        w[53] = 7
        w[62] = 7
        kind, n = self.mode >> 3, self.mode & 7
        w[63] = 7 | ((1 << n) << 8 if kind == 4 else 0)
        w[64] = 3
        w[65] = w[66] = w[67] = w[68] = 0xB4
        w[71] = w[72] = 30
        w[80] = 0x1E  # ATAPI-1 to -4
        w[82] = 1 << 4  # PACKET
        w[83] = w[84] = w[87] = 1 << 14
        w[85] = 1 << 4
        w[88] = 0x3F | ((1 << n) << 8 if kind == 8 else 0)
        w[93] = 1 | (1 << 14) | 0x2000
        data = bytearray(struct.pack("<256H", *w))
        data[20:40] = ata_string(self.serial, 20)
        data[46:54] = ata_string(self.firmware, 8)
        data[54:94] = ata_string(self.model, 40)
        return bytes(data)

    # -- state ----------------------------------------------------------------------------------
    def save_command(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "sense": list(self.sense),
            "unit_attention": self.unit_attention,
            "media_event": self.media_event,
            "tray_open": self.tray_open,
            "locked": self.locked,
            "bcl": self.bcl,
            "dma": self.use_dma,
            "pending": self.pending.hex(),
            "rd_lba": self.rd_lba,
            "rd_left": self.rd_left,
            "media": self.backend is not None,
        }

    def check_command(self, state: dict[str, Any], phase: str, cmd: int) -> None:
        get_int(state, "mode", 0, 0xFF)
        sense = state.get("sense")
        if not isinstance(sense, list) or len(sense) != 3:
            raise StateError("ide cd: 'sense' must be [key, asc, ascq]")
        key = get_int({"k": sense[0]}, "k", 0, 0xF)
        get_int({"a": sense[1]}, "a", 0, 0xFF)
        get_int({"q": sense[2]}, "q", 0, 0xFF)
        del key
        for name in ("unit_attention", "tray_open", "locked", "dma", "media"):
            get_bool(state, name)
        if state["media"] != (self.backend is not None):
            raise StateError("ide cd: saved with a different disc state than loaded")
        get_int(state, "media_event", 0, EV_REMOVAL)
        get_int(state, "bcl", 0, 0xFFFF)
        pending = get_hex(state, "pending")
        if len(pending) > MAX_PENDING:
            raise StateError("ide cd: reply larger than the device buffers")
        cap = self.backend.size // CD_SECTOR if self.backend is not None else 0
        lba = get_int(state, "rd_lba", 0, cap)
        get_int(state, "rd_left", 0, cap - lba)
        busy = bool(pending) or state["rd_left"] > 0
        if busy and (cmd != r.CMD_PACKET or phase not in (PIO_IN, DMA)):
            raise StateError("ide cd: packet data outside a PACKET command's data phase")
        if phase == DMA and (cmd != r.CMD_PACKET or not state["dma"]):
            raise StateError("ide cd: DMA phase without a DMA packet command")

    def load_command(self, state: dict[str, Any]) -> None:
        self.mode = state["mode"]
        self.sense = (state["sense"][0], state["sense"][1], state["sense"][2])
        self.unit_attention = state["unit_attention"]
        self.media_event = state["media_event"]
        self.tray_open, self.locked = state["tray_open"], state["locked"]
        self.bcl, self.use_dma = state["bcl"], state["dma"]
        self.pending = bytes.fromhex(state["pending"])
        self.rd_lba, self.rd_left = state["rd_lba"], state["rd_left"]


_HANDLERS: dict[int, Any] = {
    r.SC_TEST_UNIT_READY: AtapiCdrom._tur,
    r.SC_REQUEST_SENSE: AtapiCdrom._request_sense,
    r.SC_INQUIRY: AtapiCdrom._inquiry,
    r.SC_READ_CAPACITY: AtapiCdrom._read_capacity,
    r.SC_READ_10: AtapiCdrom._read,
    r.SC_READ_12: AtapiCdrom._read,
    r.SC_READ_CD: AtapiCdrom._read,
    r.SC_SEEK_10: AtapiCdrom._seek,
    r.SC_READ_TOC: AtapiCdrom._read_toc,
    r.SC_MODE_SENSE_6: AtapiCdrom._mode_sense,
    r.SC_MODE_SENSE_10: AtapiCdrom._mode_sense,
    r.SC_GET_CONFIGURATION: AtapiCdrom._get_configuration,
    r.SC_GET_EVENT_STATUS: AtapiCdrom._event_status,
    r.SC_START_STOP: AtapiCdrom._start_stop,
    r.SC_PREVENT_ALLOW: AtapiCdrom._prevent_allow,
    r.SC_SET_CD_SPEED: AtapiCdrom._tur,
}
