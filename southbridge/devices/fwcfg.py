"""QEMU's firmware configuration device (fw_cfg), x86 I/O flavour.

The guest-side interface is QEMU's docs/specs/fw_cfg.rst: a 16-bit selector at 0x510, an
8-bit data port at 0x511 whose reads walk the selected item byte by byte (zeroes past its
end), and the DMA address register at 0x514-0x51B (big-endian; a write of the low half starts
an operation described by an FWCfgDmaAccess structure in guest RAM). Items are byte strings
under 16-bit keys; "files" get keys from 0x0020 up, in name order, and are listed in the
directory item 0x0019. Like QEMU since v2.4, writes through the data port are ignored;
only DMA can write, and only items added as writable.

SeaBIOS, OVMF, kvm-unit-tests and Linux's qemu_fw_cfg driver find the signature and
read what the machine put here (RAM size, CPU count, files).
"""

from __future__ import annotations

import logging
import struct
from typing import Any, ClassVar

from southbridge.core.device import BusDevice
from southbridge.core.memory import GuestMemory, RamRegion
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.state import StateError, check_header, get_int, header

SELECTOR_PORT = 0x510
DATA_PORT = 0x511
DMA_PORT = 0x514

# Keys (QEMU include/standard-headers/linux/qemu_fw_cfg.h)
SIGNATURE = 0x0000
ID = 0x0001
UUID = 0x0002
RAM_SIZE = 0x0003
NOGRAPHIC = 0x0004
NB_CPUS = 0x0005
BOOT_MENU = 0x000E
MAX_CPUS = 0x000F
# A kernel for the firmware's loader (QEMU's x86_load_linux; linuxboot_dma.bin reads them).
KERNEL_ADDR = 0x0007
KERNEL_SIZE = 0x0008
KERNEL_CMDLINE = 0x0009
INITRD_ADDR = 0x000A
INITRD_SIZE = 0x000B
KERNEL_ENTRY = 0x0010
KERNEL_DATA = 0x0011
INITRD_DATA = 0x0012
CMDLINE_ADDR = 0x0013
CMDLINE_SIZE = 0x0014
CMDLINE_DATA = 0x0015
SETUP_ADDR = 0x0016
SETUP_SIZE = 0x0017
SETUP_DATA = 0x0018
FILE_DIR = 0x0019
FILE_FIRST = 0x0020

WRITE_CHANNEL = 0x4000
ARCH_LOCAL = 0x8000
ENTRY_MASK = 0x3FFF
INVALID = 0xFFFF

ID_TRADITIONAL = 0x01
ID_DMA = 0x02

DMA_SIGNATURE = b"QEMU CFG"  # reads of the DMA register, in memory order
DMA_CTL_ERROR = 0x01
DMA_CTL_READ = 0x02
DMA_CTL_SKIP = 0x04
DMA_CTL_SELECT = 0x08
DMA_CTL_WRITE = 0x10

FILE_NAME_MAX = 56  # including the terminating NUL
DEFAULT_FILE_SLOTS = 0x20  # QEMU's FW_CFG_FILE_SLOTS_DFLT
_ZERO_CHUNK = 1 << 20

_log = RateLimitedLog(logging.getLogger("southbridge.fwcfg"))


class _Item:
    __slots__ = ("data", "writable")

    def __init__(self, data: bytes, writable: bool = False) -> None:
        self.data = bytearray(data)
        self.writable = writable


