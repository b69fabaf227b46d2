"""PCI capabilities: the linked list and the standard structures.

Conventional capabilities live in 0x40-0xFF, linked from the capability pointer (0x34) with
byte-wide next pointers; extended capabilities (PCI Express) start at 0x100 with a 32-bit
header (ID, version, 12-bit next). Every capability here is a set of registers with masks in
the function's `ConfigSpace`, plus the behaviour that cannot be expressed as masks: MSI's
vector count clamp and masking, MSI-X's table and pending bits, the PM state machine.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from southbridge.core.device import BusDevice
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.state import StateError, get_hex
from southbridge.pci.config import CAP_PTR, STATUS, STS_CAP_LIST, ConfigSpace

if TYPE_CHECKING:
    from southbridge.pci.function import PciFunction

logger = logging.getLogger("southbridge.pci")

CAP_PM = 0x01
CAP_MSI = 0x05
CAP_PCIE = 0x10
CAP_MSIX = 0x11
EXT_DSN = 0x0003

CONFIG_CAP_START = 0x40
EXT_CAP_START = 0x100


def _overlap(a: int, alen: int, b: int, blen: int) -> bool:
    return a < b + blen and b < a + alen


class Capability:
    """A structure in config space; `offset` is set when the function installs it."""

    cap_id = 0
    extended = False
    version = 1  # extended capabilities only

    def __init__(self) -> None:
        self.offset = 0
        self.fn: PciFunction | None = None

    @property
    def length(self) -> int:
        raise NotImplementedError

    def install(self, cs: ConfigSpace) -> None:
        """Write the registers (after the header) and their masks."""

    def covers(self, offset: int, size: int) -> bool:
        return _overlap(offset, size, self.offset, self.length)

    def filter_write(self, offset: int, size: int, value: int) -> int:
        """Adjust a guest write before the masks apply (values the hardware refuses)."""
        return value

    def after_write(self, offset: int, size: int) -> None:
        """React to a config write that changed bytes of this capability."""

    def reset(self) -> None:
        """Reset state kept outside config space."""

    def save(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        return None


def walk_capabilities(cs: ConfigSpace) -> list[tuple[int, int]]:
    """(offset, id) of the conventional capabilities in list order; raises ValueError on a
    broken chain (pointer into the header, unaligned, out of range, or a loop)."""
    out: list[tuple[int, int]] = []
    if not cs.get(STATUS, 2) & STS_CAP_LIST:
        return out
    seen: set[int] = set()
    ptr = cs.get(CAP_PTR, 1)
    while ptr:
        if ptr < CONFIG_CAP_START or ptr & 3 or ptr > 0xFC or ptr in seen:
            raise ValueError(f"broken capability chain at 0x{ptr:x}")
        seen.add(ptr)
        out.append((ptr, cs.get(ptr, 1)))
        ptr = cs.get(ptr + 1, 1)
    return out


def walk_extended(cs: ConfigSpace) -> list[tuple[int, int]]:
    """(offset, id) of the extended capabilities; ValueError on a broken chain."""
    out: list[tuple[int, int]] = []
    if cs.size <= EXT_CAP_START:
        return out
    seen: set[int] = set()
    ptr = EXT_CAP_START
    while ptr:
        if ptr < EXT_CAP_START or ptr & 3 or ptr > cs.size - 4 or ptr in seen:
            raise ValueError(f"broken extended capability chain at 0x{ptr:x}")
        seen.add(ptr)
        header = cs.get(ptr, 4)
        if header == 0 and ptr == EXT_CAP_START:
            return out  # no extended capabilities
        out.append((ptr, header & 0xFFFF))
        ptr = header >> 20
    return out


# -- power management (PCI Bus Power Management Interface 1.2) ------------------------------
class PmCapability(Capability):
    """PMC and PMCSR. D0 and D3hot are always supported; D1/D2 optionally. A write of an
    unsupported state completes but leaves the state unchanged (PM 1.2, 5.4.2)."""

    cap_id = CAP_PM

    def __init__(self, d1: bool = False, d2: bool = False, pme_from: int = 0) -> None:
        super().__init__()
        self.d1, self.d2 = d1, d2
        self.pme_from = pme_from & 0x1F  # PME support bitmap, D0..D3cold

    @property
    def length(self) -> int:
        return 8

    def install(self, cs: ConfigSpace) -> None:
        o = self.offset
        pmc = 0x3 | (self.d1 << 9) | (self.d2 << 10) | (self.pme_from << 11)
        cs.set(o + 2, 2, pmc)
        cs.set(o + 4, 2, 1 << 3)  # No_Soft_Reset: D3hot->D0 keeps the configuration
        cs.set_wmask(o + 4, 2, 0x3 | (0x100 if self.pme_from else 0))
        cs.set_w1c(o + 4, 2, 0x8000 if self.pme_from else 0)
        cs.set_dyn(o + 4, 2, 0x8000 if self.pme_from else 0)

    def supported(self, state: int) -> bool:
        return state in (0, 3) or (state == 1 and self.d1) or (state == 2 and self.d2)

    def filter_write(self, offset: int, size: int, value: int) -> int:
        pos = self.offset + 4 - offset
        if not 0 <= pos < size or self.fn is None:
            return value
        want = (value >> (8 * pos)) & 0x3
        if self.supported(want):
            return value
        cur = self.fn.config.get(self.offset + 4, 1) & 0x3
        return (value & ~(0x3 << (8 * pos))) | (cur << (8 * pos))

    @property
    def power_state(self) -> int:
        assert self.fn is not None
        return self.fn.config.get(self.offset + 4, 1) & 0x3


# -- MSI (PCI 3.0, 6.8.1) -------------------------------------------------------------------
class MsiCapability(Capability):
    """MSI with 1-32 vectors, 32- or 64-bit address, optional per-vector masking."""

    cap_id = CAP_MSI

    def __init__(self, vectors: int = 1, addr64: bool = True, per_vector_mask: bool = True) -> None:
        super().__init__()
        if vectors not in (1, 2, 4, 8, 16, 32):
            raise ValueError("MSI vector count must be a power of two from 1 to 32")
        self.vectors = vectors
        self.addr64 = addr64
        self.per_vector_mask = per_vector_mask
        self.log = RateLimitedLog(logger)

    @property
    def length(self) -> int:
        base = 0x0E if self.addr64 else 0x0A
        return base + 10 if self.per_vector_mask else base

    @property
    def data_off(self) -> int:
        return self.offset + (0x0C if self.addr64 else 0x08)

    @property
    def mask_off(self) -> int:
        return self.data_off + 4

    @property
    def pending_off(self) -> int:
        return self.data_off + 8

    def install(self, cs: ConfigSpace) -> None:
        o = self.offset
        mmc = self.vectors.bit_length() - 1
        cs.set(o + 2, 2, (mmc << 1) | (self.addr64 << 7) | (self.per_vector_mask << 8))
        cs.set_wmask(o + 2, 2, 0x0071)  # enable, multiple message enable
        cs.set_wmask(o + 4, 4, 0xFFFFFFFC)  # DWORD-aligned address
        if self.addr64:
            cs.set_wmask(o + 8, 4, 0xFFFFFFFF)
        cs.set_wmask(self.data_off, 2, 0xFFFF)
        if self.per_vector_mask:
            all_vec = (1 << self.vectors) - 1
            cs.set_wmask(self.mask_off, 4, all_vec)
            cs.set_dyn(self.pending_off, 4, all_vec)

    def _control(self) -> int:
        assert self.fn is not None
        return self.fn.config.get(self.offset + 2, 2)

    def filter_write(self, offset: int, size: int, value: int) -> int:
        # A Multiple Message Enable above the capable count is clamped, as QEMU does.
        pos = self.offset + 2 - offset
        if not 0 <= pos < size:
            return value
        mme = (value >> (8 * pos + 4)) & 0x7
        mmc = self.vectors.bit_length() - 1
        if mme > mmc:
            value = (value & ~(0x7 << (8 * pos + 4))) | (mmc << (8 * pos + 4))
        return value

    @property
    def enabled(self) -> bool:
        return bool(self._control() & 1)

    @property
    def enabled_vectors(self) -> int:
        return 1 << ((self._control() >> 4) & 0x7)

    def message(self, vector: int) -> tuple[int, int]:
        assert self.fn is not None
        cs = self.fn.config
        addr = cs.get(self.offset + 4, 4)
        if self.addr64:
            addr |= cs.get(self.offset + 8, 4) << 32
        data = cs.get(self.data_off, 2)
        count = self.enabled_vectors
        return addr, (data & ~(count - 1)) | (vector & (count - 1))

    def masked(self, vector: int) -> bool:
        assert self.fn is not None
        return self.per_vector_mask and bool(self.fn.config.get(self.mask_off, 4) >> vector & 1)

    def notify(self, vector: int = 0) -> bool:
        """Signal `vector`; returns whether a message was sent (masked ones go pending)."""
        fn = self.fn
        if fn is None or not self.enabled or not 0 <= vector < self.enabled_vectors:
            return False
        if self.masked(vector):
            fn.config.set_bits(self.pending_off, 4, 1 << vector, True)
            return False
        return fn.send_msi(*self.message(vector))

    def after_write(self, offset: int, size: int) -> None:
        if not self.per_vector_mask or self.fn is None or not self.enabled:
            return
        if not _overlap(offset, size, self.mask_off, 4):
            return
        cs = self.fn.config
        due = cs.get(self.pending_off, 4) & ~cs.get(self.mask_off, 4)
        for v in range(self.enabled_vectors):
            if due >> v & 1:
                cs.set_bits(self.pending_off, 4, 1 << v, False)
                self.fn.send_msi(*self.message(v))


# -- MSI-X (PCI 3.0, 6.8.2) -----------------------------------------------------------------
MSIX_ENTRY = 16
MSIX_CTRL_MASKALL = 1 << 14
MSIX_CTRL_ENABLE = 1 << 15


class MsixCapability(Capability):
    """MSI-X: the capability registers plus the table and PBA, which live in a BAR.

    The table is indexed by guest-provided offsets: every index is checked against the
    vector count before use (XSA-164), so no offset reaches beyond the table.
    """

    cap_id = CAP_MSIX

    def __init__(
        self, vectors: int, bar: int, table_offset: int = 0, pba_offset: int = 0x800
    ) -> None:
        super().__init__()
        if not 1 <= vectors <= 2048:
            raise ValueError("MSI-X supports 1 to 2048 vectors")
        if table_offset & 7 or pba_offset & 7 or not 0 <= bar <= 5:
            raise ValueError("MSI-X table and PBA must be QWORD-aligned in BAR 0-5")
        self.vectors = vectors
        self.bar = bar
        self.table_offset = table_offset
        self.pba_offset = pba_offset
        self.table = bytearray(vectors * MSIX_ENTRY)
        self.pba = bytearray(((vectors + 63) // 64) * 8)
        self.reset()
        self.log = RateLimitedLog(logger)

    def reset(self) -> None:
        self.table[:] = bytes(len(self.table))
        for v in range(self.vectors):
            self.table[v * MSIX_ENTRY + 12] = 1  # vectors start masked (6.8.2.9)
        self.pba[:] = bytes(len(self.pba))

    @property
    def length(self) -> int:
        return 12

    @property
    def table_size(self) -> int:
        return len(self.table)

    @property
    def pba_size(self) -> int:
        return len(self.pba)

    def install(self, cs: ConfigSpace) -> None:
        o = self.offset
        cs.set(o + 2, 2, self.vectors - 1)
        cs.set_wmask(o + 2, 2, MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL)
        cs.set(o + 4, 4, self.table_offset | self.bar)
        cs.set(o + 8, 4, self.pba_offset | self.bar)

    def _control(self) -> int:
        assert self.fn is not None
        return self.fn.config.get(self.offset + 2, 2)

    @property
    def enabled(self) -> bool:
        return bool(self._control() & MSIX_CTRL_ENABLE)

    @property
    def function_masked(self) -> bool:
        return bool(self._control() & MSIX_CTRL_MASKALL)

    # Bounds: `vector` < self.vectors (<= 2048) in entry_masked, message, pending and
    # _set_pending: `notify` checks a device's vector before them, the rest loop below
    # it; guest table and PBA offsets are checked against their sizes in table_*/pba_read.
    def entry_masked(self, vector: int) -> bool:
        return bool(self.table[vector * MSIX_ENTRY + 12] & 1)

    def message(self, vector: int) -> tuple[int, int]:
        e = vector * MSIX_ENTRY
        addr = int.from_bytes(self.table[e : e + 8], "little")
        data = int.from_bytes(self.table[e + 8 : e + 12], "little")
        return addr, data

    def pending(self, vector: int) -> bool:
        return bool(self.pba[vector // 8] >> (vector % 8) & 1)

    def _set_pending(self, vector: int, on: bool) -> None:
        if on:
            self.pba[vector // 8] |= 1 << (vector % 8)
        else:
            self.pba[vector // 8] &= ~(1 << (vector % 8)) & 0xFF

    def notify(self, vector: int) -> bool:
        if self.fn is None or not self.enabled:
            return False
        if not 0 <= vector < self.vectors:
            self.log.warning(
                "msix-vector", "msi-x: vector %d beyond table of %d", vector, self.vectors
            )
            return False
        if self.function_masked or self.entry_masked(vector):
            self._set_pending(vector, True)
            return False
        return self.fn.send_msi(*self.message(vector))

    def _deliver_pending(self) -> None:
        if self.fn is None or not self.enabled or self.function_masked:
            return
        for v in range(self.vectors):
            if self.pending(v) and not self.entry_masked(v):
                self._set_pending(v, False)
                self.fn.send_msi(*self.message(v))

    def after_write(self, offset: int, size: int) -> None:
        if _overlap(offset, size, self.offset + 2, 2):
            self._deliver_pending()

    # -- the table and PBA as the BAR decodes them --------------------------------------
    def table_read(self, offset: int, size: int) -> int:
        if offset < 0 or offset + size > self.table_size:
            return 0  # clamped: nothing beyond the last vector
        return int.from_bytes(self.table[offset : offset + size], "little")

    def table_write(self, offset: int, size: int, value: int) -> None:
        if offset < 0 or offset + size > self.table_size:
            self.log.warning("msix-index", "msi-x: table write at 0x%x beyond the table", offset)
            return
        unmasked = False
        for i in range(size):
            o = offset + i
            b = (value >> (8 * i)) & 0xFF
            field = o % MSIX_ENTRY
            if field == 0:
                b &= 0xFC  # message address is DWORD aligned
            elif field == 12:
                unmasked |= bool(self.table[o] & 1) and not b & 1
                b &= 0x01  # vector control: only the mask bit is defined
            elif field > 12:
                b = 0
            self.table[o] = b
        if unmasked:
            self._deliver_pending()

    def pba_read(self, offset: int, size: int) -> int:
        if offset < 0 or offset + size > self.pba_size:
            return 0
        return int.from_bytes(self.pba[offset : offset + size], "little")

    def save(self) -> dict[str, Any]:
        return {"table": self.table.hex(), "pba": self.pba.hex()}

    def restore(self, state: dict[str, Any]) -> None:
        try:
            table = get_hex(state, "table", self.table_size)
            pba = get_hex(state, "pba", self.pba_size)
        except StateError as err:
            raise StateError(f"msi-x: {err}") from None
        for v in range(self.vectors):
            e = v * MSIX_ENTRY
            if table[e] & 3 or table[e + 12] & 0xFE or any(table[e + 13 : e + 16]):
                raise StateError(f"msi-x: entry {v} has reserved bits set")
        if self.vectors % 64 and int.from_bytes(pba, "little") >> self.vectors:
            raise StateError("msi-x: pending bits beyond the vector count")
        self.table[:] = table
        self.pba[:] = pba


class MsixRegion(BusDevice):
    """A BAR's device for the MSI-X table and PBA, optionally in front of other registers."""

    io_sizes = frozenset({4, 8})

    def __init__(self, msix: MsixCapability, rest: BusDevice | None = None) -> None:
        self.msix = msix
        self.rest = rest
        self.name = "msix"

    def read(self, offset: int, size: int) -> int:
        m = self.msix
        if m.table_offset <= offset < m.table_offset + m.table_size:
            return m.table_read(offset - m.table_offset, size)
        if m.pba_offset <= offset < m.pba_offset + m.pba_size:
            return m.pba_read(offset - m.pba_offset, size)
        return self.rest.read(offset, size) if self.rest is not None else 0

    def write(self, offset: int, size: int, value: int) -> None:
        m = self.msix
        if m.table_offset <= offset < m.table_offset + m.table_size:
            m.table_write(offset - m.table_offset, size, value)
        elif m.pba_offset <= offset < m.pba_offset + m.pba_size:
            return  # the PBA is read-only
        elif self.rest is not None:
            self.rest.write(offset, size, value)


