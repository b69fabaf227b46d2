"""Chipset devices: pure state machines on a bus, a clock and IRQ lines."""
