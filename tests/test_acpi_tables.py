"""The pc's ACPI tables (ACPI 6.5 chapter 5): read back through the fw_cfg table-loader as
SeaBIOS runs it and as `acpi.boot.install` writes them, each checksum, the MADT against the
CPU count and the FADT against the PIIX4 PM function's registers; and checked by a real
ACPI tool, iasl from Debian's acpica-tools."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from southbridge.machine.acpi import boot
from southbridge.machine.acpi import tableloader as tl
from southbridge.machine.acpi.build import PM_BASE, AcpiConfig, build
from southbridge.machine.pc import MiB, PcConfig, PcMachine
from southbridge.pci import piix4pm as pm
from tests.acpitables import Memory, run_loader, walk

HIGH, FSEG = 0x07F00000, 0x000F5000


def _seabios_tables(m: PcMachine) -> tuple[bytes, dict[bytes, bytes], dict[bytes, int]]:
    """What SeaBIOS sees: the three fw_cfg files, the loader run over them."""
    files = {}
    for name in (tl.TABLES_FILE, tl.RSDP_FILE, tl.LOADER_FILE):
        key = m.fw_cfg.file_key(name)
        assert key is not None, f"{name} is not in fw_cfg"
        data = m.fw_cfg.item(key)
        assert data is not None
        files[name] = data
    placed = run_loader(files, files[tl.LOADER_FILE], HIGH, FSEG)
    mem = Memory()
    for addr, placed_data in placed.values():
        mem.write_bytes(addr, bytes(placed_data))
    return walk(mem.read, placed[tl.RSDP_FILE][0])


def _machine(**kw: object) -> PcMachine:
    return PcMachine(PcConfig(**kw))  # type: ignore[arg-type]


def test_fw_cfg_has_the_tables_only_with_acpi() -> None:
    assert _machine().fw_cfg.file_key(tl.LOADER_FILE) is not None
    m = _machine(acpi=False)
    assert m.acpi_tables is None
    assert all(m.fw_cfg.file_key(f) is None for f in (tl.TABLES_FILE, tl.RSDP_FILE))


def test_loader_entries_are_128_bytes_allocate_first() -> None:
    """bios-linker-loader: ALLOCATE precedes every use of a file; the RSDP goes to the F
    segment (where an OS scans for it), the tables to high memory, 64-byte aligned."""
    loader = _machine().acpi_tables
    assert loader is not None
    raw = loader.loader_bytes()
    assert len(raw) % 128 == 0
    commands = [struct.unpack_from("<I", raw, at)[0] for at in range(0, len(raw), 128)]
    assert commands[:2] == [tl.CMD_ALLOCATE, tl.CMD_ALLOCATE]
    assert set(commands[2:]) == {tl.CMD_ADD_POINTER, tl.CMD_ADD_CHECKSUM}
    tables = struct.unpack_from("<56sIB", raw, 4)
    rsdp = struct.unpack_from("<56sIB", raw, 132)
    assert tables == (tl.TABLES_FILE.encode().ljust(56, b"\0"), 64, tl.ZONE_HIGH)
    assert rsdp == (tl.RSDP_FILE.encode().ljust(56, b"\0"), 16, tl.ZONE_FSEG)


@pytest.mark.parametrize("install", [False, True])
def test_every_checksum_sums_to_zero(install: bool) -> None:
    """5.2.5.3: RSDP checksum over 20 bytes and extended checksum over 36; 5.2.6: each
    table's bytes sum to 0 (the FACS has none)."""
    m = _machine(smp=2, extra={"pci_ecam_base": 0xB0000000})
    if install:
        rsdp, tables, _ = walk(m.space.read_bytes, boot.install(m, 0x10_0000))
    else:
        rsdp, tables, _ = _seabios_tables(m)
    assert rsdp[15] == 2 and sum(rsdp[:20]) & 0xFF == 0 and sum(rsdp) & 0xFF == 0
    assert struct.unpack_from("<I", rsdp, 20)[0] == 36
    assert set(tables) == {b"XSDT", b"RSDT", b"FACP", b"APIC", b"HPET", b"MCFG", b"DSDT", b"FACS"}
    for sig, data in tables.items():
        if sig != b"FACS":
            assert sum(data) & 0xFF == 0, sig


def test_install_and_seabios_see_the_same_bytes_apart_from_addresses() -> None:
    """Both paths run the same commands: placed at the same address they are identical."""
    linker = build(AcpiConfig(cpus=2, ram_below_4g=128 * MiB))
    a = tl.link(linker, tl.place(linker, 0x100000))
    placed = run_loader(
        {k: bytes(v) for k, v in linker.files.items()}, linker.loader_bytes(), 0x100000, 0x100000
    )
    assert {k: bytes(v[1]) for k, v in placed.items()} == a


def test_same_machine_same_bytes() -> None:
    a = _machine(smp=3).acpi_tables
    b = _machine(smp=3).acpi_tables
    assert a is not None and b is not None
    assert a.files == b.files and a.loader_bytes() == b.loader_bytes()