class FwCfg:
    """The item store and the selector/data/DMA state; `io` and `dma` are bus devices."""

    STATE_KIND: ClassVar[str] = "fw_cfg"
    STATE_VERSION: ClassVar[int] = 1

    def __init__(
        self,
        memory: GuestMemory | None = None,
        dma: bool = True,
        file_slots: int = DEFAULT_FILE_SLOTS,
    ) -> None:
        if not 0 < file_slots <= ENTRY_MASK + 1 - FILE_FIRST:
            raise ValueError(f"fw_cfg: {file_slots} file slots do not fit the key space")
        self.memory = memory
        self.file_slots = file_slots
        self._items: dict[int, _Item] = {}  # by key without the write-channel bit
        self._files: list[tuple[bytes, _Item]] = []  # sorted by name; key FILE_FIRST + index
        self.io = FwCfgIo(self)
        self.dma: FwCfgDma | None = FwCfgDma(self) if dma and memory is not None else None
        self.add_bytes(SIGNATURE, b"QEMU")
        self.add_i32(ID, ID_TRADITIONAL | (ID_DMA if self.dma is not None else 0))
        self._items[FILE_DIR] = _Item(b"\0\0\0\0")
        self.cur_key = SIGNATURE
        self.cur_offset = 0
        self.dma_addr = 0
        self.reset()

    # -- the host side: filling in items ---------------------------------------------------
    @property
    def max_entry(self) -> int:
        """Exclusive limit of an item index (QEMU fw_cfg_max_entry)."""
        return FILE_FIRST + self.file_slots

    def add_bytes(self, key: int, data: bytes) -> None:
        """A read-only item under `key` (below 0x20, or any arch-local index)."""
        index = key & ENTRY_MASK
        if key & WRITE_CHANNEL or not 0 <= key <= 0xFFFF or index >= self.max_entry:
            raise ValueError(f"fw_cfg: key 0x{key:x} is out of range")
        if not key & ARCH_LOCAL and index >= FILE_FIRST:
            raise ValueError(f"fw_cfg: key 0x{key:x} is in the file range: use add_file")
        if key in self._items:
            raise ValueError(f"fw_cfg: key 0x{key:x} already has an item")
        self._items[key] = _Item(data)

    def add_i16(self, key: int, value: int) -> None:
        self.add_bytes(key, struct.pack("<H", value))

    def add_i32(self, key: int, value: int) -> None:
        self.add_bytes(key, struct.pack("<I", value))

    def add_i64(self, key: int, value: int) -> None:
        self.add_bytes(key, struct.pack("<Q", value))

    def add_file(self, name: str, data: bytes, writable: bool = False) -> int:
        """Add a named item and return its key.

        The directory is kept sorted by name with keys FILE_FIRST + position, as QEMU does,
        so a later file that sorts earlier moves this one up a key: add every file before
        the guest runs, and use `file_key` for the final key.
        """
        raw = name.encode()
        if not raw or b"\0" in raw or len(raw) >= FILE_NAME_MAX:
            raise ValueError(f"fw_cfg: bad file name {name!r}")
        if any(n == raw for n, _ in self._files):
            raise ValueError(f"fw_cfg: duplicate file {name!r}")
        if len(self._files) >= self.file_slots:
            raise ValueError(f"fw_cfg: no free file slot for {name!r}")
        if len(data) >= 1 << 32:
            raise ValueError(f"fw_cfg: file {name!r} is too big")
        pos = 0
        while pos < len(self._files) and self._files[pos][0] < raw:
            pos += 1
        self._files.insert(pos, (raw, _Item(data, writable)))
        self._rebuild_dir()
        return FILE_FIRST + pos

    def set_file(self, name: str, data: bytes) -> int:
        """Replace the contents of file `name` (read-only), adding it when it is new."""
        raw = name.encode()
        for i, (n, _) in enumerate(self._files):
            if n == raw:
                if len(data) >= 1 << 32:
                    raise ValueError(f"fw_cfg: file {name!r} is too big")
                self._files[i] = (raw, _Item(data))
                self._rebuild_dir()
                return FILE_FIRST + i
        return self.add_file(name, data)

    def file_key(self, name: str) -> int | None:
        raw = name.encode()
        for i, (n, _) in enumerate(self._files):
            if n == raw:
                return FILE_FIRST + i
        return None

    def item(self, key: int) -> bytes | None:
        """The current contents under `key` (the write-channel bit ignored)."""
        it = self._lookup(key)
        return None if it is None else bytes(it.data)

    def _rebuild_dir(self) -> None:
        out = bytearray(struct.pack(">I", len(self._files)))
        for i, (raw, it) in enumerate(self._files):
            out += struct.pack(">IHH56s", len(it.data), FILE_FIRST + i, 0, raw)
        self._items[FILE_DIR].data = out

    def _lookup(self, key: int) -> _Item | None:
        if key == INVALID:
            return None
        index = key & ENTRY_MASK
        if not key & ARCH_LOCAL and FILE_FIRST <= index < FILE_FIRST + len(self._files):
            return self._files[index - FILE_FIRST][1]
        return self._items.get(key & ~WRITE_CHANNEL)

    # -- the guest side --------------------------------------------------------------------
    def reset(self) -> None:
        self.select(SIGNATURE)
        self.dma_addr = 0

    def select(self, key: int) -> None:
        """Selector write: pick an item (or nothing, past the key space) at offset 0."""
        key &= 0xFFFF
        self.cur_offset = 0
        self.cur_key = key if (key & ENTRY_MASK) < self.max_entry else INVALID

    def read_byte(self) -> int:
        it = self._lookup(self.cur_key)
        if it is None or self.cur_offset >= len(it.data):
            return 0
        b = it.data[self.cur_offset]
        self.cur_offset += 1
        return b

    def dma_write_half(self, offset: int, value: int) -> None:
        """A 32-bit big-endian write to the DMA address register's high (0) or low (4) half."""
        if offset == 0:
            self.dma_addr = (value & 0xFFFFFFFF) << 32
        else:
            self.dma_addr |= value & 0xFFFFFFFF
            self._dma_transfer()

    def _dma_transfer(self) -> None:
        """Run one FWCfgDmaAccess (QEMU fw_cfg_dma_transfer): control, length, address."""
        desc_addr, self.dma_addr = self.dma_addr, 0
        desc = self._ram_read(desc_addr, 16)
        if desc is None:
            _log.warning("dma-desc", "fw_cfg: DMA descriptor at 0x%x is not in RAM", desc_addr)
            self._ram_write(desc_addr, struct.pack(">I", DMA_CTL_ERROR))
            return
        control, length, address = struct.unpack(">IIQ", desc)
        # Bounds (issue 15): `length` is the descriptor's u32 (< 4 GiB); each step moves at
        # most the rest of the item (items < 4 GiB, add_file) or, past its end, checks the
        # whole span against RAM before zeroing it in _ZERO_CHUNK pieces, so nothing is
        # allocated beyond an item's own size and the loop runs at most twice.
        if control & DMA_CTL_SELECT:
            self.select(control >> 16)
        it = self._lookup(self.cur_key)
        op = 0
        if control & DMA_CTL_READ:
            op = DMA_CTL_READ
        elif control & DMA_CTL_WRITE:
            op = DMA_CTL_WRITE
        elif control & DMA_CTL_SKIP:
            op = DMA_CTL_SKIP
        else:
            length = 0
        error = False
        while length > 0 and not error:
            if it is None or self.cur_offset >= len(it.data):
                n = length
                if op == DMA_CTL_READ:
                    error = not self._ram_zero(address, n)
                elif op == DMA_CTL_WRITE:
                    error = True
            else:
                n = min(length, len(it.data) - self.cur_offset)
                if op == DMA_CTL_READ:
                    chunk = bytes(it.data[self.cur_offset : self.cur_offset + n])
                    error = not self._ram_write(address, chunk)
                elif op == DMA_CTL_WRITE:
                    # Items cannot grow, truncated writes are dropped whole (fw_cfg.rst).
                    src = self._ram_read(address, n) if it.writable and n == length else None
                    if src is None:
                        error = True
                    else:
                        it.data[self.cur_offset : self.cur_offset + n] = src
                self.cur_offset += n
            address = (address + n) & 0xFFFFFFFFFFFFFFFF
            length -= n
        self._ram_write(desc_addr, struct.pack(">I", DMA_CTL_ERROR if error else 0))

    # DMA reaches guest RAM only: a transfer touching anything else fails with the error
    # bit, as QEMU's does for unassigned memory, and costs at most one pass over RAM.
    def _ram_spans(self, gpa: int, length: int) -> list[tuple[RamRegion, int, int]] | None:
        spans: list[tuple[RamRegion, int, int]] = []
        mem = self.memory
        while length > 0:
            r = mem.find(gpa) if mem is not None else None
            if r is None:
                return None
            n = min(length, r.end - gpa)
            spans.append((r, gpa - r.gpa, n))
            gpa += n
            length -= n
        return spans

    def _ram_read(self, gpa: int, length: int) -> bytes | None:
        spans = self._ram_spans(gpa, length)
        if spans is None:
            return None
        return b"".join(bytes(r.buf[off : off + n]) for r, off, n in spans)

    def _ram_write(self, gpa: int, data: bytes) -> bool:
        spans = self._ram_spans(gpa, len(data))
        if spans is None:
            return False
        pos = 0
        for r, off, n in spans:
            if not r.readonly:  # ROM ignores writes, like the CPU's
                r.buf[off : off + n] = data[pos : pos + n]
            pos += n
        return True

    def _ram_zero(self, gpa: int, length: int) -> bool:
        spans = self._ram_spans(gpa, length)
        if spans is None:
            return False
        for r, off, n in spans:
            if r.readonly:
                continue
            while n > 0:
                k = min(n, _ZERO_CHUNK)
                r.buf[off : off + k] = bytes(k)
                off += k
                n -= k
        return True

    # -- save / restore --------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        # Items are host configuration, rebuilt by the machine like QEMU's; only the guest's
        # position is state.
        return header(self) | {
            "key": self.cur_key,
            "offset": self.cur_offset,
            "dma_addr": self.dma_addr,
        }

    def restore(self, state: dict[str, Any]) -> None:
        state = check_header(state, self)
        key = get_int(state, "key", 0, 0xFFFF)
        offset = get_int(state, "offset", 0, 0xFFFFFFFF)
        dma_addr = get_int(state, "dma_addr", 0, (1 << 64) - 1)
        if key != INVALID and (key & ENTRY_MASK) >= self.max_entry:
            raise StateError(f"fw_cfg: key 0x{key:x} cannot be selected")
        it = self._lookup(key)
        if offset > (0 if it is None else len(it.data)):
            raise StateError(f"fw_cfg: offset {offset} is past the end of item 0x{key:x}")
        if dma_addr & 0xFFFFFFFF:
            raise StateError("fw_cfg: a DMA address with its low half set has already run")
        if dma_addr and self.dma is None:
            raise StateError("fw_cfg: DMA state for a device without DMA")
        self.cur_key, self.cur_offset, self.dma_addr = key, offset, dma_addr


class FwCfgIo(BusDevice):
    """Ports 0x510-0x511 (QEMU's "fwcfg" combined region): a 16-bit write at 0x510 selects;
    byte reads at either port read data; byte writes are ignored (QEMU v2.4+); other
    accesses are not decoded (QEMU rejects them: reads give 0, writes vanish)."""

    io_sizes = frozenset({1, 2})
    name = "fw_cfg"

    def __init__(self, fw: FwCfg) -> None:
        self.fw = fw

    def read(self, offset: int, size: int) -> int:
        return self.fw.read_byte() if size == 1 else 0

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 2 and offset == 0:
            self.fw.select(value)


class FwCfgDma(BusDevice):
    """Ports 0x514-0x51B: the big-endian DMA address register. Reads give "QEMU CFG"; 32-bit
    writes at offset 0 (high half) and 4 (low half, starts the operation) are decoded; QEMU
    rejects other writes."""

    io_sizes = frozenset({1, 2, 4})
    name = "fw_cfg-dma"

    def __init__(self, fw: FwCfg) -> None:
        self.fw = fw

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(DMA_SIGNATURE[offset : offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 4 and offset in (0, 4):
            self.fw.dma_write_half(offset, int.from_bytes(value.to_bytes(4, "little"), "big"))
