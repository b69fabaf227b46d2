"""The Linux/x86 boot protocol's memory image (Documentation/arch/x86/boot.rst), pure:
parse a bzImage's setup header, place the protected-mode kernel, initrd and command line in
the machine's RAM and build the zero page (struct boot_params) a 32- or 64-bit entry
expects. Entering the vCPU is the KVM side's job; nothing here touches a VM.

* The header: "HdrS" at 0x202, boot_flag 0xAA55 at 0x1FE, protocol >= 2.06 (the oldest
  with cmdline_size and a 32-bit entry that takes everything from the zero page).
* setup_sects 0 means 4 (boot.rst, "setup_sects"); the protected-mode kernel follows the
  (setup_sects + 1) * 512 bytes of real-mode code.
* The kernel goes to pref_address (protocol 2.10) when it fits in RAM; a relocatable kernel
  that does not fit there goes to the lowest kernel_alignment-aligned address from 1 MiB
  that holds init_size bytes; a non-relocatable one must be at 1 MiB (code32_start).
* The initrd goes to the highest 4 KiB-aligned address whose last byte is at most
  initrd_addr_max and inside RAM below 4 GiB, above the kernel's init_size.
* The command line (NUL terminated, at most cmdline_size bytes before the NUL) and the zero
  page sit in low memory below the EBDA area, where a boot loader would put them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from southbridge.machine.loaderror import LoadError

MiB = 1 << 20
FOUR_GIB = 1 << 32
PAGE = 4096

# Setup header offsets in the image and in boot_params (boot.rst, "The real-mode kernel
# header"); the header is copied to the same offsets of the zero page.
SETUP_SECTS = 0x1F1
BOOT_FLAG = 0x1FE
JUMP = 0x200
HEADER = 0x202
VERSION = 0x206
TYPE_OF_LOADER = 0x210
LOADFLAGS = 0x211
CODE32_START = 0x214
RAMDISK_IMAGE = 0x218
RAMDISK_SIZE = 0x21C
HEAP_END_PTR = 0x224
CMD_LINE_PTR = 0x228
INITRD_ADDR_MAX = 0x22C
KERNEL_ALIGNMENT = 0x230
RELOCATABLE_KERNEL = 0x234
XLOADFLAGS = 0x236
CMDLINE_SIZE = 0x238
PREF_ADDRESS = 0x258
INIT_SIZE = 0x260

# boot_params fields outside the setup header (arch/x86/include/uapi/asm/bootparam.h layout,
# as boot.rst's "zero page" table lists them).
EXT_RAMDISK_IMAGE = 0x0C0
EXT_RAMDISK_SIZE = 0x0C4
EXT_CMD_LINE_PTR = 0x0C8
E820_ENTRIES = 0x1E8
E820_TABLE = 0x2D0
E820_MAX = 128
ZERO_PAGE_SIZE = 4096

LOADED_HIGH = 0x01
CAN_USE_HEAP = 0x80
XLF_KERNEL_64 = 0x01
LOADER_UNDEFINED = 0xFF  # type_of_loader: "no assigned ID"
MIN_VERSION = 0x0206

# Where the loader's own data goes (all below 0x9F000, the usual EBDA start).
ZERO_PAGE_ADDR = 0x7000
CMDLINE_ADDR = 0x20000
CMDLINE_LIMIT = 0x9F000 - CMDLINE_ADDR
# heap_end_ptr is relative to the real-mode code's start; 0xFE00 - 0x200 is what boot.rst's
# sample boot configuration uses, leaving room for the stack.
HEAP_END = 0xFE00 - 0x200

E820_RAM = 1
E820_RESERVED = 2
E820_ENTRY = struct.Struct("<QQI")


class BzImageError(LoadError):
    """The image or its initrd cannot be loaded under the Linux boot protocol."""


@dataclass(frozen=True)
class SetupHeader:
    version: int
    setup_sects: int
    loadflags: int
    code32_start: int
    initrd_addr_max: int
    kernel_alignment: int
    relocatable: bool
    xloadflags: int
    cmdline_size: int
    pref_address: int
    init_size: int
    header_end: int  # offset of the setup header's end: 0x202 + the jump's byte at 0x201

    @property
    def kernel_64(self) -> bool:
        return bool(self.xloadflags & XLF_KERNEL_64)


@dataclass(frozen=True)
class LinuxPlan:
    """Everything to copy into guest memory, and how to enter."""

    kernel_addr: int
    kernel: bytes
    zero_page: bytes
    cmdline: bytes
    initrd_addr: int
    initrd: bytes
    kernel_64: bool

    @property
    def entry(self) -> int:
        """startup_64 is 0x200 past the 32-bit entry (boot.rst, "64-bit boot protocol")."""
        return self.kernel_addr + (0x200 if self.kernel_64 else 0)

    def blobs(self) -> list[tuple[int, bytes]]:
        out = [
            (self.kernel_addr, self.kernel),
            (ZERO_PAGE_ADDR, self.zero_page),
            (CMDLINE_ADDR, self.cmdline),
        ]
        if self.initrd:
            out.append((self.initrd_addr, self.initrd))
        return out


def is_bzimage(data: bytes) -> bool:
    return len(data) >= HEADER + 4 and data[HEADER : HEADER + 4] == b"HdrS"


def _u(data: bytes, off: int, size: int) -> int:
    return int.from_bytes(data[off : off + size], "little")


def parse_header(data: bytes, name: str = "kernel") -> SetupHeader:
    if not is_bzimage(data):
        raise BzImageError(f"{name}: not a bzImage (no 'HdrS' setup header at 0x202)")
    version = _u(data, VERSION, 2)
    if version < MIN_VERSION:
        raise BzImageError(
            f"{name}: boot protocol {version >> 8}.{version & 0xFF:02d} is too old "
            f"(at least 2.06 is needed)"
        )
    if _u(data, BOOT_FLAG, 2) != 0xAA55:
        raise BzImageError(f"{name}: setup header has no 0xAA55 boot flag at 0x1fe")
    sects = data[SETUP_SECTS] or 4
    header_end = 0x202 + data[0x201]
    if header_end < INIT_SIZE + 4 and version >= 0x020A:
        header_end = INIT_SIZE + 4
    if len(data) < max(header_end, CMDLINE_SIZE + 4):
        raise BzImageError(f"{name}: truncated setup header")
    if len(data) <= (sects + 1) * 512:
        raise BzImageError(f"{name}: no protected-mode kernel after {sects} setup sectors")
    pm_len = len(data) - (sects + 1) * 512
    has_210 = version >= 0x020A
    return SetupHeader(
        version=version,
        setup_sects=sects,
        loadflags=data[LOADFLAGS],
        code32_start=_u(data, CODE32_START, 4),
        initrd_addr_max=_u(data, INITRD_ADDR_MAX, 4),
        kernel_alignment=_u(data, KERNEL_ALIGNMENT, 4) or MiB,
        relocatable=bool(data[RELOCATABLE_KERNEL]),
        xloadflags=_u(data, XLOADFLAGS, 2) if version >= 0x020C else 0,
        cmdline_size=_u(data, CMDLINE_SIZE, 4),
        pref_address=_u(data, PREF_ADDRESS, 8) if has_210 else MiB,
        init_size=max(_u(data, INIT_SIZE, 4) if has_210 else 0, pm_len),
        header_end=header_end,
    )


def _fits(ram: list[tuple[int, int]], addr: int, size: int) -> bool:
    return any(b <= addr and addr + size <= b + s for b, s in ram)


def _place_kernel(h: SetupHeader, ram: list[tuple[int, int]], name: str) -> int:
    if h.pref_address >= MiB and _fits(ram, h.pref_address, h.init_size):
        return h.pref_address
    if h.relocatable:
        align = max(h.kernel_alignment, PAGE)
        for base, size in sorted(ram):
            addr = -(-max(base, MiB) // align) * align
            if addr + h.init_size <= base + size:
                return addr
    elif _fits(ram, MiB, h.init_size):
        return MiB
    raise BzImageError(
        f"{name}: kernel needs {h.init_size} bytes from 0x{h.pref_address:x}, "
        f"more than RAM holds; use more memory"
    )


def _place_initrd(
    h: SetupHeader, ram: list[tuple[int, int]], size: int, floor: int, name: str
) -> int:
    limit = min(h.initrd_addr_max, FOUR_GIB - 1) + 1
    for base, rsize in sorted(ram, reverse=True):
        top = min(base + rsize, limit)
        addr = (top - size) & ~(PAGE - 1)
        if addr >= max(base, floor):
            return addr
    raise BzImageError(
        f"{name}: initrd of {size} bytes does not fit in RAM below "
        f"0x{limit:x} above the kernel; use more memory"
    )


def e820_table(entries: list[tuple[int, int, int]]) -> bytes:
    return b"".join(E820_ENTRY.pack(b, s, t) for b, s, t in entries[:E820_MAX])


def check_cmdline(h: SetupHeader, cmdline: str, name: str, room: int | None = None) -> bytes:
    """The command line's bytes, refused with one line when it holds a NUL or is longer
    than the kernel's cmdline_size (or the `room` the loader has for it)."""
    line = cmdline.encode()
    if b"\0" in line:
        raise BzImageError(f"{name}: command line contains a NUL byte")
    limit = h.cmdline_size if room is None else min(h.cmdline_size, room)
    if len(line) > limit:
        raise BzImageError(
            f"{name}: command line of {len(line)} bytes is longer than the kernel's "
            f"cmdline_size ({h.cmdline_size})"
        )
    return line


