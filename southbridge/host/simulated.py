"""A simulated host: a fake sysfs tree and live simulated PCI devices from one description.

Each `SimSpec` describes one host function: a `FakeDevice` for the sysfs side plus what the
device does (`specs_from_inventory` makes them from a captured host, e.g. an lspci dump).
`SimulatedHost` writes the sysfs tree (so `probe_sysfs` sees the devices as it would on a
real host) and builds a `SimulatedDevice` per function: its config space (a `ConfigSource`,
with a log of every write that reached it), I/O registers attached to a `FakeHostPorts`
backend at the host BAR address, MMIO memory for memory BARs, and an interrupt source (INTx
level or edge, and MSI vectors) that the assignment code forwards.

The I/O BAR of a simulated endpoint decodes these registers (offsets in the BAR):
  0x0  ID (read-only): vendor | device << 16
  0x4  scratch: read/write 32 bits
  0x8  doorbell: a write fires the interrupt (the value's low 5 bits pick the MSI vector)
  0xC  status (read: bit 0 = INTx asserted, bits 31:8 = doorbells so far) / ack (write:
       lowers INTx)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from southbridge.core.device import BusDevice, ones
from southbridge.core.hostports import FakeHostPorts
from southbridge.host.fakesysfs import FakeBar, FakeDevice, build_fake_sysfs
from southbridge.host.inventory import HostInventory, probe_sysfs
from southbridge.host.pciaddr import PciAddress

REG_ID = 0x0
REG_SCRATCH = 0x4
REG_DOORBELL = 0x8
REG_STATUS = 0xC
IO_REGS = 0x10

# IDs, revision, class and header type: no write changes them on a real function.
_READ_ONLY = frozenset({0, 1, 2, 3, 8, 9, 10, 11, 14})

MSI_CAP_OFFSET = 0x50
MSIX_CAP_OFFSET = 0x70


@dataclass
class SimSpec:
    """One simulated host function: its sysfs description and its behaviour."""

    fake: FakeDevice
    irq_mode: str = "level"  # "level" | "edge": how the INTx source behaves
    msi_vectors: int = 0  # 0: no MSI capability; else 1, 2, 4, ... 32
    msix_vectors: int = 0  # 0: no MSI-X; else a table in the first memory BAR at 0
    msix_pba: int = 0x800
    raw: bytes | None = None  # config bytes as read from a host (an lspci dump) instead

    @property
    def addr(self) -> PciAddress:
        return PciAddress.parse(self.fake.addr)

    def config(self) -> bytes:
        """The FakeDevice header plus the capability chain this spec asks for, or the raw
        bytes of a captured device (padded to a conventional config space)."""
        if self.raw is not None:
            return self.raw.ljust(256, b"\0") if len(self.raw) < 256 else self.raw
        c = bytearray(self.fake.config())
        caps: list[tuple[int, bytes]] = []
        if self.msi_vectors:
            mmc = self.msi_vectors.bit_length() - 1
            ctrl = (mmc << 1) | 0x80  # 64-bit address, no per-vector masking
            body = bytearray(0x0E)
            body[0] = 0x05
            body[2:4] = ctrl.to_bytes(2, "little")
            caps.append((MSI_CAP_OFFSET, bytes(body)))
        if self.msix_vectors:
            mem = sorted(i for i, b in self.fake.bars.items() if b.kind != "io")
            if not mem:
                raise ValueError(f"{self.fake.addr}: MSI-X needs a memory BAR")
            bir = mem[0]
            body = bytearray(12)
            body[0] = 0x11
            body[2:4] = (self.msix_vectors - 1).to_bytes(2, "little")
            body[4:8] = (0 | bir).to_bytes(4, "little")
            body[8:12] = (self.msix_pba | bir).to_bytes(4, "little")
            caps.append((MSIX_CAP_OFFSET, bytes(body)))
        if caps and not self.fake.bridge:
            c[0x06] |= 0x10  # status: capability list
            c[0x34] = caps[0][0]
            for i, (off, raw) in enumerate(caps):
                c[off : off + len(raw)] = raw
                c[off + 1] = caps[i + 1][0] if i + 1 < len(caps) else 0
        return bytes(c)


class InterruptSource:
    """A device's interrupt output as the host's VFIO would expose it.

    `intx` listeners hear every level change of the INTx line; while `msi_enabled` (set by
    whoever enabled MSI on the host side) a doorbell calls the `msi` listeners with the vector
    instead.
    """

    def __init__(self, mode: str) -> None:
        if mode not in ("level", "edge"):
            raise ValueError(f"interrupt mode {mode!r} (level or edge)")
        self.mode = mode
        self.level = False
        self.msi_enabled = False
        self.intx_listeners: list[Callable[[bool], None]] = []
        self.msi_listeners: list[Callable[[int], None]] = []

    def _set(self, level: bool) -> None:
        if level != self.level:
            self.level = level
            for fn in list(self.intx_listeners):
                fn(level)

    def fire(self, vector: int = 0) -> None:
        if self.msi_enabled:
            for fn in list(self.msi_listeners):
                fn(vector)
        elif self.mode == "level":
            self._set(True)
        else:
            self._set(True)
            self._set(False)

    def ack(self) -> None:
        self._set(False)


class SimIoRegisters(BusDevice):
    """The simulated endpoint's I/O registers (see the module docstring)."""

    io_sizes = frozenset({1, 2, 4})

    def __init__(self, dev: SimulatedDevice) -> None:
        self.dev = dev
        self.scratch = 0
        self.doorbells = 0

    def _reg(self, reg: int) -> int:
        if reg == REG_ID:
            return self.dev.vendor | self.dev.device << 16
        if reg == REG_SCRATCH:
            return self.scratch
        if reg == REG_STATUS:
            return int(self.dev.irq.level) | (self.doorbells & 0xFFFFFF) << 8
        return 0xFFFFFFFF  # beyond the registers: nothing decodes

    def read(self, offset: int, size: int) -> int:
        reg, shift = offset & ~3, 8 * (offset & 3)
        return (self._reg(reg) >> shift) & ones(size)

    def write(self, offset: int, size: int, value: int) -> None:
        reg, shift = offset & ~3, 8 * (offset & 3)
        if reg == REG_SCRATCH:
            mask = ones(size) << shift
            self.scratch = (self.scratch & ~mask) | ((value << shift) & mask)
        elif reg == REG_DOORBELL:
            self.doorbells += 1
            self.dev.irq.fire(value & 0x1F)
        elif reg == REG_STATUS:
            self.dev.irq.ack()


