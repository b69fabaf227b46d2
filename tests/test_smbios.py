"""SMBIOS tables handed to the firmware through fw_cfg (DMTF DSP0134 2.8; QEMU's
hw/smbios/smbios.c layout; read by SeaBIOS's smbios_romfile_setup)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.machine import smbios
from southbridge.machine.pc import PcConfig, PcMachine

GiB = 1 << 30
MiB = 1 << 20


def parse(table: bytes) -> list[tuple[int, int, bytes, list[bytes]]]:
    """(type, handle, formatted area, strings) per structure, walking as firmware does:
    header length to the string set, then to the double NUL (DSP0134 6.1.3)."""
    out = []
    pos = 0
    while pos < len(table):
        kind, length, handle = struct.unpack_from("<BBH", table, pos)
        assert length >= 4
        body = table[pos + 4 : pos + length]
        end = table.index(b"\0\0", pos + length)
        raw = table[pos + length : end]
        strings = raw.split(b"\0") if raw else []
        out.append((kind, handle, body, strings))
        pos = end + 2
    assert pos == len(table)
    return out


def string(strings: list[bytes], number: int) -> bytes:
    return b"" if number == 0 else strings[number - 1]


def config(**kw: object) -> smbios.SmbiosConfig:
    args: dict[str, object] = {"ram": [(0, 128 * MiB)], "cpus": 2}
    args.update(kw)
    return smbios.SmbiosConfig(**args)  # type: ignore[arg-type]


def test_structures_in_qemu_order_with_qemu_handles() -> None:
    """QEMU: 1, 3, 4 per CPU, 16, 17 per DIMM, 19 per range, 32, 127; handle = type << 8
    (+ instance). No type 0 by default: SeaBIOS adds its own."""
    table = parse(b"".join(smbios.build_tables(config())))
    assert [(k, h) for k, h, _, _ in table] == [
        (1, 0x100),
        (3, 0x300),
        (4, 0x400),
        (4, 0x401),
        (16, 0x1000),
        (17, 0x1100),
        (19, 0x1300),
        (32, 0x2000),
        (127, 0x7F00),
    ]


def test_formatted_lengths_are_the_2_8_lengths() -> None:
    """DSP0134 2.8 lengths: type 1 1Bh, 3 16h (with SKU), 4 2Ah, 16 17h, 17 28h, 19 1Fh,
    32 0Bh, 127 04h."""
    lengths = {k: len(body) + 4 for k, _, body, _ in parse(b"".join(smbios.build_tables(config())))}
    assert lengths == {1: 0x1B, 3: 0x16, 4: 0x2A, 16: 0x17, 17: 0x28, 19: 0x1F, 32: 0x0B, 127: 4}


def test_type1_strings_uuid_and_wakeup() -> None:
    """Type 1: strings 1-3 manufacturer/product/version; UUID's first three fields little-
    endian (7.2.1); wake-up type 06h power switch."""
    uuid = bytes(range(16))
    (_, _, body, strings), *_ = parse(smbios.type1(config(uuid=uuid)))
    assert string(strings, body[0]) == b"southbridge"
    assert string(strings, body[1]) == b"Standard PC (i440FX + PIIX, 1996)"
    assert body[4:20] == bytes([3, 2, 1, 0, 5, 4, 7, 6]) + bytes(range(8, 16))
    assert body[20] == 0x06


def test_type4_per_cpu_socket_and_status() -> None:
    """Type 4: socket "CPU n", central processor (03h), status 41h populated+enabled, CPUID
    signature and features at offset 08h, one core and thread, no cache handles."""
    cfg = config(cpus=3, cpu_signature=0x000906EA, cpu_features=0x178BFBFF)
    procs = [s for s in parse(b"".join(smbios.build_tables(cfg))) if s[0] == 4]
    assert len(procs) == 3
    for n, (_, handle, body, strings) in enumerate(procs):
        assert handle == 0x400 + n
        assert string(strings, body[0]) == f"CPU {n}".encode()
        assert body[1] == 0x03
        assert struct.unpack_from("<II", body, 4) == (0x000906EA, 0x178BFBFF)
        assert body[0x18 - 4] == 0x41
        assert struct.unpack_from("<HHH", body, 0x1A - 4) == (0xFFFF,) * 3
        assert body[0x23 - 4 : 0x26 - 4] == bytes([1, 1, 1])


def test_memory_array_devices_and_mapping() -> None:
    """Types 16/17/19 for 40 GiB: capacity in KiB; DIMMs of at most 16 GiB (QEMU) sizes in
    MiB (7FFFh + extended size from 32 GiB); type 19 KiB bounds with an inclusive end."""
    ram = [(0, 3 * GiB), (4 * GiB, 37 * GiB)]
    table = parse(b"".join(smbios.build_tables(config(ram=ram))))
    (t16,) = [b for k, _, b, _ in table if k == 16]
    assert struct.unpack_from("<I", t16, 3)[0] == 40 * GiB // 1024
    assert struct.unpack_from("<H", t16, 9)[0] == 3
    sizes = [struct.unpack_from("<H", b, 8)[0] for k, _, b, _ in table if k == 17]
    assert sizes == [16 * 1024, 16 * 1024, 8 * 1024]
    maps = [struct.unpack_from("<IIH", b, 0) for k, _, b, _ in table if k == 19]
    assert maps == [
        (0, 3 * GiB // 1024 - 1, 0x1000),
        (4 * GiB // 1024, 41 * GiB // 1024 - 1, 0x1000),
    ]


def test_large_sizes_use_extended_fields() -> None:
    """Type 17 size 7FFFh with extended size (MiB) from 32 GiB - 1 MiB; type 19 FFFF_FFFFh
    bounds with 64-bit byte addresses past 4 TiB; type 16 8000_0000h from 2 TiB."""
    ((_, _, t17, _),) = parse(smbios.type17(0, 64 * GiB))
    assert struct.unpack_from("<H", t17, 8)[0] == 0x7FFF
    assert struct.unpack_from("<I", t17, 0x1C - 4)[0] == 64 * 1024
    ((_, _, t19, _),) = parse(smbios.type19(0, 4 * GiB, 8 << 40))
    assert struct.unpack_from("<IIHBQQ", t19) == (
        0xFFFFFFFF,
        0xFFFFFFFF,
        0x1000,
        1,
        4 * GiB,
        4 * GiB + (8 << 40) - 1,
    )
    ((_, _, t16, _),) = parse(smbios.type16(4 << 40, 1))
    assert struct.unpack_from("<IHHQ", t16, 3) == (0x80000000, 0xFFFE, 1, 4 << 40)


def test_type0_only_when_asked() -> None:
    """A type 0 (BIOS information) is built only when a vendor is configured; it starts at
    segment F000h and sets "BIOS characteristics not supported" (bit 3)."""
    table = parse(b"".join(smbios.build_tables(config(bios_vendor="southbridge"))))
    kind, handle, body, strings = table[0]
    assert (kind, handle) == (0, 0)
    assert string(strings, body[0]) == b"southbridge"
    assert struct.unpack_from("<H", body, 2)[0] == 0xF000
    assert struct.unpack_from("<Q", body, 6)[0] == 1 << 3


def test_entry_point_describes_table_and_checksums() -> None:
    """2.1 entry point (5.2.1): "_SM_", length 1Fh, version 2.8, "_DMI_" at 10h; both the
    whole and the intermediate (10h-1Eh) checksums sum to zero; table length, max structure
    size and count match the table, as SeaBIOS checks (f_tables->size == length)."""
    files = smbios.fw_cfg_files(config())
    ep, table = files[smbios.ANCHOR_FILE], files[smbios.TABLES_FILE]
    assert len(ep) == 0x1F
    f = smbios.ANCHOR.unpack(ep)
    assert f[0] == b"_SM_" and f[2] == 0x1F and (f[3], f[4]) == (2, 8) and f[8] == b"_DMI_"
    assert sum(ep) & 0xFF == 0
    assert sum(ep[0x10:]) & 0xFF == 0
    structures = smbios.build_tables(config())
    assert f[10] == len(table)
    assert f[5] == max(len(s) for s in structures)
    assert f[12] == len(structures) == len(parse(table))
    assert f[13] == 0x28


def test_structure_without_strings_ends_in_two_nuls() -> None:
    """6.1.3: a structure with no strings is followed by two NULs."""
    assert smbios.type127() == bytes([127, 4, 0x00, 0x7F, 0, 0])


@settings(max_examples=40, deadline=None)
@given(
    ram_mb=st.integers(min_value=1, max_value=1 << 20),
    cpus=st.integers(min_value=1, max_value=64),
    name=st.text(max_size=40),
)
def test_any_machine_gives_a_walkable_table(ram_mb: int, cpus: int, name: str) -> None:
    """Any memory size, CPU count and strings (non-ASCII replaced): the table walks to its
    end, ends with type 127, and the entry point's checksums hold."""
    files = smbios.fw_cfg_files(config(ram=[(0, ram_mb * MiB)], cpus=cpus, manufacturer=name))
    table = parse(files[smbios.TABLES_FILE])
    assert table[-1][0] == 127
    assert sum(1 for s in table if s[0] == 4) == cpus
    dimm_mib = 0
    for kind, _, body, _ in table:
        if kind == 17:
            small = struct.unpack_from("<H", body, 8)[0]
            dimm_mib += struct.unpack_from("<I", body, 0x18)[0] if small == 0x7FFF else small
    assert dimm_mib == ram_mb  # the DIMMs add up to the RAM
    ep = files[smbios.ANCHOR_FILE]
    assert sum(ep) & 0xFF == 0 and smbios.ANCHOR.unpack(ep)[10] == len(files[smbios.TABLES_FILE])


def test_pc_machine_offers_the_files_on_fw_cfg() -> None:
    """The pc machine lists both files in the fw_cfg directory, for its RAM and CPU count."""
    m = PcMachine(PcConfig(memory_mb=64, smp=2), with_ram=False)
    fw = m.fw_cfg
    key = fw.file_key(smbios.TABLES_FILE)
    assert key is not None and fw.file_key(smbios.ANCHOR_FILE) is not None
    data = fw.item(key)
    assert data is not None
    table = parse(data)
    assert sum(1 for s in table if s[0] == 4) == 2
    (t19,) = [b for k, _, b, _ in table if k == 19]
    assert struct.unpack_from("<II", t19) == (0, 64 * 1024 - 1)
