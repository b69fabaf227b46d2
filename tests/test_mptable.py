"""The MP table (Intel MP spec 1.4, chapter 4) read back the way a kernel parses it."""

from __future__ import annotations

import struct

import pytest

from southbridge.machine import mptable as mp
from southbridge.machine.pc import PcConfig, PcMachine
from southbridge.pci.piix3 import pirq_of

Entry = tuple[int, bytes]


def _parse(m: PcMachine, base: int) -> tuple[bytes, list[Entry]]:
    fp = m.space.read_bytes(base, 16)
    assert fp[:4] == b"_MP_" and sum(fp) & 0xFF == 0
    addr, length, rev, _, feature1 = struct.unpack_from("<IBBBB", fp, 4)
    assert (length, rev, feature1) == (1, 4, 0)  # 16 bytes, 1.4, a configuration table
    assert fp[12] & 0x80 == 0  # IMCRP clear: virtual wire mode
    header = m.space.read_bytes(addr, 44)
    assert header[:4] == b"PCMP"
    total, spec, _ = struct.unpack_from("<HBB", header, 4)
    table = m.space.read_bytes(addr, total)
    assert spec == 4 and sum(table) & 0xFF == 0
    count, lapic, ext_len = struct.unpack_from("<HIH", table, 34)
    assert (lapic, ext_len) == (0xFEE00000, 0)
    sizes = {0: 20, 1: 8, 2: 8, 3: 8, 4: 8}
    entries: list[Entry] = []
    at = 44
    while at < total:
        kind = table[at]
        entries.append((kind, table[at : at + sizes[kind]]))
        at += sizes[kind]
    assert at == total and len(entries) == count
    kinds = [k for k, _ in entries]
    assert kinds == sorted(kinds)  # 4.3: entries in type order
    return table, entries


@pytest.mark.parametrize("smp", [1, 3])
def test_processors_buses_and_ioapic(smp: int) -> None:
    m = PcMachine(PcConfig(smp=smp))
    _, entries = _parse(m, mp.install(m, 0x9FC00))
    # 4.3.1: APIC id, APIC version, flags (EN, BP on CPU 0), CPU signature, features.
    cpus = [struct.unpack_from("<BBBII", e, 1) for k, e in entries if k == 0]
    assert cpus == [(n, 0x14, 1 | (2 if n == 0 else 0), 0x600, 0x201) for n in range(smp)]
    buses = [e[1:8] for k, e in entries if k == 1]
    assert buses == [b"\x00PCI   ", b"\x01ISA   "]
    ioapics = [struct.unpack_from("<BBBI", e, 1) for k, e in entries if k == 2]
    assert ioapics == [(0, 0x20, 1, 0xFEC00000)]


def _irqs(entries: list[Entry], kind: int) -> list[tuple[int, int, int, int, int, int]]:
    return [struct.unpack_from("<BHBBBB", e, 1) for k, e in entries if k == kind]


def test_interrupt_assignments_follow_the_wiring() -> None:
    """ISA IRQ n on pin n, IRQ0 on pin 2 and no IRQ2; the 8259 as ExtINT on pin 0; each slot's
    INTA-D on pin 16 + its PIRQ, level active-low; ExtINT on the BSP's LINT0, NMI on LINT1."""
    m = PcMachine(PcConfig())
    _, entries = _parse(m, mp.install(m, 0x9FC00))
    io = _irqs(entries, 3)
    isa = {irq: pin for itype, _, bus, irq, _, pin in io if bus == 1 and itype == 0}
    assert isa == {n: 2 if n == 0 else n for n in range(16) if n != 2}
    assert (3, 0, 1, 0, 0, 0) in io  # ExtINT, ISA IRQ 0, to INTIN0
    pci = {(src >> 2, src & 3): (pin, fl) for _, fl, bus, src, _, pin in io if bus == 0}
    slots = sorted({d >> 3 for d in m.pci_bus.functions})
    assert pci == {(s, p): (16 + pirq_of(s, p), 0x0F) for s in slots for p in range(4)}
    assert _irqs(entries, 4) == [(3, 0, 1, 0, 0, 0), (1, 0, 1, 0, 0xFF, 1)]


def test_same_machine_same_bytes() -> None:
    a, b = PcMachine(PcConfig(smp=2)), PcMachine(PcConfig(smp=2))
    mp.install(a, 0x9FC00)
    mp.install(b, 0x9FC00)
    size = mp.size(mp.machine_config(a))
    assert a.space.read_bytes(0x9FC00, size) == b.space.read_bytes(0x9FC00, size)


def test_install_refuses_bad_places() -> None:
    m = PcMachine(PcConfig())
    with pytest.raises(ValueError, match="aligned"):
        mp.install(m, 0x9FC08)
    with pytest.raises(ValueError, match="writable RAM"):
        mp.install(m, 0xF0000)  # no RAM there without firmware
    with pytest.raises(ValueError, match="writable RAM"):
        mp.install(m, 0x9FFF0)  # runs past 640 KiB
    with pytest.raises(ValueError):
        mp.config_table(mp.MpConfig(cpus=0))