class SimMemory(BusDevice):
    """A memory BAR's contents: plain RAM-like bytes, any aligned access."""

    io_sizes = frozenset({1, 2, 4, 8})

    def __init__(self, size: int, name: str) -> None:
        self.data = bytearray(size)
        self.name = name
        self.log: list[tuple[str, int, int, int]] = []

    def read(self, offset: int, size: int) -> int:
        if offset < 0 or offset + size > len(self.data):
            return ones(size)
        value = int.from_bytes(self.data[offset : offset + size], "little")
        self.log.append(("r", offset, size, value))
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        self.log.append(("w", offset, size, value))
        if offset >= 0 and offset + size <= len(self.data):
            self.data[offset : offset + size] = (value & ones(size)).to_bytes(size, "little")


class SimulatedDevice:
    """One live simulated host function; also its `ConfigSource` (size, read, write)."""

    def __init__(self, spec: SimSpec) -> None:
        self.spec = spec
        self.addr = spec.addr
        self.cfg = bytearray(spec.config())
        self.size = len(self.cfg)
        self.config_writes: list[tuple[int, int, int]] = []
        self.vendor = spec.fake.vendor
        self.device = spec.fake.device
        self.irq = InterruptSource(spec.irq_mode)
        self.io: SimIoRegisters | None = None
        self.memory: dict[int, SimMemory] = {}
        for index, bar in spec.fake.bars.items():
            if bar.kind == "io":
                self.io = SimIoRegisters(self)
            else:
                self.memory[index] = SimMemory(bar.size, f"{self.addr}.bar{index}")

    # ConfigSource
    def read(self, offset: int, size: int) -> int:
        if offset < 0 or offset + size > self.size:
            return ones(size)
        return int.from_bytes(self.cfg[offset : offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        """A config write that reached the host device: logged, and stored (read-only
        identity bytes excepted) so a test sees exactly what the filter let through."""
        self.config_writes.append((offset, size, value))
        for i in range(size):
            o = offset + i
            if 0 <= o < self.size and o not in _READ_ONLY:
                self.cfg[o] = (value >> (8 * i)) & 0xFF


@dataclass
class SimulatedHost:
    """The fake sysfs tree, the live devices and the fake host port backend, together."""

    root: Path
    specs: list[SimSpec]
    ports: FakeHostPorts = field(default_factory=FakeHostPorts)
    devices: dict[PciAddress, SimulatedDevice] = field(default_factory=dict)

    def __post_init__(self) -> None:
        build_fake_sysfs(self.root, [s.fake for s in self.specs])
        for spec in self.specs:
            # The sysfs config file carries the capabilities too, as the kernel shows them.
            cfg_path = self.root / "bus" / "pci" / "devices" / str(spec.addr) / "config"
            cfg_path.write_bytes(spec.config())
            dev = SimulatedDevice(spec)
            self.devices[spec.addr] = dev
            for bar in spec.fake.bars.values():
                if bar.kind == "io" and dev.io is not None:
                    self.ports.attach(bar.start, bar.size, dev.io)

    def inventory(self) -> HostInventory:
        return probe_sysfs(self.root)

    def get(self, addr: PciAddress) -> SimulatedDevice | None:
        return self.devices.get(addr)


def build_simulated_host(
    root: str | os.PathLike[str], specs: list[SimSpec], ports: FakeHostPorts | None = None
) -> SimulatedHost:
    return SimulatedHost(Path(root), specs, ports if ports is not None else FakeHostPorts())


def _lowbit(x: int) -> int:
    return x & -x


def specs_from_inventory(
    inventory: HostInventory,
    sizes: dict[tuple[PciAddress, int], int] | None = None,
    io_cap: int = 0x100,
    mem_cap: int = 0x1000,
) -> list[SimSpec]:
    """Simulated devices that look like `inventory`'s (an lspci dump, or another host).

    Config bytes are kept as captured. BARs come from the BAR registers; their sizes from
    the inventory's resources when it has them, else from `sizes[(addr, index)]`, else the
    largest size the address's alignment allows (PCI 3.0 6.2.5.1: a BAR is naturally
    aligned), capped at `io_cap` / `mem_cap` since a dump does not say.
    """
    sizes = sizes or {}
    out: list[SimSpec] = []
    for dev in inventory:
        cfg = dev.config
        u32 = [int.from_bytes(cfg[o : o + 4].ljust(4, b"\0"), "little") for o in range(0, 64, 4)]
        bars: dict[int, FakeBar] = {}
        res = {r.index: r for r in dev.resources if r.size}
        nbars = 2 if dev.is_bridge else 6
        i = 0
        while i < nbars:
            v = u32[4 + i]
            if not v or v == 0xFFFFFFFF:
                i += 1
                continue
            if v & 1:
                kind, addr, cap = "io", v & 0xFFFC, io_cap
            elif (v >> 1) & 3 == 2 and i + 1 < nbars:
                kind, addr, cap = "mem64", (v & ~0xF) | u32[5 + i] << 32, mem_cap
            else:
                kind, addr, cap = "mem32", v & ~0xF, mem_cap
            size = res[i].size if i in res else sizes.get((dev.addr, i))
            if size is None:
                size = min(_lowbit(addr), cap) if addr else cap
            if addr:
                bars[i] = FakeBar(kind, addr, size, prefetch=bool(v & 8) and kind != "io")
            i += 2 if kind == "mem64" else 1
        fake = FakeDevice(
            dev.addr.short(),
            dev.vendor,
            dev.device,
            dev.class_code,
            bars=bars,
            irq=cfg[0x3C] if len(cfg) > 0x3D else 0,
            revision=dev.revision,
            multifunction=len(cfg) > 0x0E and bool(cfg[0x0E] & 0x80),
            bridge=(dev.secondary_bus or 0, dev.subordinate_bus or 0) if dev.is_bridge else None,
            pin=cfg[0x3D] if len(cfg) > 0x3D else 0,
        )
        out.append(SimSpec(fake, raw=bytes(cfg)))
    return out


def example_specs() -> list[SimSpec]:
    """A small host: host bridge, an ISA bridge, a PCI-PCI bridge with a NIC-like endpoint
    (I/O + memory BARs, level INTx, MSI) behind it, and a two-function device on bus 0."""
    return [
        SimSpec(FakeDevice("00:00.0", 0x8086, 0x1237, 0x060000)),
        SimSpec(FakeDevice("00:01.0", 0x8086, 0x7000, 0x060100)),
        SimSpec(FakeDevice("00:1c.0", 0x8086, 0x2448, 0x060400, bridge=(2, 2))),
        SimSpec(
            FakeDevice(
                "02:00.0",
                0x10EC,
                0x8139,
                0x020000,
                bars={0: FakeBar("io", 0xC000, 0x100), 1: FakeBar("mem32", 0xFEB00000, 0x1000)},
                irq=11,
            ),
            msi_vectors=4,
            msix_vectors=4,
        ),
        SimSpec(
            FakeDevice(
                "00:03.0",
                0x1B36,
                0x0005,
                0x00FF00,
                bars={0: FakeBar("io", 0xC100, 0x10)},
                irq=10,
                multifunction=True,
            )
        ),
        SimSpec(
            FakeDevice(
                "00:03.1",
                0x1B36,
                0x0006,
                0x00FF00,
                bars={0: FakeBar("io", 0xC110, 0x10)},
                irq=10,
                pin=2,
            ),
            irq_mode="edge",
        ),
    ]
