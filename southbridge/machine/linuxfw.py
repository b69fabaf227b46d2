"""A Linux kernel handed to the firmware through fw_cfg, as QEMU's x86_load_linux does for
`-bios` with `-kernel`: SeaBIOS runs the `linuxboot_dma.bin` option ROM (Debian's
qemu-system-data), which reads the setup code, the kernel, the initrd and the command line
from fw_cfg by DMA, and jumps to the real-mode setup with the BIOS still in place.

QEMU's layout for a protocol >= 2.02 kernel loaded high: setup (the boot sector and the
real-mode code, with the loader's fields filled in) at 0x10000, the command line at
0x20000, the protected-mode kernel at 1 MiB, the initrd page aligned as high as
`initrd_addr_max` allows below the top of RAM less the area the firmware keeps for its
ACPI tables. type_of_loader 0xB0 is QEMU's id ("Qemu", boot.rst's table).
"""

from __future__ import annotations

import struct

from southbridge.devices import fwcfg
from southbridge.machine import bzimage
from southbridge.machine.bzimage import BzImageError

REAL_ADDR = 0x10000
CMDLINE_ADDR = 0x20000
PROT_ADDR = 0x100000
LOADER_QEMU = 0xB0
# QEMU's pc keeps the initrd out of the top 160 KiB of RAM below 4 GiB, where SeaBIOS puts
# its ACPI tables and high allocations (pc.c acpi_data_size = 0x20000 + 0x8000).
FIRMWARE_DATA_SIZE = 0x28000
PAGE = 4096
ROM_NAME = "genroms/linuxboot_dma.bin"
BOOT_PATH = "/rom@" + ROM_NAME  # the bootorder entry QEMU writes for the ROM (bootindex 0)


def add_kernel(
    fw: fwcfg.FwCfg,
    image: bytes,
    initrd: bytes,
    cmdline: str,
    ram_below_4g: int,
    option_rom: bytes,
    name: str = "kernel",
) -> None:
    """Check the bzImage and put it, its initrd and command line and the option ROM that
    loads them into `fw`; the ROM boots first (bootorder)."""
    h = bzimage.parse_header(image, name)
    if not h.loadflags & bzimage.LOADED_HIGH:
        raise BzImageError(f"{name}: a zImage (not loaded high) is not supported")
    line = bzimage.check_cmdline(h, cmdline, name)
    setup_size = (h.setup_sects + 1) * 512
    kernel = image[setup_size:]
    if PROT_ADDR + max(len(kernel), h.init_size) > ram_below_4g:
        raise BzImageError(
            f"{name}: kernel needs {max(len(kernel), h.init_size)} bytes from 1 MiB, more "
            f"than RAM holds; use more memory"
        )
    initrd_addr = 0
    if initrd:
        initrd_max = min(h.initrd_addr_max, ram_below_4g - FIRMWARE_DATA_SIZE - 1)
        initrd_addr = (initrd_max + 1 - len(initrd)) & ~(PAGE - 1)
        if initrd_addr < PROT_ADDR + h.init_size:
            raise BzImageError(
                f"{name}: initrd of {len(initrd)} bytes does not fit in RAM below "
                f"0x{initrd_max + 1:x} above the kernel; use more memory"
            )
    setup = bytearray(image[:setup_size])
    setup[bzimage.TYPE_OF_LOADER] = LOADER_QEMU
    setup[bzimage.LOADFLAGS] |= bzimage.CAN_USE_HEAP
    struct.pack_into("<H", setup, bzimage.HEAP_END_PTR, CMDLINE_ADDR - REAL_ADDR - 0x200)
    struct.pack_into("<I", setup, bzimage.CMD_LINE_PTR, CMDLINE_ADDR)
    struct.pack_into("<II", setup, bzimage.RAMDISK_IMAGE, initrd_addr, len(initrd))
    fw.add_i32(fwcfg.KERNEL_ADDR, PROT_ADDR)
    fw.add_i32(fwcfg.KERNEL_SIZE, len(kernel))
    fw.add_bytes(fwcfg.KERNEL_DATA, kernel)
    fw.add_i32(fwcfg.INITRD_ADDR, initrd_addr)
    fw.add_i32(fwcfg.INITRD_SIZE, len(initrd))
    fw.add_bytes(fwcfg.INITRD_DATA, initrd)
    fw.add_i32(fwcfg.CMDLINE_ADDR, CMDLINE_ADDR)
    fw.add_i32(fwcfg.CMDLINE_SIZE, len(line) + 1)
    fw.add_bytes(fwcfg.CMDLINE_DATA, line + b"\0")
    fw.add_i32(fwcfg.SETUP_ADDR, REAL_ADDR)
    fw.add_i32(fwcfg.SETUP_SIZE, setup_size)
    fw.add_bytes(fwcfg.SETUP_DATA, bytes(setup))
    fw.add_file(ROM_NAME, option_rom)
    prepend_boot_path(fw, BOOT_PATH)


def prepend_boot_path(fw: fwcfg.FwCfg, path: str) -> None:
    """Put `path` first in SeaBIOS's `bootorder` file (one Open Firmware path a line,
    NUL-terminated as QEMU writes it), keeping the entries already there."""
    key = fw.file_key("bootorder")
    old = b"" if key is None else (fw.item(key) or b"").rstrip(b"\0")
    lines = [path.encode(), *(x for x in old.split(b"\n") if x and x != path.encode())]
    fw.set_file("bootorder", b"\n".join(lines) + b"\0")
