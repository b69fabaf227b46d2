"""What firmware expects of a PC beyond the devices: PAM shadowing of 0xC0000-0xFFFFF
(82441FX datasheet 3.2.18) and the CMOS bytes QEMU's pc_cmos_init writes. CPU-less: the
effects are checked through the machine's address space."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.kvm.loader import map_bios
from southbridge.machine.cmos import fill_cmos
from southbridge.machine.pam import SEGMENTS, PamShadow
from southbridge.machine.pc import MiB, PcConfig, PcMachine


def _pc(memory_mb: int = 128) -> tuple[PcMachine, PamShadow, bytes]:
    m = PcMachine(PcConfig(memory_mb=memory_mb))
    image = bytes((i * 13 + 5) & 0xFF for i in range(128 * 1024))
    map_bios(m, image)
    shadow = PamShadow(m.memory)
    m.i440fx.on_pam.append(shadow.set_pam)
    return m, shadow, image


def _pam_write(m: PcMachine, index: int, value: int) -> None:
    """Through the guest's path: PCI config mechanism #1 to 00:00.0 register 0x59+index."""
    reg = 0x59 + index
    m.ports.write(0xCF8, 4, 0x80000000 | (reg & 0xFC))
    m.ports.write(0xCFC + (reg & 3), 1, value)


def test_after_reset_the_bios_window_reads_the_rom() -> None:
    """PAM = 0 (reset): 0xE0000-0xFFFFF decodes to the BIOS ROM, not DRAM."""
    m, _, image = _pc()
    assert m.space.read_bytes(0xF0000, 16) == image[0x10000:0x10010]
    assert m.space.read_bytes(0xE0000, 16) == image[:16]
    m.space.write(0xF0000, 4, 0)
    assert m.space.read_bytes(0xF0000, 4) == image[0x10000:0x10004]  # ROM: write dropped


def test_option_rom_area_is_empty_with_pam_disabled() -> None:
    m, _, _ = _pc()
    assert m.space.read(0xC0000, 4) == 0xFFFFFFFF


def test_read_write_pam_exposes_writable_shadow_dram() -> None:
    """RE=WE=1: DRAM. SeaBIOS copies itself from the 4 GiB alias into it."""
    m, shadow, _ = _pc()
    _pam_write(m, 0, 0x30)
    assert shadow.mode(0xF0000) == 3
    m.space.write(0xF0000, 4, 0x12345678)
    assert m.space.read(0xF0000, 4) == 0x12345678


def test_read_only_pam_keeps_dram_contents_and_drops_writes() -> None:
    """RE=1 WE=0: reads DRAM, writes go to PCI (the ROM ignores them)."""
    m, _, _ = _pc()
    _pam_write(m, 0, 0x30)
    m.space.write(0xF0000, 4, 0xCAFEBABE)
    _pam_write(m, 0, 0x10)
    m.space.write(0xF0000, 4, 0)
    assert m.space.read(0xF0000, 4) == 0xCAFEBABE


def test_dram_survives_switching_back_to_rom_and_again() -> None:
    m, _, image = _pc()
    _pam_write(m, 5, 0x33)  # 0xE0000 and 0xE4000
    m.space.write(0xE4000, 2, 0xBEEF)
    _pam_write(m, 5, 0x00)
    assert m.space.read_bytes(0xE4000, 2) == image[0x4000:0x4002]
    _pam_write(m, 5, 0x30)  # only the high nibble: 0xE4000 back to DRAM
    assert m.space.read(0xE4000, 2) == 0xBEEF
    assert m.space.read_bytes(0xE0000, 2) == image[:2]


def test_each_change_notifies_the_vm_once() -> None:
    m, shadow, _ = _pc()
    calls: list[int] = []
    shadow.on_change = lambda: calls.append(1)
    _pam_write(m, 1, 0x33)
    _pam_write(m, 1, 0x33)  # no change: no re-map
    assert calls == [1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 255)), max_size=20))
def test_any_pam_sequence_keeps_the_window_consistent(writes: list[tuple[int, int]]) -> None:
    """Invariant: every segment is backed as its PAM nibble says, regions never overlap,
    and RAM outside the window is untouched."""
    m, shadow, _ = _pc(16)
    for index, value in writes:
        _pam_write(m, index, value)
    for reg, shift, base, _size in SEGMENTS:
        mode = (m.i440fx.pam(reg) >> shift) & 3
        assert shadow.mode(base) == mode
        region = m.memory.find(base)
        if mode:
            assert region is not None and region.name.startswith("shadow")
            assert region.readonly == (mode == 1)
        elif base >= 0xE0000:
            assert region is not None and region.readonly and region.name.startswith("rom")
        else:
            assert region is None
    spans = sorted((r.gpa, r.end) for r in m.memory.regions)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    assert m.memory.find(0) is not None and m.memory.find(MiB) is not None


def test_cmos_memory_bytes_like_qemu() -> None:
    """pc_cmos_init: 0x15/16 base KiB, 0x17/18 = 0x30/31 KiB above 1 MiB (max 0xFFFF),
    0x34/35 64 KiB units above 16 MiB, 0x5B-5D above 4 GiB, 0x5F CPUs - 1."""
    m = PcMachine(PcConfig(memory_mb=128))
    fill_cmos(m.rtc, 128 * MiB, cpus=2)
    get = m.rtc.cmos_get
    assert (get(0x15), get(0x16)) == (0x80, 0x02)  # 640 KiB
    assert get(0x17) | get(0x18) << 8 == 0xFFFF  # 127 MiB in KiB saturates
    assert get(0x30) | get(0x31) << 8 == 0xFFFF
    assert get(0x34) | get(0x35) << 8 == (128 - 16) * 16
    assert (get(0x5B), get(0x5C), get(0x5D)) == (0, 0, 0)
    assert get(0x5F) == 1
    assert (get(0x3D), get(0x38)) == (0x12, 0x30)  # boot order c, a, d; floppy check on
    checksum = sum(get(i) for i in range(0x10, 0x2E))
    assert get(0x2E) << 8 | get(0x2F) == checksum


def test_cmos_small_memory() -> None:
    m = PcMachine(PcConfig(memory_mb=8))
    fill_cmos(m.rtc, 8 * MiB)
    get = m.rtc.cmos_get
    assert get(0x17) | get(0x18) << 8 == 7 * 1024
    assert get(0x34) | get(0x35) << 8 == 0
