"""Reading our ACPI tables back the way an OS does: a SeaBIOS-style table-loader run over the
fw_cfg files, then RSDP -> XSDT -> tables (ACPI 6.5, 5.2)."""

from __future__ import annotations

import struct
from collections.abc import Callable

from southbridge.machine.acpi import tableloader as tl

SeaBiosAlloc = dict[str, tuple[int, bytearray]]


def run_loader(files: dict[str, bytes], loader: bytes, high: int, fseg: int) -> SeaBiosAlloc:
    """Interpret `etc/table-loader` like SeaBIOS's romfile_loader_execute: parse each
    128-byte entry by its command, allocate files in the zones it names, patch pointers and
    checksums. Returns each file's address and bytes."""
    assert len(loader) % tl.ENTRY_LEN == 0
    placed: SeaBiosAlloc = {}
    cursor = {tl.ZONE_HIGH: high, tl.ZONE_FSEG: fseg}

    def cstr(raw: bytes) -> str:
        assert raw[-1] == 0, "file name not NUL-terminated within 56 bytes"
        return raw.split(b"\0", 1)[0].decode()

    for at in range(0, len(loader), tl.ENTRY_LEN):
        entry = loader[at : at + tl.ENTRY_LEN]
        (command,) = struct.unpack_from("<I", entry)
        if command == tl.CMD_ALLOCATE:
            name = cstr(entry[4:60])
            align, zone = struct.unpack_from("<IB", entry, 60)
            assert align & (align - 1) == 0
            addr = -(-cursor[zone] // align) * align
            cursor[zone] = addr + len(files[name])
            placed[name] = (addr, bytearray(files[name]))
        elif command == tl.CMD_ADD_POINTER:
            dest, src = cstr(entry[4:60]), cstr(entry[60:116])
            offset, size = struct.unpack_from("<IB", entry, 116)
            data = placed[dest][1]
            value = int.from_bytes(data[offset : offset + size], "little") + placed[src][0]
            data[offset : offset + size] = value.to_bytes(size, "little")
        elif command == tl.CMD_ADD_CHECKSUM:
            name = cstr(entry[4:60])
            offset, start, length = struct.unpack_from("<III", entry, 60)
            data = placed[name][1]
            data[offset] = (data[offset] - sum(data[start : start + length])) & 0xFF
        else:
            raise AssertionError(f"unknown table-loader command {command}")
    return placed


class Memory:
    """A sparse guest memory the placed files live in."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, bytes]] = []

    def write_bytes(self, gpa: int, data: bytes) -> None:
        self.chunks.append((gpa, bytes(data)))

    def read(self, gpa: int, length: int) -> bytes:
        for base, data in self.chunks:
            if base <= gpa and gpa + length <= base + len(data):
                return data[gpa - base : gpa - base + length]
        raise AssertionError(f"nothing placed at 0x{gpa:x}+{length}")


Reader = Callable[[int, int], bytes]


def walk(read: Reader, rsdp_addr: int) -> tuple[bytes, dict[bytes, bytes], dict[bytes, int]]:
    """RSDP, then every table the XSDT lists, the DSDT and FACS through the FADT. Also the
    tables' addresses (the RSDT must list the same ones)."""

    class _Tables:
        @staticmethod
        def table(gpa: int) -> bytes:
            (length,) = struct.unpack("<I", read(gpa + 4, 4))
            return read(gpa, length)

    mem = _Tables
    rsdp = read(rsdp_addr, 36)
    assert rsdp[:8] == b"RSD PTR "
    rsdt_addr, _, xsdt_addr = struct.unpack_from("<IIQ", rsdp, 16)
    xsdt = mem.table(xsdt_addr)
    rsdt = mem.table(rsdt_addr)
    xs = struct.unpack_from(f"<{(len(xsdt) - 36) // 8}Q", xsdt, 36)
    rs = struct.unpack_from(f"<{(len(rsdt) - 36) // 4}I", rsdt, 36)
    assert list(xs) == list(rs)
    tables = {b"XSDT": xsdt, b"RSDT": rsdt}
    addrs = {b"XSDT": xsdt_addr, b"RSDT": rsdt_addr}
    for a in xs:
        tab = mem.table(a)
        tables[tab[:4]] = tab
        addrs[tab[:4]] = a
    fadt = tables[b"FACP"]
    facs_addr, dsdt_addr = struct.unpack_from("<II", fadt, 36)
    (x_dsdt,) = struct.unpack_from("<Q", fadt, 140)
    assert x_dsdt == dsdt_addr
    tables[b"DSDT"] = mem.table(dsdt_addr)
    tables[b"FACS"] = read(facs_addr, 64)
    addrs[b"DSDT"], addrs[b"FACS"] = dsdt_addr, facs_addr
    return rsdp, tables, addrs
