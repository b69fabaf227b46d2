"""QEMU's ACPI linker/loader: the table files and the commands that place them.

The interface is QEMU's hw/acpi/bios-linker-loader.c as SeaBIOS reads it (src/fw/
romfile_loader.c): `etc/table-loader` is a list of 128-byte little-endian entries, a u32
command then its arguments, file names NUL-padded to 56 bytes:

* ALLOCATE (1): file, u32 alignment (a power of 2), u8 zone (1 high memory, 2 the F segment):
  copy the fw_cfg file into memory so allocated.
* ADD_POINTER (2): destination file, source file, u32 offset, u8 size (1, 2, 4 or 8): add
  the source file's address to the little-endian pointer at that offset of the destination.
* ADD_CHECKSUM (3): file, u32 offset, u32 start, u32 length: subtract the byte sum of
  [start, start + length) from the byte at offset (the range includes it, so it sums to 0).

`install` runs the same commands itself to write the tables into guest memory for a boot
without firmware.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Protocol

ENTRY_LEN = 128
FILE_LEN = 56
CMD_ALLOCATE, CMD_ADD_POINTER, CMD_ADD_CHECKSUM = 1, 2, 3
ZONE_HIGH, ZONE_FSEG = 1, 2

TABLES_FILE = "etc/acpi/tables"
RSDP_FILE = "etc/acpi/rsdp"
LOADER_FILE = "etc/table-loader"


def _name(file: str) -> bytes:
    raw = file.encode()
    if not raw or len(raw) >= FILE_LEN:
        raise ValueError(f"table-loader: bad file name {file!r}")
    return raw.ljust(FILE_LEN, b"\0")


@dataclass(frozen=True)
class Allocate:
    file: str
    align: int
    zone: int

    def encode(self) -> bytes:
        return struct.pack("<I56sIB", CMD_ALLOCATE, _name(self.file), self.align, self.zone)


@dataclass(frozen=True)
class AddPointer:
    dest: str
    src: str
    offset: int
    size: int

    def encode(self) -> bytes:
        return struct.pack(
            "<I56s56sIB", CMD_ADD_POINTER, _name(self.dest), _name(self.src), self.offset, self.size
        )


@dataclass(frozen=True)
class AddChecksum:
    file: str
    offset: int
    start: int
    length: int

    def encode(self) -> bytes:
        return struct.pack(
            "<I56sIII", CMD_ADD_CHECKSUM, _name(self.file), self.offset, self.start, self.length
        )


Command = Allocate | AddPointer | AddChecksum


@dataclass
class Linker:
    """The files and the commands that link them, in the order firmware must run them."""

    files: dict[str, bytearray] = field(default_factory=dict)
    commands: list[Command] = field(default_factory=list)

    def allocate(self, file: str, data: bytes, align: int, zone: int) -> None:
        if file in self.files:
            raise ValueError(f"table-loader: {file} allocated twice")
        if align <= 0 or align & (align - 1):
            raise ValueError(f"table-loader: alignment {align} is not a power of 2")
        self.files[file] = bytearray(data)
        self.commands.append(Allocate(file, align, zone))

    def pointer(self, dest: str, offset: int, size: int, src: str) -> None:
        """`dest`'s field at `offset` holds an offset into `src`: make it `src`'s address."""
        if size not in (1, 2, 4, 8) or offset + size > len(self.files[dest]):
            raise ValueError(f"table-loader: bad pointer at {dest}+{offset}")
        if src not in self.files:
            raise ValueError(f"table-loader: pointer to unallocated {src}")
        self.commands.append(AddPointer(dest, src, offset, size))

    def checksum(self, file: str, offset: int, start: int, length: int) -> None:
        if start + length > len(self.files[file]) or not start <= offset < start + length:
            raise ValueError(f"table-loader: bad checksum range in {file}")
        self.commands.append(AddChecksum(file, offset, start, length))

    def loader_bytes(self) -> bytes:
        return b"".join(c.encode().ljust(ENTRY_LEN, b"\0") for c in self.commands)


def link(linker: Linker, addresses: dict[str, int]) -> dict[str, bytes]:
    """The files with pointers and checksums patched for the files placed at `addresses`,
    running the commands as SeaBIOS's loader does."""
    out = {name: bytearray(data) for name, data in linker.files.items()}
    for cmd in linker.commands:
        if isinstance(cmd, AddPointer):
            data = out[cmd.dest]
            end = cmd.offset + cmd.size
            value = int.from_bytes(data[cmd.offset : end], "little") + addresses[cmd.src]
            data[cmd.offset : end] = (value & ((1 << (8 * cmd.size)) - 1)).to_bytes(
                cmd.size, "little"
            )
        elif isinstance(cmd, AddChecksum):
            data = out[cmd.file]
            total = sum(data[cmd.start : cmd.start + cmd.length])
            data[cmd.offset] = (data[cmd.offset] - total) & 0xFF
    return {name: bytes(data) for name, data in out.items()}


class GuestWriter(Protocol):
    def write_bytes(self, gpa: int, data: bytes) -> None: ...


def _align(value: int, align: int) -> int:
    return -(-value // align) * align


def place(linker: Linker, base: int) -> dict[str, int]:
    """Addresses for every allocated file from `base` up, each at its alignment, in
    allocation order."""
    addresses: dict[str, int] = {}
    at = base
    for cmd in linker.commands:
        if isinstance(cmd, Allocate):
            at = _align(at, cmd.align)
            addresses[cmd.file] = at
            at += len(linker.files[cmd.file])
    return addresses


def size(linker: Linker, base: int) -> int:
    """The bytes `install` at `base` covers."""
    addresses = place(linker, base)
    return max(addresses[f] + len(d) for f, d in linker.files.items()) - base


def install(linker: Linker, space: GuestWriter, base: int, rsdp_file: str = RSDP_FILE) -> int:
    """Write the linked files into guest memory from `base` (in allocation order: the
    tables, then the RSDP) and return the RSDP's address."""
    addresses = place(linker, base)
    for name, data in link(linker, addresses).items():
        space.write_bytes(addresses[name], data)
    return addresses[rsdp_file]
