"""The "pc" machine: an i440FX/PIIX3-style PC platform, wired like QEMU's `-M pc`.

Built CPU-less on the manual clock for qtest and tests, or on the host clock under KVM. Each
chipset part is added by its own `_add_*` method so the wiring of every device reads in one
place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from southbridge.core.clock import Clock
from southbridge.core.hostports import HostPortBackend
from southbridge.core.irq import IrqLine, TickOrder
from southbridge.core.permissions import PortPermissions
from southbridge.core.state import StateError, Stateful
from southbridge.devices import debugexit, fwcfg, i8042, postcode, reset, testdev
from southbridge.devices import hpet as hpet_mod
from southbridge.devices import ioapic as ioapic_mod
from southbridge.devices import lapic as lapic_mod
from southbridge.devices.apicbus import ApicBus
from southbridge.devices.chardev import CharBackend, NullBackend
from southbridge.devices.debugport import ByteSink, DebugCon
from southbridge.devices.hpet import PC_INTCAP, Hpet
from southbridge.devices.irqgate import IrqGate
from southbridge.devices.msi import MsiRouter
from southbridge.devices.pic import PicPair
from southbridge.devices.pit import Pit
from southbridge.devices.rtc import Rtc
from southbridge.devices.uart import Uart16550
from southbridge.machine import smbios
from southbridge.machine.base import Machine
from southbridge.machine.cmos import fill_cmos
from southbridge.machine.ide import IdeSetup
from southbridge.machine.virtio import VirtioSetup, add_virtio

MiB = 1 << 20


@dataclass
class PcConfig:
    memory_mb: int = 128
    smp: int = 1
    debugcon_port: int = 0x402
    rtc_base: str = "utc"  # utc | localtime | YYYY-MM-DDTHH:MM:SS
    acpi: bool = True  # the PIIX4 PM function and ACPI tables (QEMU's -no-acpi clears it)
    hpet: bool = True  # the HPET at 0xFED00000 and its ACPI table (QEMU's hpet=off clears it)
    extra: dict[str, object] = field(default_factory=dict)


# Legacy COM ports: name, I/O base, ISA IRQ.
COM_PORTS = (("com1", 0x3F8, 4), ("com2", 0x2F8, 3))


class PcMachine(Machine):
    """The pc platform. Host-side backends come opened (`southbridge.host.chardev`): `serial`
    for COM1 and COM2 in order (none: COM1 with nothing plugged in), `debugcon` for the
    debug console port; the machine owns them from here on and `close` closes them."""

    def __init__(
        self,
        config: PcConfig | None = None,
        clock: Clock | None = None,
        permissions: PortPermissions | None = None,
        host_ports: HostPortBackend | None = None,
        with_ram: bool = True,
        serial: Sequence[CharBackend] = (),
        debugcon: ByteSink | None = None,
        virtio: VirtioSetup | None = None,
        ide: IdeSetup | None = None,
    ) -> None:
        super().__init__(clock, permissions, host_ports)
        self.config = config if config is not None else PcConfig()
        if len(serial) > len(COM_PORTS):
            raise ValueError(f"{len(serial)} serial ports: the pc has {len(COM_PORTS)}")
        self._serial_backends: list[CharBackend] = list(serial) or [NullBackend()]
        self.debugcon_stream = debugcon
        if with_ram:
            self._add_ram()
        self._add_pic()
        self._legacy_gates: dict[int, IrqGate] = {}
        self._add_pit()
        self._add_rtc()
        self._add_hpet()
        self._add_serial()
        self._add_misc()
        self._add_pci()
        self._add_apic()
        self._add_pm()
        virtio = virtio or VirtioSetup()
        self._add_virtio(virtio)
        self._add_ide(ide if ide is not None else virtio.ide)
        self._add_acpi()

    def _add_ram(self) -> None:
        """RAM as a PC lays it out: 0-640 KiB, then 1 MiB up to the configured size."""
        total = self.config.memory_mb * MiB
        self.memory.add(0, 640 * 1024, "ram-low")
        if total > MiB:
            self.memory.add(MiB, total - MiB, "ram-high")

    def _add_pic(self) -> None:
        """The 8259A pair and ELCR; ISA IRQ n is GSI n (IRQ 2 is the slave's cascade)."""
        self.pic: PicPair = PicPair()
        self.ports.register(0x20, 2, self.pic.master, "pic-master")
        self.ports.register(0xA0, 2, self.pic.slave, "pic-slave")
        self.ports.register(0x4D0, 2, self.pic.elcr, "elcr")
        for n in range(16):
            if n != 2:
                self.gsi.connect(n, partial(self.pic.set_irq, n))
        self.irq_outputs["i8259"] = [self.pic.intr]
        self.irq_inputs["i8259"] = self.gsi.lines[:16]

    def _add_pit(self) -> None:
        """The 8254 PIT at 0x40-0x43, its OUT0 on ISA IRQ 0 (GSI 0), and port 0x61 (channel
        2 gate, speaker data, refresh toggle, OUT2)."""
        # The PIT and the RTC deliver owed ticks in due order (core/irq.py TickOrder).
        self.tick_order = TickOrder()
        self.pit = Pit(self.clock, self._legacy_line(0, "pit"), order=self.tick_order)
        self.ports.register(0x40, 4, self.pit, "pit")
        self.ports.register(0x61, 1, self.pit.port61, "port61")

    def _add_rtc(self) -> None:
        """The MC146818 RTC/CMOS at 0x70-0x73 (bank 0 index/data, second bank index/data),
        IRQ8 on GSI 8, its time base from `rtc_base`; `extra["rtc_lost_tick_policy"]`
        picks the periodic interrupt's policy: "slew" by default (QEMU's `-rtc
        driftfix=slew`, so a guest counting IRQ8 under host load counts every tick, like the
        PIT's reinjection), or "discard" (QEMU's device default). The NVRAM holds memory
        sizes, CPU count and boot order (`machine.cmos`)."""
        policy = self.config.extra.get("rtc_lost_tick_policy", "slew")
        self.rtc = Rtc(
            self.clock,
            self._legacy_line(8, "rtc"),
            base=self.config.rtc_base,
            lost_tick_policy=str(policy),
            order=self.tick_order,
        )
        self.ports.register(0x70, 4, self.rtc, "rtc")
        # The BIOS's view of the machine in NVRAM, as QEMU's pc_cmos_init writes it. RAM is
        # mapped contiguously below 4 GiB (`_add_ram`), so none is reported above 4 GiB.
        fill_cmos(self.rtc, self.config.memory_mb * MiB, cpus=self.config.smp)

    def _legacy_line(self, gsi: int, name: str) -> IrqLine:
        """The PIT's or the RTC's line into `gsi`; with an HPET it passes a gate that the
        HPET's legacy replacement route closes (the chipset disconnects those outputs)."""
        if not self.config.hpet:
            return self.gsi.input(gsi, name)
        gate = IrqGate(self.gsi.input(gsi, name), name)
        self._legacy_gates[gsi] = gate
        return gate.input

    def _add_hpet(self) -> None:
        """The HPET at 0xFED00000 (QEMU's pc unless hpet=off): its routing capability is QEMU's
        pc mask, I/O APIC input 2 only, and input 2 is GSI 0 here (the IRQ0 -> pin 2
        override), so timer 0's legacy route and route 2 both drive GSI 0 (8259 IRQ0 and
        I/O APIC pin 2, as the HPET spec's legacy route asks); input 8 is GSI 8. In legacy
        replacement mode the PIT's and the RTC's gates close, as QEMU's pc gates them."""
        self.hpet: Hpet | None = None
        if not self.config.hpet:
            return
        pins = {p for p in range(1, ioapic_mod.PINS) if PC_INTCAP >> p & 1} | {2, 8}
        lines = {p: self.gsi.input(0 if p == 2 else p, f"hpet-{p}") for p in sorted(pins)}
        self.hpet = Hpet(self.clock, lines, PC_INTCAP)
        for gate in self._legacy_gates.values():
            self.hpet.legacy_listeners.append(gate.set_closed)
        # And the PIT stops timing IRQ0 (no owed ticks pile up behind the closed gate).
        self.hpet.legacy_listeners.append(lambda on: self.pit.set_irq_enabled(not on))
        self.mmio.register(hpet_mod.BASE, hpet_mod.WINDOW_SIZE, self.hpet, "hpet")

    def _add_serial(self) -> None:
        """16550A UARTs: COM1 at 0x3F8/IRQ4 always (a null backend discards its output) and
        COM2 at 0x2F8/IRQ3 when a second backend is given. Backend threads call the UART
        under the device lock."""
        self.serial: list[Uart16550] = []
        for (name, base, irq), backend in zip(COM_PORTS, self._serial_backends, strict=False):
            uart = Uart16550(self.clock, self.gsi.input(irq, name), backend, name)
            backend.attach(self.locked(uart.input_ready), self.locked(uart.output_ready))
            self.ports.register(base, 8, uart, name)
            self.serial.append(uart)

    def _add_misc(self) -> None:
        """The small QEMU-compatible platform devices: debugcon (given a `debugcon` sink),
        POST port 0x80, isa-debug-exit (0xF4, 4 ports), port 0x92, the i8042 (0x60/0x64,
        IRQ1/IRQ12),
        fw_cfg (0x510, DMA at 0x514), pc-testdev, and the 0xCF9 reset control register
        (reached through the PCI 0xCF8 device, so not registered here).

        A20 is enabled while either the i8042 output port or port 0x92 enables it (the
        PIIX ORs ALT_A20_GATE with the keyboard controller's A20GATE); `a20_enabled` is
        informational since KVM does not mask A20."""
        self._a20_sources = {"kbc": True, "port92": False}
        self.a20_enabled = True
        self.debugcon: DebugCon | None = None
        if self.debugcon_stream is not None:
            self.debugcon = DebugCon(self.debugcon_stream.write)
            self.ports.register(self.config.debugcon_port, 1, self.debugcon, "debugcon")
        self.postcode = postcode.PostCodePort(self.clock)
        self.ports.register(postcode.PORT, 1, self.postcode, "post-code")
        # Write-only sinks: under KVM their writes are coalesced (kvm/coalesced.py) and
        # replayed in order before the next exit, so the POST history's times are those of
        # the replay.
        self.coalesced_ports: list[tuple[int, int]] = [(postcode.PORT, 1)]
        if self.debugcon is not None:
            self.coalesced_ports.append((self.config.debugcon_port, 1))
        self.debug_exit = debugexit.DebugExit(self.request)
        self.ports.register(debugexit.PORT, debugexit.IOSIZE, self.debug_exit, "isa-debug-exit")
        self.port92 = reset.Port92(self.request, partial(self._set_a20, "port92"))
        self.ports.register(reset.PORT92, 1, self.port92, "port92")
        self.reset_control = reset.ResetControl(self.request)
        self.i8042 = i8042.I8042(
            self.request,
            partial(self._set_a20, "kbc"),
            self.gsi.input(1, "i8042-kbd"),
            self.gsi.input(12, "i8042-aux"),
        )
        self.ports.register(i8042.DATA_PORT, 1, self.i8042.data_port, "i8042-data")
        self.ports.register(i8042.STATUS_PORT, 1, self.i8042.command_port, "i8042-cmd")
        self.fw_cfg = fwcfg.FwCfg(self.memory)
        self.fw_cfg.add_i64(fwcfg.RAM_SIZE, self.config.memory_mb * MiB)
        self.fw_cfg.add_i16(fwcfg.NB_CPUS, self.config.smp)
        self.fw_cfg.add_i16(fwcfg.MAX_CPUS, self.config.smp)
        self.fw_cfg.add_bytes(fwcfg.UUID, bytes(16))
        self.fw_cfg.add_i16(fwcfg.NOGRAPHIC, 0)
        self.fw_cfg.add_i16(fwcfg.BOOT_MENU, 0)
        # QEMU's default: -1 = never reboot after "No bootable device" (SeaBIOS reads it).
        self.fw_cfg.add_file("etc/boot-fail-wait", (0xFFFFFFFF).to_bytes(4, "little"))
        # No display: QEMU then names COM1 as SeaBIOS's console (its sercon), so the BIOS,
        # option ROMs and boot loaders writing through INT 10h print on the serial port.
        self.fw_cfg.add_file("etc/sercon-port", (COM_PORTS[0][1]).to_bytes(2, "little"))
        # Ready SMBIOS tables, as QEMU gives them: SeaBIOS then only adds its type 0.
        # One mapped range from 0 like QEMU's type 19 (the 640 KiB-1 MiB hole included).
        ram = [(0, self.config.memory_mb * MiB)]
        tables = smbios.SmbiosConfig(ram=ram, cpus=self.config.smp)
        for name, data in smbios.fw_cfg_files(tables).items():
            self.fw_cfg.add_file(name, data)
        self.ports.register(fwcfg.SELECTOR_PORT, 2, self.fw_cfg.io, "fw_cfg")
        if self.fw_cfg.dma is not None:
            self.ports.register(fwcfg.DMA_PORT, 8, self.fw_cfg.dma, "fw_cfg-dma")
        self.testdev = testdev.PcTestdev(self.gsi)
        td = self.testdev
        self.ports.register(testdev.SCRATCH_PORT, 4, td.scratch, "pc-testdev-ioport")
        self.ports.register(testdev.FLUSH_PORT, 4, td.flush, "pc-testdev-flush-page")
        # 0xE8-0xEB only aliases the scratch register: a debugcon moved to 0xE9 wins.
        byte_ports = range(testdev.SCRATCH_BYTE_PORT, testdev.SCRATCH_BYTE_PORT + 4)
        if self.debugcon is None or self.config.debugcon_port not in byte_ports:
            self.ports.register(testdev.SCRATCH_BYTE_PORT, 4, td.scratch_byte, "pc-testdev-byte")
        self.ports.register(testdev.IRQ_PORT, testdev.IRQ_COUNT, td.irq, "pc-testdev-irq-line")
        self.mmio.register(testdev.IOMEM_BASE, len(td.iomem_buf), td.iomem, "pc-testdev-iomem")

    def _add_pci(self) -> None:
        """The PCI bus: i440FX host bridge at 00:00.0, PIIX3 ISA bridge at 00:01.0 and the
        demo device at 00:02.0; mechanism #1 at 0xCF8/0xCFC (0xCF9 bytes reach the reset
        control register). PIRQA-D drive IOAPIC GSIs 16-19 and the ISA IRQ selected in the
        PIIX3 route registers (one input line per PIRQ/IRQ pair, the old IRQ lowered first).
        No ECAM window, like QEMU's i440FX; `extra["pci_ecam_base"]` maps one."""
        from southbridge.pci.bus import PciRoot
        from southbridge.pci.demo import DemoDevice
        from southbridge.pci.host import Ecam, PciHost
        from southbridge.pci.i440fx import I440fx
        from southbridge.pci.piix3 import Piix3

        self.piix3 = Piix3()
        self.pci_bus = PciRoot(self.ports, self.mmio, self.space, None, self.piix3.intx_input)
        self.i440fx = I440fx()
        self.pci_bus.add(self.i440fx, 0)
        self.pci_bus.add(self.piix3, 1)
        self.demo = DemoDevice()
        self.pci_bus.add(self.demo, 2)
        self.pci_host = PciHost(self.pci_bus)
        self.pci_host.reset_control = self.reset_control  # 0xCF9, made by _add_misc
        self.ports.register(0xCF8, 4, self.pci_host.address_port, "pci-config-address")
        self.ports.register(0xCFC, 4, self.pci_host.data_port, "pci-config-data")
        for n in range(4):
            self.piix3.pirq[n].connect(self.gsi.input(16 + n, f"pirq{'ABCD'[n]}").set)
        self.piix3.connect_isa(self.gsi.input)
        self.pci_ecam: Ecam | None = None
        ecam_base = self.config.extra.get("pci_ecam_base")
        if isinstance(ecam_base, int):
            self.pci_ecam = Ecam(self.pci_bus)
            self.pci_ecam.map(self.mmio, ecam_base)

    def _add_apic(self) -> None:
        """The APIC bus with `smp` local APICs (IDs 0..n-1, CPU 0 the BSP) and the IOAPIC.

        IOAPIC at 0xFEC00000 (4 KiB window): GSI n reaches pin n, except the PC's interrupt
        source override GSI 0 (the PIT) -> pin 2; GSI 2 (the cascade) is not wired; pin 0
        carries the 8259's INTR (ExtINT virtual wire); pins 16-19 get PIRQA-D. The 8259's
        INTR also drives every CPU's LINT0 and MSIs from PCI functions reach the bus.

        CPU 0's xAPIC window is registered at 0xFEE00000 for CPU-less use (qtest `readl
        0xfee00020`). Under KVM each vCPU must reach its own LAPIC: the run loop routes the
        window per vCPU (following IA32_APIC_BASE) before consulting the MMIO bus.

        `irq_inputs["ioapic"]` stays the GSI lines: QEMU's `irq_intercept_in ioapic` reports
        the IOAPIC's input numbers before its 0 -> 2 remap, so GSI n is reported as n."""
        self.apic_bus = ApicBus()
        self.lapics = [
            lapic_mod.LocalApic(n, self.clock, self.apic_bus, bsp=n == 0)
            for n in range(max(1, self.config.smp))
        ]
        self.mmio.register(lapic_mod.DEFAULT_BASE, lapic_mod.WINDOW_SIZE, self.lapics[0], "lapic")
        self.ioapic = ioapic_mod.IoApic(self.apic_bus)
        self.mmio.register(ioapic_mod.DEFAULT_BASE, ioapic_mod.WINDOW_SIZE, self.ioapic, "ioapic")
        for gsi in range(min(len(self.gsi), ioapic_mod.PINS)):
            if gsi != 2:
                self.gsi.connect(gsi, partial(self.ioapic.set_irq, 2 if gsi == 0 else gsi))
        self.pic.intr.connect(partial(self.ioapic.set_irq, 0))
        for lapic in self.lapics:
            self.pic.intr.connect(lapic.set_lint0)
        # Wires already high (the PIT's OUT0 and so the 8259's INTR at power-on) reach the
        # IOAPIC inputs connected after them, so it latches what the 8259 latches (the
        # LAPICs' LINT0 is left as before: the KVM guests' interrupt tests depend on it).
        for gsi in range(min(len(self.gsi), ioapic_mod.PINS)):
            if gsi != 2 and self.gsi.lines[gsi].level:
                self.ioapic.set_irq(2 if gsi == 0 else gsi, True)
        if self.pic.intr.level:
            self.ioapic.set_irq(0, True)
        self.msi = MsiRouter(self.apic_bus)
        self.pci_bus.msi_sink = self.msi
        self._add_irq_acks()

    def _add_irq_acks(self) -> None:
        """Acknowledges back to the GSI's devices (what reinjecting timers pace on): the
        8259's INTA of ISA IRQ n is GSI n; a local APIC's EOI of IOAPIC pin n's vector is
        GSI n, pin 2 being GSI 0 and pin 0 the 8259's ExtINT (no GSI)."""
        self.pic.ack_listeners.append(self.gsi.ack)

        def ioapic_acked(pin: int) -> None:
            if pin != 0:
                self.gsi.ack(0 if pin == 2 else pin)

        self.ioapic.ack_listeners.append(ioapic_acked)

    def _add_virtio(self, setup: VirtioSetup) -> None:
        """virtio-pci disks, rng and console from slot 3 up (`machine/virtio.py`)."""
        from southbridge.virtio.pci import VirtioPci

        self.virtio: list[VirtioPci] = []
        self._virtio_closers = add_virtio(self, setup)

    def _add_ide(self, setup: IdeSetup) -> None:
        """The PIIX3 IDE function at 00:01.1 (QEMU's pc always has it): both channels in
        compatibility mode on IRQ 14 and 15, its drives from `setup` (`machine/ide.py`)."""
        from southbridge.machine.ide import add_ide

        self.ide, self._ide_closers = add_ide(self, setup)

    STATE_KIND = "machine/pc"

    def stateful(self) -> dict[str, Stateful]:
        """The pc's stateful parts under stable keys (port 0x61 is inside the PIT's state,
        the PCI functions inside the bus's, each under its slot path). Interrupt
        controllers come last: saving a timer brings it up to date, which may move the
        wires they latch."""
        parts: dict[str, Stateful] = {"pit": self.pit, "rtc": self.rtc}
        if self.hpet is not None:
            parts["hpet"] = self.hpet
        parts.update((uart.name, uart) for uart in self.serial)
        if self.debugcon is not None:
            parts["debugcon"] = self.debugcon
        parts.update(
            {
                "post-code": self.postcode,
                "isa-debug-exit": self.debug_exit,
                "port92": self.port92,
                "reset-control": self.reset_control,
                "i8042": self.i8042,
                "fw_cfg": self.fw_cfg,
                "pc-testdev": self.testdev,
                "pci": self.pci_bus,
                "pci-host": self.pci_host,
            }
        )
        parts.update((f"lapic{n}", lapic) for n, lapic in enumerate(self.lapics))
        parts.update({"pic": self.pic, "ioapic": self.ioapic})
        return parts

    def check_invariants(self) -> None:
        """The 8259 pair and the IOAPIC latch the same wires: ISA IRQ n is IOAPIC pin n
        (IRQ 0 is pin 2, the interrupt source override) and the 8259's INTR is pin 0
        (ExtINT), so their restored input levels must agree."""
        lines = self.ioapic.lines
        for irq in range(16):
            if irq == 2:
                continue
            chip = self.pic.master if irq < 8 else self.pic.slave
            pic_level = bool(chip.lines >> (irq & 7) & 1)
            if pic_level != bool(lines >> (2 if irq == 0 else irq) & 1):
                raise StateError(f"pic and ioapic disagree on the level of ISA IRQ {irq}")
        if self.pic.intr.level != bool(lines & 1):
            raise StateError("ioapic pin 0 differs from the 8259's INTR")

    def close(self) -> None:
        """Close the host-side backends (serial ports, debugcon) the machine was given."""
        for closer in getattr(self, "_virtio_closers", ()):
            closer()
        for closer in getattr(self, "_ide_closers", ()):
            closer()
        for uart in self.serial:
            uart.backend.close()
        if self.debugcon_stream is not None:
            self.debugcon_stream.close()
        super().close()

    def _set_a20(self, source: str, enabled: bool) -> None:
        self._a20_sources[source] = enabled
        self.a20_enabled = any(self._a20_sources.values())

    def _add_pm(self) -> None:
        """The PIIX4 PM function at 00:01.3 (QEMU's pc has it unless -no-acpi): SCI on ISA
        IRQ 9 / GSI 9 (level; through the PIC and the IOAPIC pin 9), the APM control port
        0xB2-0xB3 as the FADT's SMI_CMD, S5 -> power off, S3 -> suspended with CMOS 0x0F =
        0xFE (the BIOS's resume code then jumps to the FACS waking vector) until the power
        button or the RTC alarm wakes it with a reset, as QEMU does."""
        from southbridge.pci.piix4pm import APM_CNT_PORT, Piix4Pm

        self.pm: Piix4Pm | None = None
        self.suspended = False
        if not self.config.acpi:
            return
        self.pm = Piix4Pm(self.clock, self.gsi.input(9, "sci"), self._pm_sleep, self._pm_wake)
        self.pci_bus.add(self.pm, 1, 3)
        self.ports.register(APM_CNT_PORT, 2, self.pm.apm, "apm")
        self.rtc.irq.connect(self.pm.rtc_alarm)

    def _add_acpi(self) -> None:
        """ACPI tables for the machine as built (`machine/acpi`), in fw_cfg as QEMU gives
        them to firmware: `etc/acpi/tables`, `etc/acpi/rsdp` and the `etc/table-loader`
        commands that place and link them. A boot without firmware writes the same tables
        with `acpi.boot.install`."""
        from southbridge.machine.acpi import tableloader
        from southbridge.machine.acpi.build import AcpiConfig, build

        self.acpi_tables: tableloader.Linker | None = None
        if not self.config.acpi:
            return
        ecam = None
        if self.pci_ecam is not None and self.pci_ecam.base is not None:
            ecam = (self.pci_ecam.base, self.pci_ecam.buses)
        cfg = AcpiConfig(
            cpus=len(self.lapics),
            ram_below_4g=self.config.memory_mb * MiB,
            serial=len(self.serial),
            hpet=self.config.hpet,
            ecam=ecam,
        )
        self.acpi_tables = build(cfg)
        for name, data in self.acpi_tables.files.items():
            self.fw_cfg.add_file(name, bytes(data))
        self.fw_cfg.add_file(tableloader.LOADER_FILE, self.acpi_tables.loader_bytes())

    def _pm_sleep(self, state: int) -> None:
        if state == 5:
            self.request("poweroff")
        elif state == 3:
            self.suspended = True
            self.rtc.cmos_set(0x0F, 0xFE)  # CMOS shutdown status: resume from S3

    def _pm_wake(self) -> None:
        self.suspended = False
        self.request("reset")
