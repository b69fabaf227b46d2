"""Firmware tables for a boot without firmware: what SeaBIOS would leave in memory.

The BIOS area 0xE0000-0xFFFFF (reserved in every memory map we give, and where an OS
scans for the ACPI RSDP and the MP floating pointer) is backed by RAM, the machine's ACPI
tables go at its start (machine/acpi/boot.py, which also sets the PM base as SeaBIOS does)
and the MP table (machine/mptable.py) at 0xF0000 for kernels booted with `acpi=off`.
Loaders compute their memory maps before calling `install`, and `ram_ranges` leaves the
area out, so it stays reserved."""

from __future__ import annotations

from southbridge.machine.acpi import boot as acpi_boot
from southbridge.machine.base import Machine
from southbridge.machine.pc import PcMachine

AREA_BASE = 0xE0000
AREA_SIZE = 0x20000
AREA_NAME = "firmware-tables"
ACPI_BASE = AREA_BASE
MP_BASE = 0xF0000


def install(machine: Machine) -> int | None:
    """Back the BIOS area with RAM and write the tables; returns the RSDP's address (None
    when the machine has no ACPI, or is not a pc)."""
    if not isinstance(machine, PcMachine):
        return None
    if machine.memory.find(AREA_BASE) is None:
        machine.memory.add(AREA_BASE, AREA_SIZE, AREA_NAME)
    from southbridge.machine import mptable

    mptable.install(machine, MP_BASE)
    if machine.acpi_tables is None:
        return None
    return acpi_boot.install(machine, ACPI_BASE)