def test_install_refuses_memory_that_is_not_ram() -> None:
    m = _machine()
    with pytest.raises(ValueError, match="not in writable RAM"):
        boot.install(m, 0xE0000)  # no RAM in the BIOS area without firmware
    with pytest.raises(ValueError, match="not in writable RAM"):
        boot.install(m, 128 * MiB - 16)


def test_install_writes_guest_ram_and_enables_the_pm_block() -> None:
    m = _machine()
    assert m.pm is not None and m.pm.pm_base() is None
    rsdp = boot.install(m, 0x9_0000)
    assert m.space.read_bytes(rsdp, 8) == b"RSD PTR "
    assert m.pm.pm_base() == PM_BASE
    # The FADT's PM timer is where the timer now decodes.
    assert m.ports.read(PM_BASE + pm.PM_TMR, 4) == m.pm.timer_value()


@pytest.mark.parametrize("smp", [1, 2, 4, 9])
def test_madt_has_a_local_apic_per_cpu(smp: int) -> None:
    """5.2.12: local APIC entries (UID n, APIC id n, enabled), the IOAPIC at 0xFEC00000 with
    GSI base 0, overrides IRQ0 -> GSI 2 and IRQ9 level active-high, LINT1 NMI for all."""
    _, tables, _ = _seabios_tables(_machine(smp=smp))
    madt = tables[b"APIC"]
    lapic_addr, flags = struct.unpack_from("<II", madt, 36)
    assert (lapic_addr, flags) == (0xFEE00000, 1)
    entries = []
    at = 44
    while at < len(madt):
        kind, length = madt[at], madt[at + 1]
        entries.append((kind, madt[at + 2 : at + length]))
        at += length
    assert at == len(madt)
    lapics = [struct.unpack("<BBI", e) for k, e in entries if k == 0]
    assert lapics == [(n, n, 1) for n in range(smp)]
    ioapics = [struct.unpack("<BBII", e) for k, e in entries if k == 1]
    assert ioapics == [(0, 0, 0xFEC00000, 0)]
    isos = [struct.unpack("<BBIH", e) for k, e in entries if k == 2]
    assert isos == [(0, 0, 2, 0), (0, 9, 9, 0x000D)]
    nmis = [struct.unpack("<BHB", e) for k, e in entries if k == 4]
    assert nmis == [(0xFF, 0, 1)]
    fadt_flags = struct.unpack_from("<I", tables[b"FACP"], 112)[0]
    assert bool(fadt_flags & (1 << 18)) == (smp > 8)  # FORCE_APIC_CLUSTER_MODEL


def test_fadt_points_at_the_piix4_pm_registers() -> None:
    """5.2.9: the PM1a event/control blocks, PM timer and GPE0 block at the PM I/O block's
    offsets (82371AB 7.2), SCI 9, SMI_CMD 0xB2 with piix4pm's enable/disable values, reset
    register 0xCF9 value 6, CMOS century 0x32, IA-PC boot flags 8042 | legacy devices."""
    _, tables, addrs = _seabios_tables(_machine())
    f = tables[b"FACP"]
    assert f[8] == 3 and len(f) == 244
    facs, dsdt, _, _, sci, smi_cmd, en, dis = struct.unpack_from("<IIBBHIBB", f, 36)
    assert (facs, dsdt) == (addrs[b"FACS"], addrs[b"DSDT"])
    assert (sci, smi_cmd, en, dis) == (9, pm.APM_CNT_PORT, pm.ACPI_ENABLE, pm.ACPI_DISABLE)
    evt, evt_b, cnt, cnt_b, pm2, tmr, gpe0, gpe1 = struct.unpack_from("<8I", f, 56)
    assert evt == PM_BASE + pm.PM1_STS and cnt == PM_BASE + pm.PM1_CNT
    assert tmr == PM_BASE + pm.PM_TMR and gpe0 == PM_BASE + pm.GPE0_STS
    assert (evt_b, cnt_b, pm2, gpe1) == (0, 0, 0, 0)
    assert tuple(f[88:94]) == (4, 2, 0, 4, pm.GPE0_LEN, 0)
    assert f[108] == 0x32
    assert struct.unpack_from("<H", f, 109)[0] == 0x0003
    flags = struct.unpack_from("<I", f, 112)[0]
    assert flags & (1 << 10)  # RESET_REG_SUP
    assert not flags & (1 << 4)  # the power button is the fixed feature (PWRBTN_STS)
    assert not flags & (1 << 8)  # TMR_VAL_EXT clear: the PM timer has 24 bits
    assert struct.unpack_from("<BBBBQB", f, 116) == (1, 8, 0, 1, 0xCF9, 6)
    # X_ blocks agree with the 32-bit ones (space I/O, widths of the lengths above).
    assert struct.unpack_from("<BBBBQ", f, 148) == (1, 32, 0, 2, evt)
    assert struct.unpack_from("<BBBBQ", f, 208) == (1, 32, 0, 3, tmr)
    assert struct.unpack_from("<Q", f, 140)[0] == addrs[b"DSDT"]
    facs_t = tables[b"FACS"]
    assert facs_t[:4] == b"FACS" and struct.unpack_from("<I", facs_t, 4)[0] == 64
    assert addrs[b"FACS"] % 64 == 0


