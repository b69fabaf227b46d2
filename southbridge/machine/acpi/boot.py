"""ACPI for a boot without firmware: what SeaBIOS would have done with the fw_cfg tables.

`install` lays the machine's tables out in guest memory with the pointers and checksums
patched (the table-loader's commands run here), and programs the PIIX4 PM function the way
SeaBIOS does when it loads QEMU's tables (PMBA = 0x600 with I/O decoding on, src/fw/
pciinit.c piix4_pm_setup), so the FADT's port numbers are where the registers decode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from southbridge.machine.acpi import tableloader
from southbridge.pci import piix4pm

if TYPE_CHECKING:
    from southbridge.machine.pc import PcMachine


def program_pm_base(pm: piix4pm.Piix4Pm, base: int) -> None:
    """PMBA and PMIOSE as firmware sets them (82371AB 3.3: config 0x40 and 0x80 bit 0)."""
    pm.config_write(piix4pm.PMBA, 4, base | 1)
    pm.config_write(piix4pm.PMREGMISC, 1, 1)


def install(machine: PcMachine, base: int) -> int:
    """Write `machine`'s ACPI tables from guest-physical `base` and return the RSDP's address
    (for the zero page's `acpi_rsdp_addr` or PVH's `rsdp_paddr`; an OS also finds it by
    scanning 0xE0000-0xFFFFF when mapped RAM is there, ACPI 6.5, 5.2.5.1). The range,
    `tableloader.size(machine.acpi_tables, base)` bytes, must be writable RAM: the caller
    marks it reserved (e820 type 3, ACPI reclaimable, or 2) in the memory map."""
    tables = machine.acpi_tables
    if tables is None:
        raise ValueError("the machine has no ACPI tables (acpi is off)")
    length = tableloader.size(tables, base)
    region = machine.memory.find(base)
    if region is None or region.readonly or base + length > region.end:
        raise ValueError(f"ACPI tables at 0x{base:x}+0x{length:x} are not in writable RAM")
    if machine.pm is not None:
        from southbridge.machine.acpi.build import PM_BASE

        program_pm_base(machine.pm, PM_BASE)
    return tableloader.install(tables, machine.space, base)
