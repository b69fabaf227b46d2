"""A bzImage handed to the firmware through fw_cfg (machine/linuxfw.py), item by item as
QEMU's x86_load_linux fills them for linuxboot_dma.bin (keys 0x07-0x18, boot.rst's loader
fields in the setup copy)."""

from __future__ import annotations

import struct

import pytest

from southbridge.devices import fwcfg
from southbridge.machine import bzimage as bz
from southbridge.machine import linuxfw
from tests.test_bzimage import image

MiB = 1 << 20
ROM = b"\x55\xaa\x03" + bytes(1533)


def fresh() -> fwcfg.FwCfg:
    return fwcfg.FwCfg(None, dma=False)


def u32(fw: fwcfg.FwCfg, key: int) -> int:
    data = fw.item(key)
    assert data is not None and len(data) == 4
    return int(struct.unpack("<I", data)[0])


def test_items_follow_qemus_layout() -> None:
    fw = fresh()
    img = image(setup_sects=4, pm_size=0x4000, init_size=0x10000, initrd_max=0x7FFFFFFF)
    initrd = b"i" * 5000
    linuxfw.add_kernel(fw, img, initrd, "console=ttyS0", 128 * MiB, ROM)
    setup_size = 5 * 512
    assert u32(fw, fwcfg.SETUP_ADDR) == 0x10000 and u32(fw, fwcfg.SETUP_SIZE) == setup_size
    assert u32(fw, fwcfg.KERNEL_ADDR) == 0x100000
    assert fw.item(fwcfg.KERNEL_DATA) == img[setup_size:]
    assert u32(fw, fwcfg.KERNEL_SIZE) == len(img) - setup_size
    assert fw.item(fwcfg.CMDLINE_DATA) == b"console=ttyS0\0"
    assert u32(fw, fwcfg.CMDLINE_ADDR) == 0x20000 and u32(fw, fwcfg.CMDLINE_SIZE) == 14
    # The initrd: page aligned, as high as the top of RAM less the firmware's 160 KiB.
    addr = u32(fw, fwcfg.INITRD_ADDR)
    assert addr % 4096 == 0 and u32(fw, fwcfg.INITRD_SIZE) == 5000
    top = 128 * MiB - linuxfw.FIRMWARE_DATA_SIZE
    assert addr + 5000 <= top < addr + 5000 + 4096
    assert fw.item(fwcfg.INITRD_DATA) == initrd
    # The setup copy carries the loader's fields (boot.rst "Details of header fields").
    setup = fw.item(fwcfg.SETUP_DATA)
    assert setup is not None and len(setup) == setup_size
    assert setup[bz.TYPE_OF_LOADER] == 0xB0
    assert setup[bz.LOADFLAGS] & (bz.LOADED_HIGH | bz.CAN_USE_HEAP) == 0x81
    assert struct.unpack_from("<H", setup, bz.HEAP_END_PTR)[0] == 0x20000 - 0x10000 - 0x200
    assert struct.unpack_from("<II", setup, bz.RAMDISK_IMAGE) == (addr, 5000)
    assert struct.unpack_from("<I", setup, bz.CMD_LINE_PTR)[0] == 0x20000
    assert setup[: bz.TYPE_OF_LOADER] == img[: bz.TYPE_OF_LOADER]
    key = fw.file_key(linuxfw.ROM_NAME)
    assert key is not None and fw.item(key) == ROM
    order = fw.item(fw.file_key("bootorder") or 0)
    assert order == b"/rom@genroms/linuxboot_dma.bin\0"


def test_initrd_max_from_the_header_wins_when_lower() -> None:
    fw = fresh()
    linuxfw.add_kernel(fw, image(initrd_max=0x37FFFFF), b"x" * 100, "", 256 * MiB, ROM)
    assert u32(fw, fwcfg.INITRD_ADDR) == (0x3800000 - 100) & ~0xFFF


def test_no_initrd_means_zero_address_and_size() -> None:
    fw = fresh()
    linuxfw.add_kernel(fw, image(), b"", "", 64 * MiB, ROM)
    assert u32(fw, fwcfg.INITRD_ADDR) == 0 and u32(fw, fwcfg.INITRD_SIZE) == 0


def test_rom_goes_first_in_an_existing_boot_order() -> None:
    fw = fresh()
    fw.add_file("bootorder", b"/pci@i0cf8/scsi@3/disk@0,0\0")
    linuxfw.add_kernel(fw, image(), b"", "", 64 * MiB, ROM)
    order = fw.item(fw.file_key("bootorder") or 0)
    assert order == b"/rom@genroms/linuxboot_dma.bin\n/pci@i0cf8/scsi@3/disk@0,0\0"


@pytest.mark.parametrize(
    ("img", "initrd", "cmdline", "ram", "message"),
    [
        (b"MZ" + bytes(4096), b"", "", 64 * MiB, "not a bzImage"),
        (image(version=0x0205), b"", "", 64 * MiB, "too old"),
        (image(cmdline_size=4), b"", "hello", 64 * MiB, "longer than the kernel's cmdline_size"),
        (image(), b"", "a\0b", 64 * MiB, "NUL byte"),
        (image(init_size=200 * MiB), b"", "", 64 * MiB, "more than RAM holds"),
        (image(), b"x" * (70 * MiB), "", 64 * MiB, "initrd of"),
    ],
)
def test_bad_kernels_are_refused(
    img: bytes, initrd: bytes, cmdline: str, ram: int, message: str
) -> None:
    with pytest.raises(bz.BzImageError, match=message):
        linuxfw.add_kernel(fresh(), img, initrd, cmdline, ram, ROM)


def test_zimage_is_refused() -> None:
    d = bytearray(image())
    d[bz.LOADFLAGS] = 0
    with pytest.raises(bz.BzImageError, match="zImage"):
        linuxfw.add_kernel(fresh(), bytes(d), b"", "", 64 * MiB, ROM)


def test_set_file_replaces_contents_and_keeps_the_directory_sorted() -> None:
    fw = fresh()
    fw.add_file("b", b"1")
    key = fw.set_file("b", b"22")
    assert fw.item(key) == b"22"
    fw.set_file("a", b"3")  # new: added, sorting before "b"
    assert fw.file_key("a") == fwcfg.FILE_FIRST and fw.item(fw.file_key("b") or 0) == b"22"
