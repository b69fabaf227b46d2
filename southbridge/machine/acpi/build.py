"""The pc's ACPI tables, assembled and linked: what `etc/acpi/tables` and `etc/acpi/rsdp`
hold and the `etc/table-loader` commands that place them, as QEMU's `pc` machine builds them
(hw/i386/acpi-build.c acpi_build).

`etc/acpi/tables` holds, 64-byte aligned one after the other: FACS (first, so its 64-byte
alignment holds), DSDT, FADT, MADT, HPET and MCFG when the machine has them, RSDT, XSDT.
The RSDP (revision 2, in the F segment) points at the RSDT and the XSDT; the FADT at the FACS
and the DSDT. The same machine always gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from southbridge.machine.acpi import tables as t
from southbridge.machine.acpi.dsdt import DsdtConfig, dsdt
from southbridge.machine.acpi.tableloader import (
    RSDP_FILE,
    TABLES_FILE,
    ZONE_FSEG,
    ZONE_HIGH,
    Command,
    Linker,
)
from southbridge.pci import piix4pm as pm

TABLE_ALIGN = 64
RSDP_ALIGN = 16
# SeaBIOS moves the PIIX4 PM base to 0x600 when fw_cfg has a table-loader (src/fw/
# paravirt.c qemu_cfg_init: "Moving pm_base to 0x600"), where QEMU's tables then say it is;
# a boot without firmware programs PMBA to the same value (`program_pm_base`).
PM_BASE = 0x0600
SCI_IRQ = 9
RESET_PORT, RESET_VALUE = 0xCF9, 0x06  # PIIX3 reset control: SYS_RST | RST_CPU, a hard reset
CMOS_CENTURY = 0x32
LAPIC_BASE = 0xFEE00000
IOAPIC_BASE = 0xFEC00000
IOAPIC_ID = 0
HPET_BASE = 0xFED00000
# QEMU's HPET: Intel's vendor id, 3 comparators, a 64-bit counter, legacy replacement capable
# (IA-PC HPET 1.0a, table 3: the event timer block id mirrors the capabilities register).
HPET_BLOCK_ID = 0x8086A201
# The main counter's minimum periodic tick, in counter ticks: 128 (1.28 us at 100 MHz), the
# value Intel chipsets' firmware reports; an OS reads it as advice only.
HPET_MIN_TICK = 0x80
ECAM_BUS_SPAN = 1 << 20


@dataclass(frozen=True)
class AcpiConfig:
    """What the tables describe of a machine."""

    cpus: int
    ram_below_4g: int  # bytes of RAM from 0 (the PCI hole starts here)
    serial: int = 1
    hpet: bool = True
    ecam: tuple[int, int] | None = None  # (base, buses) when an ECAM window is mapped
    pm_base: int = PM_BASE


def overrides() -> list[t.Override]:
    """The PC's interrupt source overrides: the PIT's IRQ0 on IOAPIC pin 2 (as the machine
    wires it), and the SCI on IRQ 9 level-triggered, active high (ACPI 6.5, 5.2.12.5)."""
    return [
        t.Override(0, 2, t.INTI_CONFORMS),
        t.Override(SCI_IRQ, SCI_IRQ, t.INTI_LEVEL | t.INTI_ACTIVE_HIGH),
    ]


def fadt_ports(cfg: AcpiConfig) -> t.FadtPorts:
    return t.FadtPorts(
        pm_base=cfg.pm_base,
        pm1_evt=pm.PM1_STS,
        pm1_cnt=pm.PM1_CNT,
        pm_tmr=pm.PM_TMR,
        gpe0=pm.GPE0_STS,
        gpe0_len=pm.GPE0_LEN,
        sci_irq=SCI_IRQ,
        smi_cmd=pm.APM_CNT_PORT,
        acpi_enable=pm.ACPI_ENABLE,
        acpi_disable=pm.ACPI_DISABLE,
        reset_port=RESET_PORT,
        reset_value=RESET_VALUE,
        century=CMOS_CENTURY,
        cpus=cfg.cpus,
    )


def dsdt_config(cfg: AcpiConfig) -> DsdtConfig:
    ecam = None if cfg.ecam is None else (cfg.ecam[0], cfg.ecam[1] * ECAM_BUS_SPAN)
    return DsdtConfig(
        cpus=cfg.cpus,
        pci_hole_start=cfg.ram_below_4g,
        serial=cfg.serial,
        hpet_base=HPET_BASE if cfg.hpet else None,
        ecam=ecam,
        slp_typ_s3=pm.SLP_TYP_S3,
        slp_typ_s5=pm.SLP_TYP_S5,
    )


def build(cfg: AcpiConfig) -> Linker:
    """The tables and their loader commands for a machine like `cfg` (a fresh copy: building
    takes milliseconds and every machine builds them, so the bytes are cached)."""
    files, commands = _build(cfg)
    return Linker({name: bytearray(data) for name, data in files}, list(commands))


@lru_cache(maxsize=32)
def _build(cfg: AcpiConfig) -> tuple[tuple[tuple[str, bytes], ...], tuple[Command, ...]]:
    linker = _assemble(cfg)
    return tuple((n, bytes(d)) for n, d in linker.files.items()), tuple(linker.commands)


def _assemble(cfg: AcpiConfig) -> Linker:
    if cfg.cpus < 1 or cfg.cpus > 255:
        raise ValueError(f"ACPI: {cfg.cpus} CPUs (xAPIC ids reach 254)")
    blob = bytearray()
    pointers: list[tuple[int, int]] = []  # (offset in the blob, size): fields into the blob
    checksummed: list[tuple[int, int]] = []  # (table offset, length)

    def add(data: bytes | bytearray, checksum: bool = True) -> int:
        blob.extend(bytes(-len(blob) % TABLE_ALIGN))
        at = len(blob)
        blob.extend(data)
        if checksum:
            checksummed.append((at, len(data)))
        return at

    facs_at = add(t.facs(), checksum=False)
    dsdt_at = add(dsdt(dsdt_config(cfg)))
    fadt_at = add(t.fadt(fadt_ports(cfg), facs_at, dsdt_at))
    pointers += [(fadt_at + t.FADT_FIRMWARE_CTRL, 4), (fadt_at + t.FADT_DSDT, 4)]
    pointers.append((fadt_at + t.FADT_X_DSDT, 8))
    listed = [fadt_at]
    apic_ids = list(range(cfg.cpus))
    listed.append(add(t.madt(LAPIC_BASE, apic_ids, IOAPIC_ID, IOAPIC_BASE, overrides(), 1)))
    if cfg.hpet:
        listed.append(add(t.hpet(HPET_BLOCK_ID, HPET_BASE, 0, HPET_MIN_TICK)))
    if cfg.ecam is not None:
        base, buses = cfg.ecam
        listed.append(add(t.mcfg(base, 0, 0, buses - 1)))
    rsdt_at = add(t.rsdt(listed))
    pointers += [(rsdt_at + t.sdt_entry_offset(i, 4), 4) for i in range(len(listed))]
    xsdt_at = add(t.xsdt(listed))
    pointers += [(xsdt_at + t.sdt_entry_offset(i, 8), 8) for i in range(len(listed))]

    linker = Linker()
    linker.allocate(TABLES_FILE, bytes(blob), TABLE_ALIGN, ZONE_HIGH)
    linker.allocate(RSDP_FILE, bytes(t.rsdp(rsdt_at, xsdt_at)), RSDP_ALIGN, ZONE_FSEG)
    for offset, size in pointers:
        linker.pointer(TABLES_FILE, offset, size, TABLES_FILE)
    for at, length in checksummed:
        linker.checksum(TABLES_FILE, at + t.CHECKSUM_OFFSET, at, length)
    linker.pointer(RSDP_FILE, t.RSDP_RSDT_OFFSET, 4, TABLES_FILE)
    linker.pointer(RSDP_FILE, t.RSDP_XSDT_OFFSET, 8, TABLES_FILE)
    linker.checksum(RSDP_FILE, t.RSDP_CHECKSUM_OFFSET, 0, t.RSDP_V1_LEN)
    linker.checksum(RSDP_FILE, t.RSDP_EXT_CHECKSUM_OFFSET, 0, t.RSDP_LEN)
    return linker
