"""PCI configuration access the way a guest makes it (mechanism #1: the address to 0xCF8,
the data at 0xCFC + the low two offset bits; PCI Local Bus 3.0, 3.2.2.3.2), for the tests
that check what a machine's guest sees."""

from __future__ import annotations

from southbridge.host.pciaddr import PciAddress
from southbridge.machine.base import Machine

ENABLE = 0x80000000


def _select(m: Machine, a: PciAddress, off: int) -> None:
    m.ports.write(0xCF8, 4, ENABLE | a.bus << 16 | a.devfn << 8 | off & 0xFC)


def cfg_read(m: Machine, a: PciAddress, off: int, size: int = 4) -> int:
    _select(m, a, off)
    return m.ports.read(0xCFC + (off & 3), size)


def cfg_write(m: Machine, a: PciAddress, off: int, size: int, value: int) -> None:
    _select(m, a, off)
    m.ports.write(0xCFC + (off & 3), size, value)