# -- PCI Express capability (PCIe 3.0, 7.8) -------------------------------------------------
PCIE_ENDPOINT = 0x0
PCIE_LEGACY_ENDPOINT = 0x1
PCIE_RC_INTEGRATED = 0x9


class PcieCapability(Capability):
    """Version 2 PCI Express capability of an endpoint (x1 link at 2.5 GT/s) or a
    root-complex integrated endpoint (no link registers)."""

    cap_id = CAP_PCIE

    def __init__(self, port_type: int = PCIE_ENDPOINT) -> None:
        super().__init__()
        self.port_type = port_type

    @property
    def length(self) -> int:
        return 0x3C

    @property
    def has_link(self) -> bool:
        return self.port_type != PCIE_RC_INTEGRATED

    def install(self, cs: ConfigSpace) -> None:
        o = self.offset
        cs.set(o + 0x02, 2, 0x2 | (self.port_type << 4))
        # Device capabilities: 128-byte max payload, no phantom functions; role-based error
        # reporting (bit 15), as every PCIe 1.1+ function has.
        cs.set(o + 0x04, 4, 1 << 15)
        cs.set(o + 0x08, 2, 0x2810)  # relaxed ordering, no snoop, 512-byte read requests
        cs.set_wmask(o + 0x08, 2, 0x79FF)
        cs.set_w1c(o + 0x0A, 2, 0x000F)  # error detected bits
        cs.set_dyn(o + 0x0A, 2, 0x000F)
        if self.has_link:
            cs.set(o + 0x0C, 4, 0x11)  # 2.5 GT/s, x1
            cs.set_wmask(o + 0x10, 2, 0x00C3)  # ASPM control, common clock, extended sync
            cs.set(o + 0x12, 2, 0x11)  # current speed 2.5 GT/s, width x1
            cs.set(o + 0x2C, 4, 0x2)  # supported speeds: 2.5 GT/s
            cs.set(o + 0x30, 2, 0x1)  # target link speed
            cs.set_wmask(o + 0x30, 2, 0x000F)


