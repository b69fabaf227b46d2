"""SMBIOS tables for the firmware, handed over like QEMU does through fw_cfg.

QEMU (hw/smbios/smbios.c) gives SeaBIOS two files: "etc/smbios/smbios-tables", the structure
table without type 0, and "etc/smbios/smbios-anchor", the SMBIOS 2.x entry point describing it.
SeaBIOS (src/fw/biostables.c, smbios_romfile_setup) then only prepends its own type 0 (BIOS
information, with its version) and fixes the addresses and checksums; without them it builds
tables itself. Layouts follow the DMTF SMBIOS 2.8 reference (DSP0134) at the lengths QEMU uses
for a 2.x entry point; handles follow QEMU's numbering (type << 8, plus the instance).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

GiB = 1 << 30
KiB = 1 << 10
MiB = 1 << 20
DIMM_MAX = 16 * GiB  # QEMU splits RAM into "DIMM n" devices of at most 16 GiB
VERSION = (2, 8)
ANCHOR = struct.Struct("<4sBBBBHB5s5sBHIHB")  # the 31-byte SMBIOS 2.1 entry point
TABLES_FILE = "etc/smbios/smbios-tables"
ANCHOR_FILE = "etc/smbios/smbios-anchor"


@dataclass(frozen=True)
class SmbiosConfig:
    """What the tables describe. `ram` lists (guest-physical base, size) of RAM ranges."""

    ram: Sequence[tuple[int, int]]
    cpus: int = 1
    manufacturer: str = "southbridge"
    product: str = "Standard PC (i440FX + PIIX, 1996)"
    version: str = "pc-i440fx"
    uuid: bytes = bytes(16)
    cpu_signature: int = 0  # CPUID.1:EAX
    cpu_features: int = 0  # CPUID.1:EDX
    cpu_mhz: int = 2000  # QEMU's default max/current speed
    bios_vendor: str | None = None  # type 0 only when given; else the firmware adds its own


def structure(kind: int, handle: int, body: bytes, strings: Sequence[str] = ()) -> bytes:
    """One structure: the 4-byte header, the formatted area, then its string set (each string
    NUL-terminated, the set ended by a second NUL; two NULs when there are no strings)."""
    head = struct.pack("<BBH", kind, 4 + len(body), handle)
    tail = b"".join(_clean(s) + b"\0" for s in strings if _clean(s))
    return head + body + (tail + b"\0" if tail else b"\0\0")


def _clean(text: str) -> bytes:
    """A string as the table holds it: ASCII (others become "?"), no NUL (it ends a string)."""
    return text.encode("ascii", "replace").replace(b"\0", b"")


class _Strings:
    """Collects a structure's strings and hands out their 1-based numbers (0 = none)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def __call__(self, text: str) -> int:
        if not _clean(text):
            return 0  # an empty string is "none", never an empty entry in the set
        self.items.append(text)
        return len(self.items)


def type0(handle: int, vendor: str, version: str, date: str) -> bytes:
    """BIOS information (DSP0134 7.1): 64 KiB at 0xF0000, characteristics "not supported"
    (bit 3) as QEMU reports, and the VM bit in extension byte 2 (bit 4)."""
    s = _Strings()
    body = struct.pack(
        "<BBHBBQBBBBBB",
        s(vendor),
        s(version),
        0xF000,  # starting segment
        s(date),
        0,  # ROM size: 64 KiB units - 1
        1 << 3,
        0,
        1 << 4,
        0,  # system BIOS major/minor release
        0,
        0xFF,  # no embedded controller
        0xFF,
    )
    return structure(0, handle, body, s.items)


def type1(cfg: SmbiosConfig) -> bytes:
    """System information (7.2): wake-up type 06h, power switch."""
    s = _Strings()
    body = struct.pack(
        "<BBBB16sBBB",
        s(cfg.manufacturer),
        s(cfg.product),
        s(cfg.version),
        0,
        _smbios_uuid(cfg.uuid),
        0x06,
        0,
        0,
    )
    return structure(1, 0x100, body, s.items)


def _smbios_uuid(uuid: bytes) -> bytes:
    """SMBIOS 2.6+ stores the first three UUID fields little-endian (7.2.1)."""
    u = uuid.ljust(16, b"\0")[:16]
    return u[3::-1] + u[5:3:-1] + u[7:5:-1] + u[8:]


def type3(cfg: SmbiosConfig) -> bytes:
    """System enclosure (7.4): type 01h "other", states 03h "safe", security 02h "unknown"."""
    s = _Strings()
    body = struct.pack(
        "<BBBBBBBBBIBBBBB",
        s(cfg.manufacturer),
        0x01,
        s(cfg.version),
        0,
        0,
        3,
        3,
        3,
        2,
        0,
        0,
        0,
        0,
        0,
        0,
    )
    return structure(3, 0x300, body, s.items)