def test_hpet_table_follows_the_config() -> None:
    """IA-PC HPET 1.0a table 3: block id 0x8086A201, base 0xFED00000 in system memory."""
    _, tables, _ = _seabios_tables(_machine())
    h = tables[b"HPET"]
    block_id, space, width, _, _, base, number = struct.unpack_from("<IBBBBQB", h, 36)
    assert (block_id, space, width, base, number) == (0x8086A201, 0, 64, 0xFED00000, 0)
    _, tables, _ = _seabios_tables(_machine(hpet=False))
    assert b"HPET" not in tables
    assert b"PNP0103" not in _disassembled_names(tables[b"DSDT"])


def _disassembled_names(dsdt: bytes) -> bytes:
    # EISAID("PNP0103") as its DWord constant, to find it without iasl.
    from southbridge.machine.acpi.aml import eisa_id

    return b"PNP0103" if eisa_id("PNP0103") in dsdt else b""


def test_mcfg_only_with_ecam() -> None:
    """PCI Firmware 3.2, 4.1.2: one allocation, segment 0, buses 0-255."""
    _, tables, _ = _seabios_tables(_machine())
    assert b"MCFG" not in tables
    _, tables, _ = _seabios_tables(_machine(extra={"pci_ecam_base": 0xB0000000}))
    assert struct.unpack_from("<QHBB", tables[b"MCFG"], 44) == (0xB0000000, 0, 0, 255)


# -- iasl ---------------------------------------------------------------------------------------
IASL = shutil.which("iasl")
needs_iasl = pytest.mark.skipif(
    IASL is None, reason="iasl missing: run scripts/setup (acpica-tools)"
)


def _iasl(*args: str, cwd: Path) -> str:
    assert IASL is not None
    done = subprocess.run(
        [IASL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    return out


@needs_iasl
@pytest.mark.parametrize(
    "config",
    [{"smp": 2}, {"smp": 1, "hpet": False}, {"smp": 4, "extra": {"pci_ecam_base": 0xB0000000}}],
)
def test_iasl_disassembles_every_table_cleanly(config: dict[str, object], tmp_path: Path) -> None:
    """Every table with a description header. The RSDP has none and iasl reads no raw RSDP
    (its 4-byte signature check fails on "RSD "): the checksum test and SeaBIOS's RSDP scan
    (tests/test_kvm_seabios_acpi.py) check it."""
    _, tables, _ = _seabios_tables(_machine(**config))
    for sig, data in tables.items():
        name = sig.decode().lower()
        (tmp_path / f"{name}.dat").write_bytes(data)
        out = _iasl("-d", f"{name}.dat", cwd=tmp_path)
        dsl = (tmp_path / f"{name}.dsl").read_text()
        for word in ("Error", "Warning", "Invalid", "Unknown"):
            assert word not in out and word not in dsl, (sig, out)
    dsl = (tmp_path / "dsdt.dsl").read_text()
    assert 'EisaId ("PNP0A03")' in dsl and 'EisaId ("PNP0C0F")' in dsl
    assert ("PNP0103" in dsl) == bool(config.get("hpet", True))


@needs_iasl
def test_disassembled_dsdt_compiles_back(tmp_path: Path) -> None:
    """The disassembly compiles with iasl without errors or warnings (remarks are iasl's
    style advice: IQCR builds its buffer in the method, as QEMU's does)."""
    _, tables, _ = _seabios_tables(_machine(smp=2, extra={"pci_ecam_base": 0xB0000000}))
    (tmp_path / "dsdt.dat").write_bytes(tables[b"DSDT"])
    _iasl("-d", "dsdt.dat", cwd=tmp_path)
    out = _iasl("-p", "again", "dsdt.dsl", cwd=tmp_path)
    assert "0 Errors, 0 Warnings" in out, out
    assert (tmp_path / "again.aml").stat().st_size > 0


def test_dsdt_reserves_the_ecam_window_and_keeps_it_out_of_the_pci_hole() -> None:
    """PCI Firmware 3.2, 4.1.2: the MCFG range is a PNP0C02 motherboard resource; the root
    bridge's memory windows go around it."""
    from southbridge.machine.acpi import aml

    _, tables, _ = _seabios_tables(_machine(extra={"pci_ecam_base": 0xB0000000}))
    dsdt = tables[b"DSDT"]
    assert aml.eisa_id("PNP0C02") in dsdt
    assert aml.memory32_fixed(0xB0000000, 0x10000000, writable=True) in dsdt
    assert aml.dword_memory(128 * MiB, 0xAFFFFFFF) in dsdt
    assert aml.dword_memory(0xC0000000, 0xFEBFFFFF) in dsdt
    _, tables, _ = _seabios_tables(_machine())
    assert aml.eisa_id("PNP0C02") not in tables[b"DSDT"]
    assert aml.dword_memory(128 * MiB, 0xFEBFFFFF) in tables[b"DSDT"]
