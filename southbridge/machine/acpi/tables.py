"""ACPI table layouts (ACPI 6.5 chapter 5): the common header, RSDP, RSDT/XSDT, FADT, FACS,
MADT, HPET (IA-PC HPET 1.0a, 3.2.4) and MCFG (PCI Firmware 3.2, 4.1.2), as bytes.

Pointer fields hold offsets into the file they point into; `tableloader` turns them into
addresses (QEMU's linker/loader does the same with SeaBIOS). Checksums are filled for the
bytes as built, and refilled wherever pointers are patched.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

OEM_ID = b"SBRIDG"
OEM_REVISION = 1
CREATOR_ID = b"SBPY"
CREATOR_REVISION = 1
HEADER_LEN = 36
CHECKSUM_OFFSET = 9


def checksum(data: bytes | bytearray) -> int:
    """The byte that makes `data` (its own checksum byte counted as 0) sum to zero."""
    return -sum(data) & 0xFF


def table(signature: bytes, revision: int, body: bytes) -> bytearray:
    """A description header (5.2.6) in front of `body`, checksummed."""
    if len(signature) != 4:
        raise ValueError(f"ACPI: bad signature {signature!r}")
    length = HEADER_LEN + len(body)
    oem_table_id = b"SBPC" + signature
    out = bytearray(
        struct.pack(
            "<4sIBB6s8sI4sI",
            signature,
            length,
            revision,
            0,
            OEM_ID,
            oem_table_id,
            OEM_REVISION,
            CREATOR_ID,
            CREATOR_REVISION,
        )
        + body
    )
    out[CHECKSUM_OFFSET] = checksum(out)
    return out


def fix_checksum(data: bytearray, start: int, length: int, offset: int) -> None:
    data[offset] = 0
    data[offset] = checksum(data[start : start + length])


# -- Generic Address Structure (5.2.3.2) ------------------------------------------------------
AS_SYSTEM_MEMORY, AS_SYSTEM_IO = 0, 1
ACCESS_UNDEFINED, ACCESS_BYTE, ACCESS_WORD, ACCESS_DWORD, ACCESS_QWORD = 0, 1, 2, 3, 4


def gas(space: int, bits: int, address: int, access: int = ACCESS_UNDEFINED) -> bytes:
    if address == 0:
        return bytes(12)
    return struct.pack("<BBBBQ", space, bits, 0, access, address)


# -- RSDP (5.2.5) -----------------------------------------------------------------------------
RSDP_LEN = 36
RSDP_RSDT_OFFSET = 16
RSDP_XSDT_OFFSET = 24
RSDP_CHECKSUM_OFFSET = 8
RSDP_EXT_CHECKSUM_OFFSET = 32
RSDP_V1_LEN = 20


def rsdp(rsdt: int, xsdt: int) -> bytearray:
    """Revision 2: the ACPI 1.0 checksum over the first 20 bytes, the extended one over 36."""
    out = bytearray(
        struct.pack("<8sB6sBIIQB3x", b"RSD PTR ", 0, OEM_ID, 2, rsdt, RSDP_LEN, xsdt, 0)
    )
    fix_checksum(out, 0, RSDP_V1_LEN, RSDP_CHECKSUM_OFFSET)
    fix_checksum(out, 0, RSDP_LEN, RSDP_EXT_CHECKSUM_OFFSET)
    return out


def rsdt(entries: list[int]) -> bytearray:
    return table(b"RSDT", 1, b"".join(struct.pack("<I", e) for e in entries))


def xsdt(entries: list[int]) -> bytearray:
    return table(b"XSDT", 1, b"".join(struct.pack("<Q", e) for e in entries))


def sdt_entry_offset(index: int, size: int) -> int:
    """Where RSDT (size 4) or XSDT (size 8) entry `index` lies in its table."""
    return HEADER_LEN + index * size


# -- FACS (5.2.10) ----------------------------------------------------------------------------
FACS_LEN = 64
FACS_ALIGN = 64


def facs() -> bytes:
    """Version 1 (ACPI 2.0, as the revision 3 FADT): no hardware signature, waking vectors
    0 until an OS sets them, no global lock owner. The FACS has no checksum."""
    return struct.pack("<4sIIIII Q B 31x", b"FACS", FACS_LEN, 0, 0, 0, 0, 0, 1)


# -- FADT (5.2.9) -----------------------------------------------------------------------------
FADT_REVISION = 3  # ACPI 2.0 layout with the 64-bit X_ fields, as QEMU's pc
FADT_LEN = 244
FADT_FIRMWARE_CTRL = 36
FADT_DSDT = 40
FADT_X_DSDT = 140

# Fixed feature flags (table 5.10).
F_WBINVD = 1 << 0
F_PROC_C1 = 1 << 2
F_SLP_BUTTON = 1 << 5  # no fixed-feature sleep button
F_RTC_S4 = 1 << 7
F_RESET_REG_SUP = 1 << 10
F_USE_PLATFORM_CLOCK = 1 << 15
F_FORCE_APIC_CLUSTER_MODEL = 1 << 18
# IA-PC boot architecture flags (table 5.11).
BOOT_LEGACY_DEVICES = 1 << 0
BOOT_8042 = 1 << 1
PM_PROFILE_UNSPECIFIED = 0


@dataclass(frozen=True)
class FadtPorts:
    """The PM register blocks and the legacy ports the FADT names."""

    pm_base: int
    pm1_evt: int  # offsets in the PM I/O block
    pm1_cnt: int
    pm_tmr: int
    gpe0: int
    gpe0_len: int
    sci_irq: int
    smi_cmd: int
    acpi_enable: int
    acpi_disable: int
    reset_port: int
    reset_value: int
    century: int
    cpus: int


def fadt(p: FadtPorts, facs_ptr: int, dsdt_ptr: int) -> bytearray:
    evt, cnt = p.pm_base + p.pm1_evt, p.pm_base + p.pm1_cnt
    tmr, gpe0 = p.pm_base + p.pm_tmr, p.pm_base + p.gpe0
    flags = F_WBINVD | F_PROC_C1 | F_SLP_BUTTON | F_RTC_S4 | F_RESET_REG_SUP
    flags |= F_USE_PLATFORM_CLOCK
    if p.cpus > 8:  # flat logical destination mode addresses at most 8 CPUs
        flags |= F_FORCE_APIC_CLUSTER_MODEL
    body = struct.pack(
        "<IIBBHIBBBB8IBBBBBBBBHHHHBBBBBHBI",
        facs_ptr,
        dsdt_ptr,
        0,  # reserved (ACPI 1.0 INT_MODEL)
        PM_PROFILE_UNSPECIFIED,
        p.sci_irq,
        p.smi_cmd,
        p.acpi_enable,
        p.acpi_disable,
        0,  # S4BIOS_REQ
        0,  # PSTATE_CNT
        evt,
        0,  # PM1b_EVT_BLK
        cnt,
        0,  # PM1b_CNT_BLK
        0,  # PM2_CNT_BLK
        tmr,
        gpe0,
        0,  # GPE1_BLK
        4,  # PM1_EVT_LEN: status and enable, 2 bytes each
        2,  # PM1_CNT_LEN
        0,  # PM2_CNT_LEN
        4,  # PM_TMR_LEN
        p.gpe0_len,
        0,  # GPE1_BLK_LEN
        0,  # GPE1_BASE
        0,  # CST_CNT
        0x0FFF,  # P_LVL2_LAT > 100: C2 not supported
        0x0FFF,  # P_LVL3_LAT > 1000: C3 not supported
        0,  # FLUSH_SIZE
        0,  # FLUSH_STRIDE
        0,  # DUTY_OFFSET
        0,  # DUTY_WIDTH
        0,  # DAY_ALRM: no day-of-month alarm
        0,  # MON_ALRM
        p.century,
        BOOT_LEGACY_DEVICES | BOOT_8042,
        0,  # reserved
        flags,
    )
    body += gas(AS_SYSTEM_IO, 8, p.reset_port, ACCESS_BYTE)
    body += struct.pack("<B3x", p.reset_value)
    body += struct.pack("<QQ", 0, dsdt_ptr)  # X_FIRMWARE_CTRL (FIRMWARE_CTRL is used), X_DSDT
    body += gas(AS_SYSTEM_IO, 32, evt, ACCESS_WORD)  # X_PM1a_EVT_BLK
    body += gas(AS_SYSTEM_IO, 0, 0)  # X_PM1b_EVT_BLK
    body += gas(AS_SYSTEM_IO, 16, cnt, ACCESS_WORD)  # X_PM1a_CNT_BLK
    body += gas(AS_SYSTEM_IO, 0, 0) * 2  # X_PM1b_CNT_BLK, X_PM2_CNT_BLK
    body += gas(AS_SYSTEM_IO, 32, tmr, ACCESS_DWORD)  # X_PM_TMR_BLK
    body += gas(AS_SYSTEM_IO, 8 * p.gpe0_len, gpe0, ACCESS_BYTE)  # X_GPE0_BLK
    body += gas(AS_SYSTEM_IO, 0, 0)  # X_GPE1_BLK
    out = table(b"FACP", FADT_REVISION, body)
    assert len(out) == FADT_LEN
    return out


# -- MADT (5.2.12) ----------------------------------------------------------------------------
MADT_PCAT_COMPAT = 1
MADT_LOCAL_APIC, MADT_IO_APIC, MADT_ISO, MADT_LAPIC_NMI = 0, 1, 2, 4
LAPIC_ENABLED = 1
# MPS INTI flags (table 5.26): polarity bits 1:0, trigger mode bits 3:2.
INTI_CONFORMS = 0
INTI_ACTIVE_HIGH, INTI_ACTIVE_LOW = 1, 3
INTI_EDGE, INTI_LEVEL = 1 << 2, 3 << 2
ALL_PROCESSORS = 0xFF


@dataclass(frozen=True)
class Override:
    """An interrupt source override: ISA `irq` arrives on `gsi` with MPS INTI `flags`."""

    irq: int
    gsi: int
    flags: int


def madt(
    lapic_base: int,
    apic_ids: list[int],
    ioapic_id: int,
    ioapic_base: int,
    overrides: list[Override],
    nmi_lint: int,
) -> bytearray:
    body = bytearray(struct.pack("<II", lapic_base, MADT_PCAT_COMPAT))
    for uid, apic_id in enumerate(apic_ids):
        body += struct.pack("<BBBBI", MADT_LOCAL_APIC, 8, uid, apic_id, LAPIC_ENABLED)
    body += struct.pack("<BBBBII", MADT_IO_APIC, 12, ioapic_id, 0, ioapic_base, 0)
    for o in overrides:
        body += struct.pack("<BBBBIH", MADT_ISO, 10, 0, o.irq, o.gsi, o.flags)
    body += struct.pack("<BBBHB", MADT_LAPIC_NMI, 6, ALL_PROCESSORS, INTI_CONFORMS, nmi_lint)
    return table(b"APIC", 3, bytes(body))


# -- HPET (IA-PC HPET 1.0a, table 3) ----------------------------------------------------------
HPET_PAGE_PROTECT4 = 1  # 4 KiB page protection: nothing else in the HPET's page


def hpet(event_timer_block_id: int, base: int, number: int, min_tick: int) -> bytearray:
    body = struct.pack("<I", event_timer_block_id)
    body += gas(AS_SYSTEM_MEMORY, 64, base)
    body += struct.pack("<BHB", number, min_tick, HPET_PAGE_PROTECT4)
    return table(b"HPET", 1, body)


# -- MCFG (PCI Firmware 3.2, 4.1.2) -----------------------------------------------------------
def mcfg(base: int, segment: int, start_bus: int, end_bus: int) -> bytearray:
    body = bytes(8) + struct.pack("<QHBBI", base, segment, start_bus, end_bus, 0)
    return table(b"MCFG", 1, body)
