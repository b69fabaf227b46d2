"""The Linux boot protocol's zero page, built from synthetic bzImage headers and checked
field by field against Documentation/arch/x86/boot.rst."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from southbridge.kvm.loader import LoadError
from southbridge.kvm.multiboot import memory_map
from southbridge.machine import bzimage as bz

MiB = 1 << 20
RAM = [(0, 0x9FC00), (MiB, 255 * MiB)]  # 256 MiB machine: low RAM below the EBDA, then high
E820 = memory_map(RAM)


def image(
    version: int = 0x020F,
    setup_sects: int = 4,
    pm_size: int = 0x4000,
    pref: int = 0x1000000,
    init_size: int = 0x10000,
    relocatable: int = 1,
    xload: int = bz.XLF_KERNEL_64,
    cmdline_size: int = 2047,
    initrd_max: int = 0x7FFFFFFF,
    align: int = 0x200000,
) -> bytes:
    """A bzImage as the kernel's arch/x86/boot/header.S lays one out."""
    d = bytearray((setup_sects + 1) * 512 + pm_size)
    d[bz.SETUP_SECTS] = setup_sects
    struct.pack_into("<H", d, bz.BOOT_FLAG, 0xAA55)
    d[0x200] = 0xEB  # jmp short to the end of the header
    d[0x201] = 0x268 - 0x202
    d[bz.HEADER : bz.HEADER + 4] = b"HdrS"
    struct.pack_into("<H", d, bz.VERSION, version)
    d[bz.LOADFLAGS] = bz.LOADED_HIGH
    struct.pack_into("<I", d, bz.CODE32_START, 0x100000)
    struct.pack_into("<I", d, bz.INITRD_ADDR_MAX, initrd_max)
    struct.pack_into("<I", d, bz.KERNEL_ALIGNMENT, align)
    d[bz.RELOCATABLE_KERNEL] = relocatable
    struct.pack_into("<H", d, bz.XLOADFLAGS, xload)
    struct.pack_into("<I", d, bz.CMDLINE_SIZE, cmdline_size)
    struct.pack_into("<Q", d, bz.PREF_ADDRESS, pref)
    struct.pack_into("<I", d, bz.INIT_SIZE, init_size)
    d[(setup_sects + 1) * 512 : (setup_sects + 1) * 512 + 4] = b"KERN"
    return bytes(d)


def u32(b: bytes, off: int) -> int:
    return int(struct.unpack_from("<I", b, off)[0])


def test_zero_page_fields() -> None:
    initrd = bytes(range(256)) * 40
    data = image()
    p = bz.plan_linux(data, RAM, E820, "console=ttyS0 quiet", initrd)
    zp = p.zero_page
    assert len(zp) == 4096
    # The setup header is copied from 0x1f1 to 0x202 + the jump's byte (boot.rst, "Details
    # of header fields": the end of the header is 0x0202 + the byte at 0x0201).
    assert zp[0x1F1:0x210] == data[0x1F1:0x210]
    assert zp[bz.HEADER : bz.HEADER + 4] == b"HdrS"
    # type_of_loader 0xFF: "undefined" loader ID (boot.rst, "type_of_loader").
    assert zp[bz.TYPE_OF_LOADER] == 0xFF
    # loadflags: LOADED_HIGH kept, CAN_USE_HEAP set with heap_end_ptr.
    assert zp[bz.LOADFLAGS] & 0x81 == 0x81
    assert struct.unpack_from("<H", zp, bz.HEAP_END_PTR)[0] == 0xFE00 - 0x200
    # Kernel at pref_address (relocatable, fits); code32_start says where it is.
    assert p.kernel_addr == 0x1000000 == u32(zp, bz.CODE32_START)
    assert p.kernel[:4] == b"KERN" and len(p.kernel) == 0x4000
    # 64-bit entry is startup_32 + 0x200 (boot.rst, "64-bit Boot Protocol").
    assert p.kernel_64 and p.entry == 0x1000200
    # Command line pointer, NUL terminated.
    assert u32(zp, bz.CMD_LINE_PTR) == bz.CMDLINE_ADDR
    assert p.cmdline == b"console=ttyS0 quiet\0"
    # initrd: page aligned, at the top of RAM (below initrd_addr_max), size recorded.
    ia = u32(zp, bz.RAMDISK_IMAGE)
    assert ia == p.initrd_addr and ia % 4096 == 0
    assert ia + len(initrd) <= 256 * MiB and 256 * MiB - (ia + len(initrd)) < 4096
    assert u32(zp, bz.RAMDISK_SIZE) == len(initrd)
    assert u32(zp, bz.EXT_RAMDISK_IMAGE) == u32(zp, bz.EXT_CMD_LINE_PTR) == 0
    # e820 entries and table at 0x1e8 / 0x2d0, 20 bytes each.
    n = zp[bz.E820_ENTRIES]
    assert n == len(E820)
    got = [struct.unpack_from("<QQI", zp, 0x2D0 + 20 * i) for i in range(n)]
    assert got == E820
    assert (0, 0x9FC00, 1) in got and (MiB, 255 * MiB, 1) in got
    blobs = dict(p.blobs())
    assert blobs[bz.ZERO_PAGE_ADDR] == zp and blobs[ia] == initrd


