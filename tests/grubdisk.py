"""A bootable raw disk built at test time from Debian's GRUB (grub-pc-bin) and mtools.

Sector 0: GRUB's boot.img with an MBR partition table; sectors 1..: a minimal core image
(diskboot.img's blocklist defaults to the sectors right after it, so no grub-bios-setup is
needed); partition 1 from sector 2048: a FAT filesystem holding grub.cfg. The embedded
config prints on COM1 through GRUB's own serial terminal, prints grub.cfg with `cat`, and
ends the run through isa-debug-exit (`outb 0xf4`), which southbridge maps to an exit status.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

GRUB_DIR = Path("/usr/lib/grub/i386-pc")
MODULES = ["biosdisk", "part_msdos", "fat", "serial", "terminal", "echo", "cat", "iorw"]
PART_START = 2048
PART_SECTORS = 8192
EXIT_VALUE = 0x21  # exit status (0x21 << 1) | 1 = 67
MARKER = "southbridge-grub-cfg"


def missing_tools() -> str | None:
    for tool in ("grub-mkimage", "mformat", "mcopy"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup installs grub-pc-bin and mtools)"
    if not (GRUB_DIR / "boot.img").is_file():
        return "GRUB's i386-pc files are missing (grub-pc-bin)"
    return None


def build(tmp: Path, kernel: Path | None = None, module: bytes = b"") -> Path:
    """The disk; with `kernel` (a Multiboot ELF) GRUB loads it and `module` from the FAT
    partition and boots it instead of exiting itself."""
    early = tmp / "early.cfg"
    script = (
        "serial --unit=0 --speed=115200\n"
        "terminal_output serial\n"
        "echo southbridge-grub-start\n"
        "cat (hd0,msdos1)/grub.cfg\n"
    )
    if kernel is None:
        script += f"outb 0xf4 {EXIT_VALUE}\n"
    else:
        script += (
            "multiboot (hd0,msdos1)/kernel.elf\nmodule (hd0,msdos1)/module.bin module-arg\nboot\n"
        )
    early.write_text(script)
    core = tmp / "core.img"
    subprocess.run(
        [
            *("grub-mkimage", "-O", "i386-pc", "-d", str(GRUB_DIR), "-o", str(core)),
            *("-c", str(early), "-p", "(hd0,msdos1)/"),
            *MODULES,
            *(["multiboot", "boot"] if kernel is not None else []),
        ],
        check=True,
        capture_output=True,
    )
    core_bytes = core.read_bytes()
    if len(core_bytes) > (PART_START - 1) * 512:
        raise RuntimeError("GRUB core image does not fit the MBR gap")
    part = tmp / "part.img"
    part.write_bytes(bytes(PART_SECTORS * 512))
    subprocess.run(["mformat", "-i", str(part), "-v", "SB", "::"], check=True)
    cfg = tmp / "grub.cfg"
    cfg.write_text(f"# {MARKER}\nmenuentry test {{ true }}\n")
    subprocess.run(["mcopy", "-i", str(part), str(cfg), "::grub.cfg"], check=True)
    if kernel is not None:
        mod = tmp / "module.bin"
        mod.write_bytes(module)
        for src, name in ((kernel, "kernel.elf"), (mod, "module.bin")):
            subprocess.run(["mcopy", "-i", str(part), str(src), f"::{name}"], check=True)
    mbr = bytearray((GRUB_DIR / "boot.img").read_bytes())
    # One primary partition, FAT16 (<32M), LBA start/size; CHS fields left as 0xFE/0xFF.
    entry = struct.pack(
        "<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x06, b"\xfe\xff\xff", PART_START, PART_SECTORS
    )
    # boot.img keeps floppy-probe code where the table goes: clear all four entries.
    mbr[446:510] = entry + bytes(48)
    mbr[510:512] = b"\x55\xaa"
    disk = tmp / "grub-disk.img"
    with disk.open("wb") as f:
        f.write(mbr)
        f.write(core_bytes)
        f.seek(PART_START * 512)
        f.write(part.read_bytes())
    return disk
