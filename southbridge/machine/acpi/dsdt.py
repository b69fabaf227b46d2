"""The pc's DSDT in AML: the PCI root bridge with its resource windows and interrupt routing,
the PIIX3 PIRQ link devices, the ISA devices, the HPET, the processors and the sleep states.

Laid out as QEMU's `pc` machine does (hw/i386/acpi-build.c): `\\_SB.PCI0` (PNP0A03) holds the
PIIX3 at `ISA` (_ADR 0x00010000) with the PS/2, COM and RTC devices; `_PRT` answers from
`PRTP` (PIC mode: the LNKA-LNKD links, which read and write the PIIX3 PIRQ route registers
0x60-0x63 through a PCI-config OperationRegion) or `PRTA` (APIC mode: GSI 16-19 directly),
as `\\_PIC` chose. SeaBIOS parses this table too (src/fw/dsdt_parser.c: it looks for the
PS/2 keyboard PNP0303 before initializing it), so devices are plain Names where it reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

from southbridge.machine.acpi import aml
from southbridge.machine.acpi.aml import (
    arg,
    call,
    device,
    eisa_id,
    integer,
    method,
    name,
    name_string,
    package,
    resource_template,
    return_,
    scope,
    store,
)
from southbridge.machine.acpi.tables import table
from southbridge.pci.piix3 import PIRQRC, pirq_of

DSDT_REVISION = 2  # 64-bit AML integers
PIRQ_GSI_BASE = 16
LINK_IRQS = (5, 10, 11)  # the ISA IRQs a link may take (QEMU's _PRS; 9 is the SCI)
ROUTE_DISABLED = 0x80
HPET_LENGTH = 0x400
PCI_HOLE_END = 0xFEBFFFFF  # the IOAPIC, HPET and LAPIC windows start at 0xFEC00000


@dataclass(frozen=True)
class DsdtConfig:
    cpus: int
    pci_hole_start: int  # the first address above RAM below 4 GiB
    serial: int  # COM ports present (1 or 2)
    hpet_base: int | None  # the HPET's MMIO base, None without one
    ecam: tuple[int, int] | None  # (base, length) of the ECAM window, kept out of the hole
    slp_typ_s3: int | None  # PM1_CNT.SLP_TYP values of the sleep states the PM supports
    slp_typ_s5: int


def _pci_crs(cfg: DsdtConfig) -> bytes:
    windows = [
        aml.word_bus_number(0x00, 0xFF),
        aml.io(0x0CF8, 0x0CF8, 0x01, 0x08),  # the config mechanism #1 ports it decodes itself
        aml.word_io(0x0000, 0x0CF7),
        aml.word_io(0x0D00, 0xFFFF),
        aml.dword_memory(0x000A0000, 0x000BFFFF),  # legacy VGA
    ]
    hole = [(cfg.pci_hole_start, PCI_HOLE_END)]
    if cfg.ecam is not None:  # the ECAM window is the host bridge's, not a PCI window
        base, length = cfg.ecam
        hole = [
            (lo, hi)
            for lo, hi in ((cfg.pci_hole_start, base - 1), (base + length, PCI_HOLE_END))
            if lo <= hi
        ]
    windows += [aml.dword_memory(lo, hi) for lo, hi in hole if lo <= hi]
    return resource_template(*windows)


def _prt(pic_mode: bool) -> bytes:
    entries = []
    for slot in range(32):
        for pin in range(4):
            pirq = pirq_of(slot, pin)
            address = integer(slot << 16 | 0xFFFF)
            if pic_mode:
                entries.append(
                    package(address, integer(pin), name_string(f"LNK{'ABCD'[pirq]}"), integer(0))
                )
            else:
                entries.append(
                    package(address, integer(pin), integer(0), integer(PIRQ_GSI_BASE + pirq))
                )
    # 128 entries: more than a Package's 255 would allow only past 63 slots, so one Package.
    return package(*entries)


def _link_helpers() -> bytes:
    """IQST: a route register's _STA (bit 7 set: disabled, 0x09; else enabled, 0x0B);
    IQCR: its _CRS, an extended interrupt descriptor with the routed IRQ."""
    irq_field = 5  # byte offset of the first interrupt number in the Interrupt descriptor
    link_flags = aml.INT_CONSUMER | aml.INT_SHARED  # level, active high, shared (QEMU's)
    return b"".join(
        [
            method(
                "IQST",
                1,
                aml.if_(aml.and_(integer(ROUTE_DISABLED), arg(0)), return_(integer(0x09))),
                return_(integer(0x0B)),
            ),
            method(
                "IQCR",
                1,
                name(
                    "PRR0",
                    resource_template(aml.interrupt(0, flags=link_flags), checksum=False),
                ),
                aml.create_dword_field(name_string("PRR0"), irq_field, "PRRI"),
                aml.if_(
                    aml.lless(arg(0), integer(ROUTE_DISABLED)),
                    store(aml.and_(arg(0), integer(0x0F)), name_string("PRRI")),
                ),
                return_(name_string("PRR0")),
                serialized=True,
            ),
        ]
    )


def _link(n: int) -> bytes:
    reg = name_string(f"PRQ{n}")
    return device(
        f"LNK{'ABCD'[n]}",
        name("_HID", eisa_id("PNP0C0F")),
        name("_UID", integer(n)),
        name(
            "_PRS",
            resource_template(aml.interrupt(*LINK_IRQS, flags=aml.INT_CONSUMER | aml.INT_SHARED)),
        ),
        method("_STA", 0, return_(call("IQST", reg))),
        method("_DIS", 0, aml.or_(reg, integer(ROUTE_DISABLED), reg)),
        method("_CRS", 0, return_(call("IQCR", reg))),
        method(
            "_SRS",
            1,
            aml.create_dword_field(arg(0), 5, "PRRI"),
            store(name_string("PRRI"), reg),
        ),
    )


def _isa_devices(cfg: DsdtConfig) -> bytes:
    parts = [
        device(
            "KBD",
            name("_HID", eisa_id("PNP0303")),
            name("_STA", integer(0x0F)),
            name(
                "_CRS",
                resource_template(
                    aml.io(0x0060, 0x0060, 0x01, 0x01),
                    aml.io(0x0064, 0x0064, 0x01, 0x01),
                    aml.irq_noflags(1),
                ),
            ),
        ),
        device(
            "MOU",
            name("_HID", eisa_id("PNP0F13")),
            name("_STA", integer(0x0F)),
            name("_CRS", resource_template(aml.irq_noflags(12))),
        ),
        device(
            "RTC",
            name("_HID", eisa_id("PNP0B00")),
            name("_CRS", resource_template(aml.io(0x0070, 0x0070, 0x01, 0x08), aml.irq_noflags(8))),
        ),
    ]
    for index, (port, irq) in enumerate(((0x3F8, 4), (0x2F8, 3))[: cfg.serial]):
        parts.append(
            device(
                f"COM{index + 1}",
                name("_HID", eisa_id("PNP0501")),
                name("_UID", integer(index + 1)),
                name("_STA", integer(0x0F)),
                name(
                    "_CRS", resource_template(aml.io(port, port, 0x00, 0x08), aml.irq_noflags(irq))
                ),
            )
        )
    return b"".join(parts)


def _pci0(cfg: DsdtConfig) -> bytes:
    return device(
        "PCI0",
        name("_HID", eisa_id("PNP0A03")),  # a _HID, so no _ADR (ACPI 6.5, 6.1)
        name("_UID", integer(0)),
        name("_CRS", _pci_crs(cfg)),
        name("PRTP", _prt(pic_mode=True)),
        name("PRTA", _prt(pic_mode=False)),
        method(
            "_PRT",
            0,
            aml.if_(name_string("\\PICF"), return_(name_string("PRTA"))),
            return_(name_string("PRTP")),
        ),
        device(
            "ISA",
            name("_ADR", integer(0x00010000)),
            aml.op_region("P40C", aml.PCI_CONFIG, PIRQRC, 4),
            _isa_devices(cfg),
        ),
    )


def _hpet(base: int) -> bytes:
    return device(
        "HPET",
        name("_HID", eisa_id("PNP0103")),
        name("_UID", integer(0)),
        name("_STA", integer(0x0F)),
        name("_CRS", resource_template(aml.memory32_fixed(base, HPET_LENGTH, writable=False))),
    )


def _ecam_reservation(base: int, length: int) -> bytes:
    """The ECAM window as a motherboard resource (PNP0C02): PCI Firmware 3.2, 4.1.2 asks that
    MCFG ranges be reserved so, and Linux checks it before it uses MMCONFIG."""
    return device(
        "ECAM",
        name("_HID", eisa_id("PNP0C02")),
        name("_UID", integer(0)),
        name("_CRS", resource_template(aml.memory32_fixed(base, length, writable=True))),
    )


def _processors(cpus: int) -> bytes:
    return b"".join(
        device(f"C{n:03X}", name("_HID", aml.string("ACPI0007")), name("_UID", integer(n)))
        for n in range(cpus)
    )


def _sleep_state(slp_typ: int) -> bytes:
    # PM1a and PM1b SLP_TYP, then two reserved (ACPI 6.5, 7.4.2).
    return package(integer(slp_typ), integer(slp_typ), integer(0), integer(0))


def dsdt(cfg: DsdtConfig) -> bytearray:
    route = aml.field(
        "PCI0.ISA.P40C",
        aml.BYTE_ACC,
        ("PRQ0", 8),
        ("PRQ1", 8),
        ("PRQ2", 8),
        ("PRQ3", 8),
    )
    sb = [_pci0(cfg), route, _link_helpers(), *(_link(n) for n in range(4))]
    if cfg.hpet_base is not None:
        sb.append(_hpet(cfg.hpet_base))
    if cfg.ecam is not None:
        sb.append(_ecam_reservation(*cfg.ecam))
    sb.append(_processors(cfg.cpus))
    body = [
        name("PICF", integer(0)),
        method("_PIC", 1, store(arg(0), name_string("PICF"))),
        scope("\\_SB", *sb),
        scope("\\_GPE", name("_HID", aml.string("ACPI0006"))),
    ]
    if cfg.slp_typ_s3 is not None:
        body.append(name("_S3", _sleep_state(cfg.slp_typ_s3)))
    body.append(name("_S5", _sleep_state(cfg.slp_typ_s5)))
    return table(b"DSDT", DSDT_REVISION, b"".join(body))
