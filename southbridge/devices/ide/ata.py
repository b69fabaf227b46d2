"""An ATA disk on a block back-end: the ATA/ATAPI-6 command set a BIOS, a boot loader or an
old OS uses (T13/1410D clause 8).

* IDENTIFY DEVICE: model, serial and firmware revision as byte-swapped ASCII (8.15), the
  default and current CHS geometry, LBA28 (words 60-61) and LBA48 (100-103) capacities, PIO
  modes 3-4, multiword DMA 0-2 and UDMA 0-5 with the selected mode, FLUSH CACHE (EXT) and
  48-bit addressing in the command-set words 82-87.
* READ/WRITE SECTORS (EXT), READ/WRITE MULTIPLE (EXT) in blocks of the SET MULTIPLE MODE
  count, READ/WRITE DMA (EXT) through the channel's bus master, READ VERIFY, SEEK.
* CHS addressing uses the current geometry (INITIALIZE DEVICE PARAMETERS sets heads and
  sectors per track; cylinders follow from the capacity), 6.2.1. After each block the
  address and count registers show the next sector and what remains (QEMU does the same).
* Errors: an address past the end (or a CHS address outside the geometry) is IDNF, a failed
  back-end read UNC, a write to a read-only image and anything unsupported ABRT.
"""

from __future__ import annotations

import struct
from typing import Any

from southbridge.core.state import StateError, brief, get_bool, get_int
from southbridge.devices.blockdev import SECTOR, BlockBackend, BlockError, BlockExecutor
from southbridge.devices.ide import regs as r
from southbridge.devices.ide.busmaster import DmaFault
from southbridge.devices.ide.drive import DMA, IDLE, PIO_IN, PIO_OUT, IdeDrive

MAX_MULT = 16  # sectors per DRQ block of READ/WRITE MULTIPLE (QEMU's MAX_MULT_SECTORS)
DMA_CHUNK = 128  # sectors per back-end request of a DMA command (64 KiB)
LBA28_MAX = 0x0FFFFFFF
CHS_MAX_CYLS = 16383
XFERS = ("", "read", "write", "identify")
DEFAULT_MODE = 0x45  # UDMA mode 5 selected, as QEMU's IDENTIFY shows after power-on


def ata_string(text: str, length: int) -> bytes:
    """An IDENTIFY string field: ASCII padded with spaces, each word's bytes swapped."""
    raw = text.encode("ascii", "replace")[:length].ljust(length, b" ")
    return b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, length, 2))


