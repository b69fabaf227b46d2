"""The Intel MultiProcessor table (MP spec 1.4, chapter 4) for kernels booted without
firmware and without ACPI (Linux `acpi=off`): the floating pointer and the configuration
table describing the pc as `machine/pc.py` wires it.

Entries in the spec's order (4.3): a processor per vCPU (APIC id n, CPU 0 the bootstrap
processor), the buses (PCI 0, ISA 1), the IOAPIC, the I/O interrupt assignments (the 8259's
INTR on pin 0 as ExtINT; ISA IRQ n on pin n but IRQ0 on pin 2, no IRQ2, as the interrupt
source override; each PCI slot's INTA-D on the PIRQ they swizzle onto, pins 16-19, level and
active low), then the local ones (ExtINT on the BSP's LINT0, NMI on every LINT1), as SeaBIOS
builds it for QEMU (src/fw/mptable.c) save the PCI routing, which goes straight to the
IOAPIC here since no firmware programs the PIIX3 route registers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from southbridge.devices import ioapic as ioapic_mod
from southbridge.devices import lapic as lapic_mod
from southbridge.pci.piix3 import pirq_of

if TYPE_CHECKING:
    from southbridge.machine.pc import PcMachine

SPEC_REV = 4  # MP spec 1.4
FLOATING_LEN = 16
HEADER_LEN = 44
OEM_ID = b"SBRIDGE "
PRODUCT_ID = b"PC          "

ENTRY_PROCESSOR, ENTRY_BUS, ENTRY_IOAPIC, ENTRY_IOINT, ENTRY_LOCALINT = 0, 1, 2, 3, 4
CPU_ENABLED, CPU_BSP = 1, 2
INT_INT, INT_NMI, INT_SMI, INT_EXTINT = 0, 1, 2, 3
# Interrupt entry flags (table 4-10): polarity bits 1:0, trigger bits 3:2; 0 = the bus's.
FLAGS_CONFORMS = 0
FLAGS_LEVEL_LOW = 3 | 3 << 2
PCI_BUS, ISA_BUS = 0, 1
ALL_LAPICS = 0xFF
PIRQ_PIN_BASE = 16
# CPUID.1 values SeaBIOS uses when it cannot ask: family 6, and FPU | APIC.
DEFAULT_SIGNATURE = 0x00000600
DEFAULT_FEATURES = 0x00000201


@dataclass(frozen=True)
class MpConfig:
    cpus: int
    pci_slots: tuple[int, ...] = tuple(range(32))  # root-bus slots to route
    ioapic_id: int = 0
    cpu_signature: int = DEFAULT_SIGNATURE
    cpu_features: int = DEFAULT_FEATURES


def checksum(data: bytes | bytearray) -> int:
    return -sum(data) & 0xFF


def _irq_entry(kind: int, itype: int, flags: int, bus: int, irq: int, dst: int, pin: int) -> bytes:
    return struct.pack("<BBHBBBB", kind, itype, flags, bus, irq, dst, pin)


def config_table(cfg: MpConfig) -> bytes:
    """The MP configuration table (4.2 header, 4.3 base entries), checksummed."""
    if not 1 <= cfg.cpus <= 255:
        raise ValueError(f"MP table: {cfg.cpus} CPUs (APIC ids reach 254)")
    lapic_ver = lapic_mod.VERSION & 0xFF
    ioapic_ver = ioapic_mod.VERSION
    entries = bytearray()
    for n in range(cfg.cpus):
        flags = CPU_ENABLED | (CPU_BSP if n == 0 else 0)
        entries += struct.pack(
            "<BBBBII8x", ENTRY_PROCESSOR, n, lapic_ver, flags, cfg.cpu_signature, cfg.cpu_features
        )
    entries += struct.pack("<BB6s", ENTRY_BUS, PCI_BUS, b"PCI   ")
    entries += struct.pack("<BB6s", ENTRY_BUS, ISA_BUS, b"ISA   ")
    entries += struct.pack(
        "<BBBBI", ENTRY_IOAPIC, cfg.ioapic_id, ioapic_ver, 1, ioapic_mod.DEFAULT_BASE
    )
    io = cfg.ioapic_id
    count = cfg.cpus + 3
    irqs = [_irq_entry(ENTRY_IOINT, INT_EXTINT, FLAGS_CONFORMS, ISA_BUS, 0, io, 0)]
    for irq in range(16):
        if irq != 2:
            pin = 2 if irq == 0 else irq
            irqs.append(_irq_entry(ENTRY_IOINT, INT_INT, FLAGS_CONFORMS, ISA_BUS, irq, io, pin))
    for slot in cfg.pci_slots:
        for intx in range(4):
            # PCI bus IRQ: bits 6:2 the device, bits 1:0 the pin, INTA = 0 (MP spec D.3).
            src = slot << 2 | intx
            pin = PIRQ_PIN_BASE + pirq_of(slot, intx)
            irqs.append(_irq_entry(ENTRY_IOINT, INT_INT, FLAGS_LEVEL_LOW, PCI_BUS, src, io, pin))
    irqs.append(_irq_entry(ENTRY_LOCALINT, INT_EXTINT, FLAGS_CONFORMS, ISA_BUS, 0, 0, 0))
    irqs.append(_irq_entry(ENTRY_LOCALINT, INT_NMI, FLAGS_CONFORMS, ISA_BUS, 0, ALL_LAPICS, 1))
    entries += b"".join(irqs)
    count += len(irqs)
    header = bytearray(
        struct.pack(
            "<4sHBB8s12sIHHIHBx",
            b"PCMP",
            HEADER_LEN + len(entries),
            SPEC_REV,
            0,
            OEM_ID,
            PRODUCT_ID,
            0,  # no OEM table
            0,
            count,
            lapic_mod.DEFAULT_BASE,
            0,  # no extended entries
            0,
        )
    )
    table = header + entries
    table[7] = checksum(table)
    return bytes(table)


def floating_pointer(table_addr: int) -> bytes:
    """The MP floating pointer structure (4.1): feature byte 1 = 0 (a configuration table
    is present), byte 2 bit 7 (IMCRP) clear: the 8259 reaches the CPUs in virtual wire mode."""
    out = bytearray(struct.pack("<4sIBBB5x", b"_MP_", table_addr, 1, SPEC_REV, 0))
    out[10] = checksum(out)
    return bytes(out)


def size(cfg: MpConfig) -> int:
    return FLOATING_LEN + len(config_table(cfg))


def machine_config(machine: PcMachine) -> MpConfig:
    slots = tuple(sorted({devfn >> 3 for devfn in machine.pci_bus.functions}))
    return MpConfig(cpus=len(machine.lapics), pci_slots=slots, ioapic_id=machine.ioapic.id)


def install(machine: PcMachine, base: int) -> int:
    """Write the floating pointer at `base` (16-byte aligned, where a kernel scans: the
    last KiB of base memory 0x9FC00, or 0xF0000-0xFFFFF when RAM is there; MP spec 4) and the
    configuration table right after it; returns `base`. The range, `size` bytes, must be RAM
    the memory map reserves."""
    if base % 16:
        raise ValueError(f"MP floating pointer at 0x{base:x} is not 16-byte aligned")
    table = config_table(machine_config(machine))
    length = FLOATING_LEN + len(table)
    region = machine.memory.find(base)
    if region is None or region.readonly or base + length > region.end:
        raise ValueError(f"MP table at 0x{base:x}+0x{length:x} is not in writable RAM")
    machine.space.write_bytes(base, floating_pointer(base + FLOATING_LEN) + table)
    return base