def test_setup_sects_zero_means_four() -> None:
    d = bytearray(image(setup_sects=4))
    d[bz.SETUP_SECTS] = 0
    p = bz.plan_linux(bytes(d), RAM, E820, "")
    assert p.kernel[:4] == b"KERN"


def test_32bit_entry_without_xlf_kernel_64() -> None:
    p = bz.plan_linux(image(xload=0), RAM, E820, "")
    assert not p.kernel_64 and p.entry == p.kernel_addr


def test_relocatable_moves_when_pref_does_not_fit() -> None:
    small = [(0, 0x9FC00), (MiB, 15 * MiB)]  # 16 MiB: pref_address 16 MiB is outside
    p = bz.plan_linux(image(), small, memory_map(small), "")
    # Lowest kernel_alignment (2 MiB) multiple from 1 MiB.
    assert p.kernel_addr == 0x200000


def test_non_relocatable_at_one_mib() -> None:
    small = [(0, 0x9FC00), (MiB, 15 * MiB)]
    p = bz.plan_linux(image(relocatable=0), small, memory_map(small), "")
    assert p.kernel_addr == MiB


def test_initrd_addr_max_bounds_the_initrd() -> None:
    p = bz.plan_linux(image(initrd_max=0x37FFFFF), RAM, E820, "", b"x" * 5000)
    assert p.initrd_addr + 5000 <= 0x3800000 and p.initrd_addr == 0x3800000 - 8192


@pytest.mark.parametrize(
    ("data", "msg"),
    [
        (b"\0" * 4096, "not a bzImage"),
        (image(version=0x0205), "too old"),
        (image(init_size=512 * MiB), "more than RAM"),
    ],
)
def test_bad_images_are_one_line_errors(data: bytes, msg: str) -> None:
    with pytest.raises(LoadError, match=msg) as e:
        bz.plan_linux(data, RAM, E820, "")
    assert "\n" not in str(e.value)


def test_initrd_that_does_not_fit() -> None:
    with pytest.raises(LoadError, match="initrd"):
        bz.plan_linux(image(), RAM, E820, "", b"x" * (300 * MiB))


def test_cmdline_size_bound() -> None:
    bz.plan_linux(image(cmdline_size=10), RAM, E820, "a" * 10)
    with pytest.raises(LoadError, match="cmdline_size"):
        bz.plan_linux(image(cmdline_size=10), RAM, E820, "a" * 11)


@given(st.binary(min_size=0x77, max_size=0x77), st.booleans(), st.integers(0, 0x5000))
def test_any_header_bytes_load_or_load_error(hdr: bytes, keep_magic: bool, cut: int) -> None:
    """Any setup-header contents and any length: a plan or a LoadError, never another
    exception (the image is the user's file, untrusted)."""
    d = bytearray(image())
    d[0x1F1:0x268] = hdr
    if keep_magic:
        d[bz.HEADER : bz.HEADER + 4] = b"HdrS"
    with contextlib.suppress(LoadError):
        bz.plan_linux(bytes(d[: len(d) - cut]), RAM, E820, "x", b"i")


def test_identity_tables_map_low_4gib() -> None:
    """64-bit boot protocol: "identity mapped page table"; walk it for a few addresses."""
    from southbridge.kvm.linuxboot import PML4_ADDR, identity_tables

    t = identity_tables()

    def q(gpa: int) -> int:
        return int(struct.unpack_from("<Q", t, gpa - PML4_ADDR)[0])

    for va in (0, 0x1000200, 0xFEC00000, 0xFFFFF000):
        pdpt = q(PML4_ADDR + 8 * ((va >> 39) & 511)) & ~0xFFF
        pd = q(pdpt + 8 * ((va >> 30) & 511)) & ~0xFFF
        pde = q(pd + 8 * ((va >> 21) & 511))
        assert pde & 0x83 == 0x83  # present, writable, 2 MiB page
        assert (pde & ~0x1FFFFF) + (va & 0x1FFFFF) == va
