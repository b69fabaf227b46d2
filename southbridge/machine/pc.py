"""The "pc" machine: an i440FX/PIIX3-style PC platform, wired like QEMU's `-M pc`.

Built CPU-less on the manual clock for qtest and tests, or on the host clock under KVM. Each
chipset part is added by its own `_add_*` method so the wiring of every device reads in one
place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from southbridge.core.clock import Clock
from southbridge.core.hostports import HostPortBackend
from southbridge.core.permissions import PortPermissions
from southbridge.devices.chardev import make_backend
from southbridge.devices.pic import PicPair
from southbridge.devices.uart import Uart16550
from southbridge.machine.base import Machine

MiB = 1 << 20


@dataclass
class PcConfig:
    memory_mb: int = 128
    smp: int = 1
    serial: str = "none"  # stdio | file:PATH | unix:PATH | none
    serial2: str | None = None
    debugcon: str | None = None  # stdio | file:PATH
    debugcon_port: int = 0x402
    rtc_base: str = "utc"  # utc | localtime | YYYY-MM-DDTHH:MM:SS
    extra: dict[str, object] = field(default_factory=dict)


class PcMachine(Machine):
    def __init__(
        self,
        config: PcConfig | None = None,
        clock: Clock | None = None,
        permissions: PortPermissions | None = None,
        host_ports: HostPortBackend | None = None,
        with_ram: bool = True,
    ) -> None:
        super().__init__(clock, permissions, host_ports)
        self.config = config if config is not None else PcConfig()
        if with_ram:
            self._add_ram()
        self._add_pic()
        self._add_serial()

    def _add_ram(self) -> None:
        """RAM as a PC lays it out: 0-640 KiB, then 1 MiB up to the configured size."""
        total = self.config.memory_mb * MiB
        self.memory.add(0, 640 * 1024, "ram-low")
        if total > MiB:
            self.memory.add(MiB, total - MiB, "ram-high")

    def _add_pic(self) -> None:
        """The 8259A pair and ELCR; ISA IRQ n is GSI n (IRQ 2 is the slave's cascade)."""
        self.pic = PicPair()
        self.ports.register(0x20, 2, self.pic.master, "pic-master")
        self.ports.register(0xA0, 2, self.pic.slave, "pic-slave")
        self.ports.register(0x4D0, 2, self.pic.elcr, "elcr")
        for n in range(16):
            if n != 2:
                self.gsi.connect(n, partial(self.pic.set_irq, n))
        self.irq_outputs["i8259"] = [self.pic.intr]
        self.irq_inputs["i8259"] = self.gsi.lines[:16]

    def _add_serial(self) -> None:
        """16550A UARTs: COM1 at 0x3F8/IRQ4 always (backend "none" discards its output) and
        COM2 at 0x2F8/IRQ3 when `serial2` is set. Backend threads enter under the device lock."""
        self.serial: list[Uart16550] = []
        ports = [("com1", 0x3F8, 4, self.config.serial)]
        if self.config.serial2 is not None:
            ports.append(("com2", 0x2F8, 3, self.config.serial2))
        for name, base, irq, spec in ports:
            uart = Uart16550(
                self.clock, self.gsi.input(irq, name), make_backend(spec), self.lock, name
            )
            self.ports.register(base, 8, uart, name)
            self.serial.append(uart)