class ExtendedCapability(Capability):
    """An extended capability with a fixed read-only body (after its 32-bit header)."""

    extended = True

    def __init__(self, cap_id: int, body: bytes, version: int = 1) -> None:
        super().__init__()
        self.cap_id = cap_id
        self.version = version
        self.body = bytes(body)

    @property
    def length(self) -> int:
        return 4 + len(self.body)

    def install(self, cs: ConfigSpace) -> None:
        cs.data[self.offset + 4 : self.offset + 4 + len(self.body)] = self.body


def serial_number_capability(serial: int) -> ExtendedCapability:
    """Device Serial Number (PCIe 3.0, 7.13): a 64-bit EUI."""
    return ExtendedCapability(EXT_DSN, (serial & (2**64 - 1)).to_bytes(8, "little"))


def link_capability(cs: ConfigSpace, cap: Capability, last: Capability | None) -> None:
    """Install `cap` at its offset and append it to the right chain after `last`."""
    o = cap.offset
    if cap.extended:
        cs.set(o, 4, cap.cap_id | (cap.version << 16))
        if last is not None:
            header = cs.get(last.offset, 4)
            cs.set(last.offset, 4, (header & 0xFFFFF) | (o << 20))
    else:
        cs.set(o, 1, cap.cap_id)
        cs.set(o + 1, 1, 0)
        if last is None:
            cs.set(CAP_PTR, 1, o)
            cs.set_bits(STATUS, 2, STS_CAP_LIST, True)
        else:
            cs.set(last.offset + 1, 1, o)
    cap.install(cs)