def plan_linux(
    data: bytes,
    ram: list[tuple[int, int]],
    e820: list[tuple[int, int, int]],
    cmdline: str,
    initrd: bytes = b"",
    name: str = "kernel",
) -> LinuxPlan:
    """Parse `data` and lay out a boot: `ram` is (base, size) of RAM, `e820` (base, size,
    type) the machine's memory map as the kernel should see it."""
    h = parse_header(data, name)
    line = check_cmdline(h, cmdline, name, CMDLINE_LIMIT - 1)
    kaddr = _place_kernel(h, ram, name)
    iaddr = _place_initrd(h, ram, len(initrd), kaddr + h.init_size, name) if initrd else 0
    zp = bytearray(ZERO_PAGE_SIZE)
    zp[SETUP_SECTS : h.header_end] = data[SETUP_SECTS : h.header_end]
    zp[TYPE_OF_LOADER] = LOADER_UNDEFINED
    zp[LOADFLAGS] = (h.loadflags | CAN_USE_HEAP | LOADED_HIGH) & 0xFF
    struct.pack_into("<H", zp, HEAP_END_PTR, HEAP_END)
    struct.pack_into("<I", zp, CODE32_START, kaddr)
    struct.pack_into("<I", zp, CMD_LINE_PTR, CMDLINE_ADDR)
    struct.pack_into("<I", zp, RAMDISK_IMAGE, iaddr)
    struct.pack_into("<I", zp, RAMDISK_SIZE, len(initrd))
    # The ext_ fields carry bits 32-63; everything here is below 4 GiB.
    struct.pack_into("<III", zp, EXT_RAMDISK_IMAGE, 0, 0, 0)
    table = e820_table(e820)
    zp[E820_ENTRIES] = len(table) // E820_ENTRY.size
    zp[E820_TABLE : E820_TABLE + len(table)] = table
    return LinuxPlan(
        kernel_addr=kaddr,
        kernel=data[(h.setup_sects + 1) * 512 :],
        zero_page=bytes(zp),
        cmdline=line + b"\0",
        initrd_addr=iaddr,
        initrd=initrd,
        kernel_64=h.kernel_64,
    )
