"""QEMU's pc-testdev, the device kvm-unit-tests and similar guest test programs expect.

Port map (QEMU hw/misc/pc-testdev.c):
* 0xE0-0xE3: a 32-bit scratch register; an access of N bytes at offset k reads or writes
  bytes k..k+N-1 of it (the offset is taken modulo 4, like QEMU's `addr & 3`).
* 0xE4-0xE7: "flush page": a 32-bit write names a guest page whose host mapping QEMU
  mprotect()s away and back, so KVM must rebuild its shadow/EPT entry. Without a software
  TLB or a shadow mapping of our own there is nothing to drop; the write is accepted and
  counted (the guest's test of its own re-fault is KVM's to pass). Reads return 0.
* 0xE8-0xEB: the same scratch register decoded byte by byte.
* 0x2000-0x2017: a byte write to 0x2000+N sets GSI N to (value != 0); it drives one input
  per GSI, which the GSI router fans out to the PIC and the IOAPIC. Reads return 0.
* MMIO 0xFF000000: a RAM-like scratch window, 64 KiB like QEMU's IOMEM_LEN.
"""

from __future__ import annotations

from typing import Any, ClassVar

from southbridge.core.device import BusDevice, ones
from southbridge.core.irq import GsiRouter, IrqLine
from southbridge.core.state import StateError, check_header, get_int, header

SCRATCH_PORT = 0xE0
FLUSH_PORT = 0xE4
SCRATCH_BYTE_PORT = 0xE8
IRQ_PORT = 0x2000
IRQ_COUNT = 24
IOMEM_BASE = 0xFF000000
IOMEM_LEN = 0x10000


class PcTestdev:
    """Holds the shared state; the attributes `scratch`, `flush`, `scratch_byte`, `irq` and
    `iomem` are the bus devices to register at the addresses above."""

    STATE_KIND: ClassVar[str] = "pc-testdev"
    STATE_VERSION: ClassVar[int] = 1

    def __init__(self, gsi: GsiRouter | None = None, iomem_len: int = IOMEM_LEN) -> None:
        self.data = 0
        self.flushes = 0
        self.last_flush_page: int | None = None
        n = min(IRQ_COUNT, len(gsi)) if gsi is not None else 0
        self.lines: list[IrqLine] = [gsi.input(i, "testdev") for i in range(n)] if gsi else []
        self.iomem_buf = bytearray(iomem_len)
        self.scratch = _Scratch(self)
        self.scratch_byte = _ScratchByte(self)
        self.flush = _Flush(self)
        self.irq = _IrqPorts(self)
        self.iomem = _Iomem(self)

    def read_scratch(self, offset: int, size: int) -> int:
        shift = (offset & 3) * 8
        return (self.data >> shift) & ones(size)

    def write_scratch(self, offset: int, size: int, value: int) -> None:
        shift = (offset & 3) * 8
        mask = (ones(size) << shift) & 0xFFFFFFFF
        self.data = (self.data & ~mask) | ((value << shift) & mask)

    def set_gsi(self, n: int, level: bool) -> None:
        if n < len(self.lines):
            self.lines[n].set(level)

    def save(self) -> dict[str, Any]:
        return header(self) | {
            "data": self.data,
            "levels": [line.level for line in self.lines],
            "iomem": bytes(self.iomem_buf),
        }

    def restore(self, state: dict[str, Any]) -> None:
        state = check_header(state, self)
        data = get_int(state, "data", 0, 0xFFFFFFFF)
        levels = state.get("levels")
        if (
            not isinstance(levels, list)
            or len(levels) != len(self.lines)
            or not all(isinstance(v, bool) for v in levels)
        ):
            raise StateError(f"pc-testdev: levels must be {len(self.lines)} booleans")
        iomem = state.get("iomem")
        if not isinstance(iomem, bytes | bytearray) or len(iomem) != len(self.iomem_buf):
            raise StateError(f"pc-testdev: iomem must be {len(self.iomem_buf)} bytes")
        self.data = data
        self.iomem_buf[:] = iomem
        for line, level in zip(self.lines, levels, strict=True):
            line.set(level)


class _Scratch(BusDevice):
    io_sizes = frozenset({1, 2, 4})
    name = "pc-testdev-ioport"

    def __init__(self, dev: PcTestdev) -> None:
        self.dev = dev

    def read(self, offset: int, size: int) -> int:
        return self.dev.read_scratch(offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.dev.write_scratch(offset, size, value)


class _ScratchByte(_Scratch):
    io_sizes = frozenset({1})
    name = "pc-testdev-ioport-byte"


class _Flush(BusDevice):
    io_sizes = frozenset({4})
    name = "pc-testdev-flush-page"

    def __init__(self, dev: PcTestdev) -> None:
        self.dev = dev

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        self.dev.flushes += 1
        self.dev.last_flush_page = value & ~0xFFF


class _IrqPorts(BusDevice):
    io_sizes = frozenset({1})
    name = "pc-testdev-irq-line"

    def __init__(self, dev: PcTestdev) -> None:
        self.dev = dev

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        self.dev.set_gsi(offset, value != 0)


class _Iomem(BusDevice):
    io_sizes = frozenset({1, 2, 4, 8})
    name = "pc-testdev-iomem"

    def __init__(self, dev: PcTestdev) -> None:
        self.dev = dev

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.dev.iomem_buf[offset : offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        self.dev.iomem_buf[offset : offset + size] = value.to_bytes(size, "little")
