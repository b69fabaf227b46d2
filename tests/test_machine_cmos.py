"""The pc machine's CMOS NVRAM, filled like QEMU's pc_cmos_init / set_boot_dev (hw/i386/pc.c).

The expected bytes were read from QEMU 7.2 (Debian's qemu-system-x86_64 -M pc, -nodefaults)
by a guest that dumped CMOS 0x00-0x7F through ports 0x70/0x71 to debugcon; they are read
here the same way, through the port bus."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.machine.cmos import fill_cmos
from southbridge.machine.pc import MiB, PcConfig, PcMachine

# QEMU 7.2 -m 16 / -m 128 (one CPU, boot order "cad"): index -> value.
QEMU_CMOS = {
    16: {
        0x10: 0x00, 0x12: 0x00, 0x14: 0x06, 0x15: 0x80, 0x16: 0x02, 0x17: 0x00, 0x18: 0x3C,
        0x30: 0x00, 0x31: 0x3C, 0x32: 0x20, 0x34: 0x00, 0x35: 0x00, 0x38: 0x30, 0x3D: 0x12,
        0x5B: 0x00, 0x5C: 0x00, 0x5D: 0x00, 0x5F: 0x00,
    },
    128: {
        0x10: 0x00, 0x12: 0x00, 0x14: 0x06, 0x15: 0x80, 0x16: 0x02, 0x17: 0xFF, 0x18: 0xFF,
        0x30: 0xFF, 0x31: 0xFF, 0x32: 0x20, 0x34: 0x00, 0x35: 0x07, 0x38: 0x30, 0x3D: 0x12,
        0x5B: 0x00, 0x5C: 0x00, 0x5D: 0x00, 0x5F: 0x00,
    },
}  # fmt: skip


def cmos_read(m: PcMachine, index: int) -> int:
    """MC146818: write the index to 0x70 (bit 7 is the NMI mask), read the byte at 0x71."""
    m.ports.write(0x70, 1, index)
    return m.ports.read(0x71, 1)


@pytest.mark.parametrize("memory_mb", sorted(QEMU_CMOS))
def test_cmos_bytes_equal_qemus_for_the_same_memory(memory_mb: int) -> None:
    """A new pc machine's NVRAM holds what QEMU's pc machine holds: base memory 640 KiB
    (0x15/16), KiB above 1 MiB saturating at 0xFFFF (0x17/18 = 0x30/31), 64 KiB units above
    16 MiB (0x34/35), none above 4 GiB (0x5B-5D), CPUs - 1 (0x5F), boot order c, a, d with
    the floppy signature check on (0x3D = 0x12, 0x38 = 0x30), FPU + PS/2 mouse (0x14) and
    the century 20 in BCD (0x32, kept by the RTC)."""
    m = PcMachine(PcConfig(memory_mb=memory_mb, rtc_base="2026-11-24T19:00:00"))
    got = {i: cmos_read(m, i) for i in QEMU_CMOS[memory_mb]}
    assert got == QEMU_CMOS[memory_mb]


def test_cpu_count_and_memory_above_4g() -> None:
    """QEMU -m 4096 (-M pc: 3 GiB below 4 GiB, 1 GiB above) reads 0x34/35 = 0xBF00 and
    0x5B-5D = 0x004000 (64 KiB units); -smp 4 gives 0x5F = 3."""
    m = PcMachine(PcConfig(memory_mb=16))
    fill_cmos(m.rtc, 0xC0000000, 1 << 30, cpus=4)
    assert (cmos_read(m, 0x34), cmos_read(m, 0x35)) == (0x00, 0xBF)
    assert [cmos_read(m, i) for i in (0x5B, 0x5C, 0x5D)] == [0x00, 0x40, 0x00]
    assert cmos_read(m, 0x5F) == 3
    assert [cmos_read(m, i) for i in (0x17, 0x18, 0x30, 0x31)] == [0xFF] * 4


def test_boot_order_and_floppy_check_bits() -> None:
    """set_boot_dev: 0x3D = second << 4 | first, 0x38 = third << 4 | (check ? 0 : 1), with
    a=1 floppy, c=2 disk, d=3 CD-ROM, n=4 network."""
    m = PcMachine(PcConfig(memory_mb=16))
    fill_cmos(m.rtc, 16 * MiB, boot="ndc", fd_bootchk=False)
    assert (cmos_read(m, 0x3D), cmos_read(m, 0x38)) == (0x34, 0x21)


def test_at_checksum_covers_0x10_to_0x2d() -> None:
    """IBM AT: 0x2E/0x2F hold the 16-bit sum of 0x10-0x2D, high byte first (QEMU leaves them
    zero; we write it, as a PC's setup does)."""
    m = PcMachine(PcConfig(memory_mb=128))
    total = sum(cmos_read(m, i) for i in range(0x10, 0x2E))
    assert cmos_read(m, 0x2E) << 8 | cmos_read(m, 0x2F) == total


@settings(max_examples=60, deadline=None)
@given(
    below=st.integers(0, 0xE0000000),
    above=st.integers(0, 1 << 40),
    cpus=st.integers(1, 256),
    boot=st.text(alphabet="acdnx", max_size=4),
)
def test_any_configuration_fills_bytes_in_range(
    below: int, above: int, cpus: int, boot: str
) -> None:
    """Any memory size, CPU count or boot string gives byte values the NVRAM accepts (never
    raises) and sizes that decode back within one unit of what was asked."""
    m = PcMachine(PcConfig(memory_mb=16))
    fill_cmos(m.rtc, below, above, cpus=cpus, boot=boot)
    get = m.rtc.cmos_get
    assert get(0x15) | get(0x16) << 8 == min(below // 1024, 640)
    assert get(0x30) | get(0x31) << 8 == min(max(below - MiB, 0) // 1024, 0xFFFF)
    assert get(0x34) | get(0x35) << 8 == min(max(below - 16 * MiB, 0) >> 16, 0xFFFF)
    assert get(0x5B) | get(0x5C) << 8 | get(0x5D) << 16 == (above >> 16) & 0xFFFFFF
    assert get(0x5F) == (cpus - 1) & 0xFF


def test_filled_nvram_survives_save_and_restore() -> None:
    """The RTC's saved state carries the NVRAM: a fresh machine restored from it reads the
    same CMOS bytes (0x0E-0x7F) as the one that was saved."""
    src = PcMachine(PcConfig(memory_mb=128))
    fill_cmos(src.rtc, 64 * MiB, cpus=2, boot="dcn")
    dst = PcMachine(PcConfig(memory_mb=16))
    dst.rtc.restore(src.rtc.save())
    assert [cmos_read(dst, i) for i in range(0x0E, 0x80)] == [
        cmos_read(src, i) for i in range(0x0E, 0x80)
    ]
