"""CMOS NVRAM contents a PC BIOS expects, filled like QEMU's pc_cmos_init (hw/i386/pc.c)
and set_boot_dev: memory sizes, equipment, boot order, CPU count, and the AT checksum of
0x10-0x2D. The RTC keeps the century byte (0x32) itself, from its time base.

| bytes      | meaning (QEMU's rule)                                                     |
|------------|---------------------------------------------------------------------------|
| 0x15/0x16  | base memory in KiB: min(RAM below 4 GiB, 640 KiB)                         |
| 0x17/0x18  | KiB above 1 MiB, at most 0xFFFF (the same at 0x30/0x31)                   |
| 0x34/0x35  | 64 KiB units between 16 MiB and 4 GiB, at most 0xFFFF                     |
| 0x5B-0x5D  | 64 KiB units above 4 GiB (three bytes)                                    |
| 0x5F       | number of CPUs - 1                                                        |
| 0x3D       | boot devices 1 (low nibble) and 2 (high): a=1 floppy, c=2 disk, d=3 CD, n=4 |
| 0x38       | boot device 3 (high nibble); bit 0 set = skip the floppy signature check  |
| 0x14       | equipment: FPU present (bit 1), PS/2 mouse (bit 2), no floppy drives      |

One deliberate difference: QEMU leaves the AT checksum at 0x2E/0x2F zero; we write it, as a
PC's setup utility does, so firmware that verifies it (the IBM AT BIOS does) accepts it.
"""

from __future__ import annotations

from typing import Protocol

KiB = 1024
MiB = 1 << 20
BOOT_CODES = {"a": 1, "c": 2, "d": 3, "n": 4}  # floppy, hard disk, CD-ROM, network


class Cmos(Protocol):
    def cmos_set(self, index: int, value: int) -> None: ...

    def cmos_get(self, index: int) -> int: ...


def fill_cmos(
    rtc: Cmos,
    ram_below_4g: int,
    ram_above_4g: int = 0,
    cpus: int = 1,
    boot: str = "cad",
    fd_bootchk: bool = True,
) -> None:
    """Write the BIOS's view of the machine into `rtc`'s NVRAM (QEMU defaults: boot order
    "cad", floppy signature check on)."""
    base = min(ram_below_4g // KiB, 640)
    rtc.cmos_set(0x15, base & 0xFF)
    rtc.cmos_set(0x16, base >> 8)
    ext = min(max(ram_below_4g - MiB, 0) // KiB, 0xFFFF)  # KiB above 1 MiB
    for lo in (0x17, 0x30):
        rtc.cmos_set(lo, ext & 0xFF)
        rtc.cmos_set(lo + 1, ext >> 8)
    above16 = min(max(ram_below_4g - 16 * MiB, 0) // (64 * KiB), 0xFFFF)
    rtc.cmos_set(0x34, above16 & 0xFF)
    rtc.cmos_set(0x35, above16 >> 8)
    high = ram_above_4g // (64 * KiB)
    for i in range(3):
        rtc.cmos_set(0x5B + i, (high >> (8 * i)) & 0xFF)
    rtc.cmos_set(0x5F, max(cpus - 1, 0) & 0xFF)
    codes = [BOOT_CODES.get(c, 0) for c in boot[:3].ljust(3, "\0")]
    rtc.cmos_set(0x3D, (codes[1] << 4) | codes[0])
    rtc.cmos_set(0x38, (codes[2] << 4) | (0 if fd_bootchk else 1))
    rtc.cmos_set(0x14, 0x06)
    rtc.cmos_set(0x10, 0)  # no floppy drives
    rtc.cmos_set(0x12, 0)  # no ISA hard disks
    checksum = sum(rtc.cmos_get(i) for i in range(0x10, 0x2E)) & 0xFFFF
    rtc.cmos_set(0x2E, checksum >> 8)
    rtc.cmos_set(0x2F, checksum & 0xFF)
