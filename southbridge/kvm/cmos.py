"""Moved to `southbridge.machine.cmos` (the CMOS contents are a machine concern); kept so
existing imports work."""

from southbridge.machine.cmos import BOOT_CODES, Cmos, fill_cmos

__all__ = ["BOOT_CODES", "Cmos", "fill_cmos"]