def type4(cfg: SmbiosConfig, cpu: int) -> bytes:
    """Processor information (7.5), one per CPU socket: central processor, family "other",
    status 41h (populated, enabled), no caches described (handles FFFFh), one core each."""
    s = _Strings()
    body = struct.pack(
        "<BBBBIIBBHHHBBHHHBBBBBBHH",
        s(f"CPU {cpu}"),
        0x03,
        0x01,
        s(cfg.manufacturer),
        cfg.cpu_signature,
        cfg.cpu_features,
        s(cfg.version),
        0,  # voltage: unknown
        0,  # external clock: unknown
        cfg.cpu_mhz,
        cfg.cpu_mhz,
        0x41,
        0x01,
        0xFFFF,
        0xFFFF,
        0xFFFF,
        0,
        0,
        0,
        1,  # cores
        1,  # cores enabled
        1,  # threads
        0x02,  # characteristics: unknown
        0x01,  # family 2
    )
    return structure(4, 0x400 + cpu, body, s.items)


def _capacity_kib(size: int) -> tuple[int, int]:
    """(Maximum capacity, extended) of type 16: KiB, or 8000_0000h plus bytes from 2 TiB."""
    kib = size // KiB
    return (kib, 0) if kib < 0x80000000 else (0x80000000, size)


def type16(total: int, dimms: int) -> bytes:
    """Physical memory array (7.17): system board "other", system memory, multi-bit ECC as
    QEMU reports, no error information (FFFEh)."""
    cap, ext = _capacity_kib(total)
    body = struct.pack("<BBBIHHQ", 0x01, 0x03, 0x06, cap, 0xFFFE, dimms, ext)
    return structure(16, 0x1000, body)


def type17(index: int, size: int) -> bytes:
    """Memory device (7.18): a DIMM of `size` bytes, RAM, type detail "other"; sizes from
    32 GiB - 1 MiB up use the extended size field (MiB)."""
    s = _Strings()
    mib = size // MiB
    small, extended = (mib, 0) if mib < 0x7FFF else (0x7FFF, mib)
    body = struct.pack(
        "<HHHHHBBBBBHHBBBBBIHHHH",
        0x1000,
        0xFFFE,
        0xFFFF,
        0xFFFF,
        small,
        0x09,  # DIMM
        0,
        s(f"DIMM {index}"),
        0,
        0x07,  # RAM
        0x02,  # other
        0,
        s("southbridge"),
        0,
        0,
        0,
        0,
        extended,
        0,
        0,
        0,
        0,
    )
    return structure(17, 0x1100 + index, body, s.items)


def type19(index: int, base: int, size: int) -> bytes:
    """Memory array mapped address (7.20): KiB bounds (inclusive end), or FFFF_FFFFh and the
    extended byte addresses when the range reaches 4 TiB."""
    start, end = base // KiB, (base + size) // KiB - 1
    if end <= 0xFFFFFFFE:
        body = struct.pack("<IIHBQQ", start, end, 0x1000, 1, 0, 0)
    else:
        body = struct.pack("<IIHBQQ", 0xFFFFFFFF, 0xFFFFFFFF, 0x1000, 1, base, base + size - 1)
    return structure(19, 0x1300 + index, body)


def type32() -> bytes:
    """System boot information (7.33): status 0, no errors detected."""
    return structure(32, 0x2000, bytes(6) + b"\0")


def type127() -> bytes:
    """End of table (7.45)."""
    return structure(127, 0x7F00, b"")


def build_tables(cfg: SmbiosConfig) -> list[bytes]:
    """The structures in QEMU's order: [0,] 1, 3, 4 per CPU, 16, 17 per DIMM, 19 per RAM
    range, 32, 127."""
    total = sum(size for _, size in cfg.ram)
    out: list[bytes] = []
    if cfg.bios_vendor is not None:
        out.append(type0(0, cfg.bios_vendor, cfg.version, "01/01/2011"))
    out += [type1(cfg), type3(cfg)]
    out += [type4(cfg, i) for i in range(cfg.cpus)]
    dimms = max(1, -(-total // DIMM_MAX))
    out.append(type16(total, dimms))
    left = total
    for i in range(dimms):
        out.append(type17(i, min(left, DIMM_MAX)))
        left -= DIMM_MAX
    out += [type19(i, base, size) for i, (base, size) in enumerate(cfg.ram) if size > 0]
    out += [type32(), type127()]
    return out


def _checksum_byte(data: bytes) -> int:
    return -sum(data) & 0xFF


def entry_point(structures: Sequence[bytes], table_address: int = 0) -> bytes:
    """The SMBIOS 2.1 entry point (5.2.1) for `structures`: both checksums make their spans
    sum to zero; the firmware rewrites the address (and the checksums) when it places them."""
    length = sum(len(s) for s in structures)
    if length > 0xFFFF:
        raise ValueError(f"SMBIOS structure table of {length} bytes exceeds 64 KiB")
    fields = [
        b"_SM_",
        0,
        ANCHOR.size,
        VERSION[0],
        VERSION[1],
        max(len(s) for s in structures),
        0,
        bytes(5),
        b"_DMI_",
        0,
        length,
        table_address,
        len(structures),
        (VERSION[0] << 4) | VERSION[1],
    ]
    raw = ANCHOR.pack(*fields)
    fields[9] = _checksum_byte(raw[0x10:])
    raw = ANCHOR.pack(*fields)
    fields[1] = _checksum_byte(raw)
    return ANCHOR.pack(*fields)


def fw_cfg_files(cfg: SmbiosConfig) -> dict[str, bytes]:
    """The two fw_cfg files QEMU gives SeaBIOS: the structure table and its entry point."""
    structures = build_tables(cfg)
    return {TABLES_FILE: b"".join(structures), ANCHOR_FILE: entry_point(structures)}