class AtaDisk(IdeDrive):
    kind = "ata"

    def __init__(
        self,
        backend: BlockBackend,
        executor: BlockExecutor,
        serial: str = "",
        model: str = "SOUTHBRIDGE HARDDISK",
        firmware: str = "2.5+",
    ) -> None:
        self.sectors = backend.size // SECTOR
        self.serial = serial or backend.serial or "SB00000000"
        self.model = model
        self.firmware = firmware
        self.cyls, self.heads, self.spt = default_geometry(self.sectors)
        self.cur_heads, self.cur_spt = self.heads, self.spt
        self.mult = MAX_MULT
        self.mode = DEFAULT_MODE
        self.wcache = True
        self.xfer = ""
        self.lba = 0
        self.remaining = 0
        self.block = 1
        self.lba48 = False
        super().__init__(backend, executor)

    def reset_command_state(self) -> None:
        self.xfer = ""
        self.lba = self.remaining = 0
        self.block = 1
        self.lba48 = False

    # -- geometry and addresses -------------------------------------------------------------
    @property
    def cur_cyls(self) -> int:
        per_cyl = self.cur_heads * self.cur_spt
        return min(self.sectors // per_cyl, CHS_MAX_CYLS) if per_cyl else 0

    def _address(self, ext: bool) -> tuple[int, int] | None:
        """(LBA, sector count) of the command in the task file; None for a bad CHS."""
        g, h = self.regs, self.hob
        if ext:
            lba = g["sector"] | g["lcyl"] << 8 | g["hcyl"] << 16
            lba |= h["sector"] << 24 | h["lcyl"] << 32 | h["hcyl"] << 40
            count = g["nsector"] | h["nsector"] << 8
            return lba, count or 0x10000
        count = g["nsector"] or 0x100
        if self.select & r.SEL_LBA:
            lba = g["sector"] | g["lcyl"] << 8 | g["hcyl"] << 16 | (self.select & 0x0F) << 24
            return lba, count
        cyl = g["lcyl"] | g["hcyl"] << 8
        head = self.select & 0x0F
        sect = g["sector"]
        if not 1 <= sect <= self.cur_spt or head >= self.cur_heads or cyl >= self.cur_cyls:
            return None
        return (cyl * self.cur_heads + head) * self.cur_spt + sect - 1, count

    def _set_address(self, lba: int, left: int) -> None:
        """The task file after a block: the next sector, the count left (QEMU's order)."""
        g, h = self.regs, self.hob
        if self.lba48:
            g["sector"], g["lcyl"], g["hcyl"] = lba & 0xFF, lba >> 8 & 0xFF, lba >> 16 & 0xFF
            h["sector"], h["lcyl"], h["hcyl"] = lba >> 24 & 0xFF, lba >> 32 & 0xFF, lba >> 40 & 0xFF
            g["nsector"], h["nsector"] = left & 0xFF, left >> 8 & 0xFF
            return
        g["nsector"] = left & 0xFF
        if self.select & r.SEL_LBA:
            g["sector"], g["lcyl"], g["hcyl"] = lba & 0xFF, lba >> 8 & 0xFF, lba >> 16 & 0xFF
            self.select = self.select & 0xF0 | lba >> 24 & 0x0F
        elif self.cur_heads and self.cur_spt:
            cyl, rest = divmod(min(lba, self.sectors), self.cur_heads * self.cur_spt)
            head, sect = divmod(rest, self.cur_spt)
            g["sector"], g["lcyl"], g["hcyl"] = sect + 1, cyl & 0xFF, cyl >> 8 & 0xFF
            self.select = self.select & 0xF0 | head & 0x0F

    # -- commands ---------------------------------------------------------------------------
    def execute(self, cmd: int) -> None:
        rw = _RW.get(cmd)
        if rw is not None:
            self._rw(*rw)
        elif cmd == r.CMD_IDENTIFY:
            self.xfer = "identify"
            self.start_pio_in(self.identify())
        elif cmd in (r.CMD_READ_VERIFY, r.CMD_READ_VERIFY_NORETRY, r.CMD_READ_VERIFY_EXT):
            self._verify(cmd == r.CMD_READ_VERIFY_EXT)
        elif cmd == r.CMD_SEEK or cmd & 0xF0 == r.CMD_RECALIBRATE:
            self.complete()
        elif cmd == r.CMD_SET_MULTIPLE:
            n = self.regs["nsector"]
            if n > MAX_MULT or n & (n - 1):
                self.abort()
            else:
                self.mult = n
                self.complete()
        elif cmd == r.CMD_INIT_DEV_PARAMS:
            self._init_params()
        elif cmd == r.CMD_SET_FEATURES:
            self._set_features()
        elif cmd in (r.CMD_FLUSH_CACHE, r.CMD_FLUSH_CACHE_EXT):
            be = self.backend
            assert be is not None
            self.submit(be.flush, self._flushed)
        elif cmd in _POWER:
            self.power_idle = _POWER[cmd]
            self.complete()
        elif cmd in (r.CMD_CHECK_POWER_MODE, r.CMD_CHECK_POWER_MODE_OLD):
            self.regs["nsector"] = r.POWER_IDLE if self.power_idle else r.POWER_STANDBY
            self.complete()
        else:
            # NOP, PACKET, IDENTIFY PACKET DEVICE, DEVICE RESET and the rest: ABRT (8.x).
            self.log.debug("cmd", "ide disk: unsupported command 0x%02x", cmd)
            self.abort()

    def _flushed(self, result: Any) -> None:
        if isinstance(result, BlockError):
            self.abort()
        else:
            self.complete()

    def _init_params(self) -> None:
        """INITIALIZE DEVICE PARAMETERS (ATA-6 8.16): sectors per track from the count,
        heads from the device/head register plus one."""
        spt, heads = self.regs["nsector"], (self.select & 0x0F) + 1
        if spt == 0:
            self.abort()
            return
        self.cur_spt, self.cur_heads = spt, heads
        self.complete()

    def _set_features(self) -> None:
        sub = self.regs["feature"]
        if sub == r.SF_XFER_MODE:
            mode = self.regs["nsector"]
            kind, n = mode >> 3, mode & 7
            ok = (kind == 0 and n <= 1) or (kind == 1 and n <= 4)  # PIO default / mode n
            ok = ok or (kind == 4 and n <= 2) or (kind == 8 and n <= 5)  # MWDMA / UDMA
            if not ok:
                self.abort()
                return
            self.mode = mode
        elif sub in (r.SF_ENABLE_WCACHE, r.SF_DISABLE_WCACHE):
            self.wcache = sub == r.SF_ENABLE_WCACHE
        elif sub not in (r.SF_DISABLE_RLA, r.SF_ENABLE_RLA, r.SF_DISABLE_REVERT, 0xCC):
            self.abort()
            return
        self.complete()

    def _rw(self, xfer: str, ext: bool, multiple: bool, dma: bool) -> None:
        addr = self._address(ext)
        if addr is None or addr[0] + addr[1] > self.sectors:
            self.abort(r.IDNF | r.ABRT if addr is None else r.IDNF)
            return
        be = self.backend
        assert be is not None
        if (multiple and not self.mult) or (xfer == "write" and be.read_only):
            self.abort()
            return
        self.xfer = xfer
        self.lba, self.remaining = addr
        self.lba48 = ext
        self.block = self.mult if multiple else 1
        if dma:
            self.phase = DMA
            self.status = r.DRDY | r.DSC | r.DRQ  # ready for DMACK (QEMU shows DRQ too)
            bm = self.channel.bm if self.channel is not None else None
            if bm is not None:
                bm.kick()
        elif xfer == "write":
            self.start_pio_out(min(self.block, self.remaining) * SECTOR, irq=False)
        else:
            self._read_block()

    def _verify(self, ext: bool) -> None:
        addr = self._address(ext)
        if addr is None or addr[0] + addr[1] > self.sectors:
            self.abort(r.IDNF)
            return
        self.complete()

    def _read_block(self) -> None:
        be = self.backend
        assert be is not None
        n = min(self.block, self.remaining)
        off = self.lba * SECTOR
        self.submit(lambda: be.read(off, n * SECTOR), lambda res: self._block_read(n, res))

    def _block_read(self, n: int, result: Any) -> None:
        if isinstance(result, BlockError):
            self.abort(r.UNC)
            return
        self.lba += n
        self.remaining -= n
        self._set_address(self.lba, self.remaining)
        self.start_pio_in(result)

    def block_done(self) -> None:
        if self.xfer == "read" and self.phase == PIO_IN:
            if self.remaining:
                self._read_block()
            else:
                self.complete(irq=False)  # no interrupt after the last block (9.7)
        elif self.xfer == "write" and self.phase == PIO_OUT:
            be = self.backend
            assert be is not None
            data, off, n = bytes(self.buf), self.lba * SECTOR, len(self.buf) // SECTOR
            self.submit(lambda: be.write(off, data), lambda res: self._block_written(n, res))
        else:
            self.complete(irq=False)

    def _block_written(self, n: int, result: Any) -> None:
        if isinstance(result, BlockError):
            self.abort()
            return
        self.lba += n
        self.remaining -= n
        self._set_address(self.lba, self.remaining)
        if self.remaining:
            self.start_pio_out(min(self.block, self.remaining) * SECTOR, irq=True)
        else:
            self.complete()

    # -- DMA ---------------------------------------------------------------------------------
    def dma_step(self) -> None:
        bm = self.channel.bm if self.channel is not None else None
        be = self.backend
        assert bm is not None and be is not None
        n = min(self.remaining, DMA_CHUNK)
        off = self.lba * SECTOR
        if self.xfer == "read":
            self.submit(lambda: be.read(off, n * SECTOR), lambda res: self._dma_read(n, res))
            return
        try:
            data = bm.from_memory(n * SECTOR)
        except DmaFault:
            self._dma_fault()
            return
        if len(data) < n * SECTOR:
            self._dma_short()
            return
        self.submit(lambda: be.write(off, data), lambda res: self._dma_written(n, res))

    def _dma_read(self, n: int, result: Any) -> None:
        bm = self.channel.bm if self.channel is not None else None
        assert bm is not None
        if isinstance(result, BlockError):
            self.abort(r.UNC)
            return
        if not bm.active:
            self.status = r.DRDY | r.DSC | r.DRQ  # stopped meanwhile: wait for a restart
            return
        try:
            moved = bm.to_memory(result)
        except DmaFault:
            self._dma_fault()
            return
        if moved < len(result):
            self._dma_short()
            return
        self._dma_advance(n)
        bm.kick()

    def _dma_written(self, n: int, result: Any) -> None:
        if isinstance(result, BlockError):
            self.abort()
            return
        self._dma_advance(n)
        bm = self.channel.bm if self.channel is not None else None
        if bm is not None:
            bm.kick()

    def _dma_advance(self, n: int) -> None:
        self.lba += n
        self.remaining -= n
        self._set_address(self.lba, self.remaining)
        bm = self.channel.bm if self.channel is not None else None
        if self.remaining:
            self.status = r.DRDY | r.DSC | r.DRQ
            return
        if bm is not None:
            bm.transfer_done()
        self.complete()

    def _dma_short(self) -> None:
        """The PRD table ended before the transfer (SFF-8038i): the bus master stops, the
        device waits with its command unfinished and raises no interrupt (QEMU too)."""
        bm = self.channel.bm if self.channel is not None else None
        if bm is not None:
            bm.stop_short()
        self.phase = IDLE
        self.status = r.DRDY | r.DSC

    def _dma_fault(self) -> None:
        """Bus mastering off (a master abort): the bus master's error bit, ABRT."""
        bm = self.channel.bm if self.channel is not None else None
        if bm is not None:
            bm.fault()
        self.abort()

    # -- IDENTIFY ----------------------------------------------------------------------------
    def identify(self) -> bytes:
        w = [0] * 256
        w[0] = 0x0040  # fixed device, not removable
        w[1], w[3], w[6] = self.cyls, self.heads, self.spt
        w[47] = 0x8000 | MAX_MULT
        w[49] = (1 << 11) | (1 << 9) | (1 << 8)  # IORDY, LBA, DMA
        w[51] = w[52] = 0x0200
        w[53] = 0x0007  # words 54-58, 64-70 and 88 are valid
        cur = self.cur_cyls * self.cur_heads * self.cur_spt
        w[54], w[55], w[56] = self.cur_cyls, self.cur_heads, self.cur_spt
        w[57], w[58] = cur & 0xFFFF, cur >> 16
        if self.mult:
            w[59] = 0x0100 | self.mult
        lba28 = min(self.sectors, LBA28_MAX)
        w[60], w[61] = lba28 & 0xFFFF, lba28 >> 16
        w[62] = 0x0007
        kind, n = self.mode >> 3, self.mode & 7
        w[63] = 0x0007 | ((1 << n) << 8 if kind == 4 else 0)
        w[64] = 0x0003  # PIO modes 3 and 4
        w[65] = w[66] = w[67] = w[68] = 120
        w[80] = 0x00F0  # ATA/ATAPI-4 to -7
        w[81] = 0x0016
        w[82] = (1 << 14) | (1 << 5)  # NOP, write cache
        w[83] = (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10)  # FLUSH EXT, FLUSH, LBA48
        w[84] = 1 << 14
        w[85] = (1 << 14) | (int(self.wcache) << 5)
        w[86] = (1 << 13) | (1 << 12) | (1 << 10)
        w[87] = 1 << 14
        w[88] = 0x003F | ((1 << n) << 8 if kind == 8 else 0)
        w[93] = 1 | (1 << 14) | 0x2000  # device 0 passed, 80-conductor cable detected
        for i in range(4):
            w[100 + i] = self.sectors >> (16 * i) & 0xFFFF
        data = bytearray(struct.pack("<256H", *w))
        data[20:40] = ata_string(self.serial, 20)
        data[46:54] = ata_string(self.firmware, 8)
        data[54:94] = ata_string(self.model, 40)
        return bytes(data)

    # -- state -------------------------------------------------------------------------------
    def save_command(self) -> dict[str, Any]:
        return {
            "xfer": self.xfer,
            "lba": self.lba,
            "remaining": self.remaining,
            "block": self.block,
            "lba48": self.lba48,
            "mult": self.mult,
            "mode": self.mode,
            "wcache": self.wcache,
            "heads": self.cur_heads,
            "spt": self.cur_spt,
        }

    def check_command(self, state: dict[str, Any], phase: str, cmd: int) -> None:
        xfer = state.get("xfer")
        if xfer not in XFERS:
            raise StateError(f"ide disk: unknown transfer {brief(xfer)}")
        lba = get_int(state, "lba", 0, self.sectors)
        remaining = get_int(state, "remaining", 0, self.sectors - lba)
        get_int(state, "block", 1, MAX_MULT)
        get_bool(state, "lba48")
        mult = get_int(state, "mult", 0, MAX_MULT)
        if mult & (mult - 1):
            raise StateError("ide disk: multiple count is not a power of two")
        get_int(state, "mode", 0, 0xFF)
        get_bool(state, "wcache")
        get_int(state, "heads", 1, 16)
        get_int(state, "spt", 1, 255)
        if phase == DMA and (xfer not in ("read", "write") or not remaining):
            raise StateError("ide disk: DMA phase without a transfer")
        if phase == PIO_OUT and xfer != "write":
            raise StateError("ide disk: data-out phase outside a write")

    def load_command(self, state: dict[str, Any]) -> None:
        self.xfer = state["xfer"]
        self.lba, self.remaining, self.block = state["lba"], state["remaining"], state["block"]
        self.lba48 = state["lba48"]
        self.mult, self.mode, self.wcache = state["mult"], state["mode"], state["wcache"]
        self.cur_heads, self.cur_spt = state["heads"], state["spt"]


def default_geometry(sectors: int) -> tuple[int, int, int]:
    """16 heads, 63 sectors per track, cylinders to the capacity (at most 16383), as QEMU's
    and every BIOS's translation for disks over 504 MiB expects; small disks get fewer
    heads (hd_geometry_guess's rule of thumb is not needed here)."""
    heads, spt = 16, 63
    return max(1, min(sectors // (heads * spt), CHS_MAX_CYLS)), heads, spt


# command -> (transfer, 48-bit, multiple, DMA)
_RW: dict[int, tuple[str, bool, bool, bool]] = {
    r.CMD_READ_SECTORS: ("read", False, False, False),
    r.CMD_READ_SECTORS_NORETRY: ("read", False, False, False),
    r.CMD_READ_SECTORS_EXT: ("read", True, False, False),
    r.CMD_WRITE_SECTORS: ("write", False, False, False),
    r.CMD_WRITE_SECTORS_NORETRY: ("write", False, False, False),
    r.CMD_WRITE_SECTORS_EXT: ("write", True, False, False),
    r.CMD_READ_MULTIPLE: ("read", False, True, False),
    r.CMD_READ_MULTIPLE_EXT: ("read", True, True, False),
    r.CMD_WRITE_MULTIPLE: ("write", False, True, False),
    r.CMD_WRITE_MULTIPLE_EXT: ("write", True, True, False),
    r.CMD_READ_DMA: ("read", False, False, True),
    r.CMD_READ_DMA_NORETRY: ("read", False, False, True),
    r.CMD_READ_DMA_EXT: ("read", True, False, True),
    r.CMD_WRITE_DMA: ("write", False, False, True),
    r.CMD_WRITE_DMA_NORETRY: ("write", False, False, True),
    r.CMD_WRITE_DMA_EXT: ("write", True, False, True),
}

# power-mode commands -> idle (True) or standby (False) afterwards
_POWER = {
    r.CMD_IDLE: True,
    r.CMD_IDLE_IMMEDIATE: True,
    r.CMD_IDLE_OLD: True,
    r.CMD_IDLE_IMMEDIATE_OLD: True,
    r.CMD_STANDBY: False,
    r.CMD_STANDBY_IMMEDIATE: False,
    r.CMD_STANDBY_OLD: False,
    r.CMD_STANDBY_IMMEDIATE_OLD: False,
    r.CMD_SLEEP: False,
    r.CMD_SLEEP_OLD: False,
}
