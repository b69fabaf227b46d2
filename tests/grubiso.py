"""A bootable El Torito ISO built at test time with Debian's grub-mkrescue (grub-pc-bin,
xorriso): GRUB's no-emulation boot image reads the ISO9660 filesystem through the BIOS
(SeaBIOS's int 13h on our ATAPI CD-ROM), loads its modules and grub.cfg from it, prints on
COM1 through its own serial terminal, shows a menu, `cat`s a file from the ISO and ends the
run through isa-debug-exit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.grubdisk import GRUB_DIR

EXIT_VALUE = 0x22  # exit status (0x22 << 1) | 1 = 69
MARKER = "southbridge-iso9660-file"


def missing_tools() -> str | None:
    for tool in ("grub-mkrescue", "xorriso"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup installs grub-pc-bin and xorriso)"
    if not (GRUB_DIR / "cdboot.img").is_file():
        return "GRUB's i386-pc files are missing (grub-pc-bin)"
    return None


def build(tmp: Path) -> Path:
    root = tmp / "iso"
    (root / "boot" / "grub").mkdir(parents=True)
    (root / "marker.txt").write_text(f"{MARKER}\n")
    (root / "boot" / "grub" / "grub.cfg").write_text(
        "serial --unit=0 --speed=115200\n"
        "terminal_input serial\n"
        "terminal_output serial\n"
        "echo southbridge-iso-start\n"
        "cat /marker.txt\n"
        "set timeout=0\n"
        f'menuentry "southbridge exit" {{ outb 0xf4 {EXIT_VALUE} }}\n'
    )
    iso = tmp / "grub.iso"
    subprocess.run(
        [
            *("grub-mkrescue", "-d", str(GRUB_DIR), "-o", str(iso)),
            "--install-modules=serial terminal echo cat iorw iso9660 biosdisk normal",
            "--fonts=",
            "--locales=",
            "--themes=",
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    return iso
