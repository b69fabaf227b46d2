"""CMOS NVRAM contents a PC BIOS expects, filled like QEMU's pc_cmos_init (hw/i386/pc.c):
memory sizes, equipment, boot order, CPU count and the checksum of 0x10-0x2D."""

from __future__ import annotations

from typing import Protocol

KiB = 1024
MiB = 1 << 20

BOOT_CODES = {"a": 1, "c": 2, "d": 3, "n": 4}  # floppy, hard disk, CD-ROM, network


class Cmos(Protocol):
    def cmos_set(self, index: int, value: int) -> None: ...

    def cmos_get(self, index: int) -> int: ...


def fill_cmos(
    rtc: Cmos, ram_below_4g: int, ram_above_4g: int = 0, cpus: int = 1, boot: str = "cad"
) -> None:
    """Write the BIOS's view of the machine into `rtc`'s NVRAM."""
    rtc.cmos_set(0x15, (640 & 0xFF))  # base memory: 640 KiB
    rtc.cmos_set(0x16, 640 >> 8)
    ext = min(max(ram_below_4g // KiB - 1024, 0), 0xFFFF)  # KiB above 1 MiB
    for lo in (0x17, 0x30):
        rtc.cmos_set(lo, ext & 0xFF)
        rtc.cmos_set(lo + 1, ext >> 8)
    above16 = min(max((ram_below_4g - 16 * MiB) // (64 * KiB), 0), 0xFFFF)
    rtc.cmos_set(0x34, above16 & 0xFF)  # 64 KiB units between 16 MiB and 4 GiB
    rtc.cmos_set(0x35, above16 >> 8)
    high = ram_above_4g // (64 * KiB)  # 64 KiB units above 4 GiB, three bytes
    for i in range(3):
        rtc.cmos_set(0x5B + i, (high >> (8 * i)) & 0xFF)
    rtc.cmos_set(0x5F, max(cpus - 1, 0))
    codes = [BOOT_CODES.get(c, 0) for c in boot[:3].ljust(3, "\0")]
    rtc.cmos_set(0x3D, (codes[1] << 4) | codes[0])
    rtc.cmos_set(0x38, (codes[2] << 4) | 0x1)  # bit 0: skip the floppy boot-sector check
    rtc.cmos_set(0x14, 0x06)  # equipment: FPU present, PS/2 mouse
    rtc.cmos_set(0x10, 0)  # no floppy drives
    rtc.cmos_set(0x12, 0)  # no ISA hard disks
    checksum = sum(rtc.cmos_get(i) for i in range(0x10, 0x2E)) & 0xFFFF
    rtc.cmos_set(0x2E, checksum >> 8)
    rtc.cmos_set(0x2F, checksum & 0xFF)
