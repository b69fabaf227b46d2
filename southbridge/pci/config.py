"""A PCI function's configuration space: bytes plus per-byte write masks.

Every byte carries a writable mask (bits the guest may set or clear) and a write-1-to-clear
mask (bits the guest clears by writing 1), as QEMU's `wmask`/`w1cmask` and crosvm's
`writable_bits`. Applying the masks per byte makes read-only and RW1C bits behave like
hardware at any access size and offset, and one model serves emulated functions and assigned
host functions (whose filter decides which bytes are virtual, see `PciFunction`).

A third mask marks "device-owned" bits: read-only to the guest but changed by the device
itself (interrupt status, MSI pending bits). Restoring a saved state may change writable,
RW1C and device-owned bits only; anything else would be a different device.
"""

from __future__ import annotations

from southbridge.core.device import ones

# Standard header offsets (PCI Local Bus 3.0, section 6.1).
VENDOR_ID = 0x00
DEVICE_ID = 0x02
COMMAND = 0x04
STATUS = 0x06
REVISION = 0x08
PROG_IF = 0x09
SUBCLASS = 0x0A
CLASS = 0x0B
CACHE_LINE = 0x0C
LATENCY = 0x0D
HEADER_TYPE = 0x0E
BIST = 0x0F
BAR0 = 0x10
SUBSYS_VENDOR = 0x2C
SUBSYS_ID = 0x2E
ROM_BAR = 0x30
CAP_PTR = 0x34
ROM_BAR_BRIDGE = 0x38
INT_LINE = 0x3C
INT_PIN = 0x3D
MIN_GNT = 0x3E
MAX_LAT = 0x3F

# Command register bits.
CMD_IO = 1 << 0
CMD_MEMORY = 1 << 1
CMD_MASTER = 1 << 2
CMD_SPECIAL = 1 << 3
CMD_INVALIDATE = 1 << 4
CMD_VGA_SNOOP = 1 << 5
CMD_PARITY = 1 << 6
CMD_SERR = 1 << 8
CMD_FAST_BACK = 1 << 9
CMD_INTX_DISABLE = 1 << 10

# Status register bits.
STS_INTERRUPT = 1 << 3
STS_CAP_LIST = 1 << 4
STS_66MHZ = 1 << 5
STS_FAST_BACK = 1 << 7
STS_MASTER_PARITY = 1 << 8
STS_DEVSEL_MEDIUM = 1 << 9
STS_SIG_TARGET_ABORT = 1 << 11
STS_RCV_TARGET_ABORT = 1 << 12
STS_RCV_MASTER_ABORT = 1 << 13
STS_SIG_SYSTEM_ERROR = 1 << 14
STS_DETECTED_PARITY = 1 << 15
# The error bits software clears by writing 1 (PCI 3.0, 6.2.3).
STS_RW1C = (
    STS_MASTER_PARITY
    | STS_SIG_TARGET_ABORT
    | STS_RCV_TARGET_ABORT
    | STS_RCV_MASTER_ABORT
    | STS_SIG_SYSTEM_ERROR
    | STS_DETECTED_PARITY
)

HEADER_MULTIFUNCTION = 0x80

PCI_CONFIG_SIZE = 256
PCIE_CONFIG_SIZE = 4096


class ConfigSpace:
    """256 or 4096 bytes with writable, write-1-to-clear and device-owned masks per byte."""

    __slots__ = ("data", "dyn", "size", "w1c", "wmask")

    def __init__(self, size: int = PCI_CONFIG_SIZE) -> None:
        if size not in (PCI_CONFIG_SIZE, PCIE_CONFIG_SIZE):
            raise ValueError(f"config space size must be 256 or 4096, not {size}")
        self.size = size
        self.data = bytearray(size)
        self.wmask = bytearray(size)
        self.w1c = bytearray(size)
        self.dyn = bytearray(size)

    # -- guest view ----------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        """Little-endian read; bytes beyond the space read as all-ones (an absent register)."""
        value = 0
        for i in range(size):
            o = offset + i
            b = self.data[o] if 0 <= o < self.size else 0xFF
            value |= b << (8 * i)
        return value

    def write(self, offset: int, size: int, value: int) -> int:
        """Apply a guest write through the masks; returns a bitmap of the bytes that changed
        (bit i = byte offset+i), so callers act only on registers that really moved."""
        changed = 0
        data, wmask, w1c = self.data, self.wmask, self.w1c
        for i in range(size):
            o = offset + i
            if not 0 <= o < self.size:
                continue
            v = (value >> (8 * i)) & 0xFF
            old = data[o]
            new = ((old & ~wmask[o]) | (v & wmask[o])) & ~(v & w1c[o]) & 0xFF
            if new != old:
                data[o] = new
                changed |= 1 << i
        return changed

    # -- device / model view (no masks) --------------------------------------------------
    def get(self, offset: int, size: int) -> int:
        return int.from_bytes(self.data[offset : offset + size], "little")

    def set(self, offset: int, size: int, value: int) -> None:
        self.data[offset : offset + size] = (value & ones(size)).to_bytes(size, "little")

    def set_wmask(self, offset: int, size: int, mask: int) -> None:
        self.wmask[offset : offset + size] = (mask & ones(size)).to_bytes(size, "little")

    def set_w1c(self, offset: int, size: int, mask: int) -> None:
        self.w1c[offset : offset + size] = (mask & ones(size)).to_bytes(size, "little")

    def set_dyn(self, offset: int, size: int, mask: int) -> None:
        self.dyn[offset : offset + size] = (mask & ones(size)).to_bytes(size, "little")

    def set_bits(self, offset: int, size: int, bits: int, on: bool) -> None:
        """Device-side update of some bits (e.g. status.interrupt), masks ignored."""
        v = self.get(offset, size)
        self.set(offset, size, (v | bits) if on else (v & ~bits))

    def mutable_mask(self, offset: int) -> int:
        """Bits of byte `offset` that may legitimately differ between two saved states."""
        return self.wmask[offset] | self.w1c[offset] | self.dyn[offset]

    def check_same_device(self, other: bytes) -> int | None:
        """The first offset where `other` differs from us in a bit that cannot change at run
        time (IDs, read-only fields, capability links), or None if `other` is plausible."""
        if len(other) != self.size:
            return -1
        for o in range(self.size):
            if (other[o] ^ self.data[o]) & ~self.mutable_mask(o) & 0xFF:
                return o
        return None
