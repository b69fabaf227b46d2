"""Wiring the PIIX3 IDE function (00:01.1) and its drives into the pc machine.

QEMU's pc always has the function, drives or not. Drives come opened from the caller (index
= 2 * channel + unit, QEMU's `-drive index=`); the machine owns and closes them. With a boot
order, SeaBIOS gets the Open Firmware paths it matches for ATA devices (src/boot.c
build_ata_path: /pci@i0cf8/ide@1,1/drive@CHANNEL/disk@UNIT) ahead of the virtio disks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from southbridge.devices.blockdev import BlockBackend, BlockExecutor, InlineExecutor
from southbridge.devices.ide.ata import AtaDisk
from southbridge.devices.ide.atapi import AtapiCdrom
from southbridge.devices.ide.drive import IdeDrive

if TYPE_CHECKING:
    from southbridge.machine.pc import PcMachine
    from southbridge.pci.piix3ide import Piix3Ide


@dataclass(frozen=True)
class IdeUnit:
    index: int  # 0-3: primary master, primary slave, secondary master, secondary slave
    backend: BlockBackend
    cdrom: bool = False
    serial: str | None = None


@dataclass
class IdeSetup:
    units: Sequence[IdeUnit] = ()
    # (machine lock, name) -> executor; None: inline (the manual clock, qtest).
    executor: Callable[[Any, str], BlockExecutor] | None = None
    boot_order: str | None = None  # "c": disks first, "d": CD-ROMs first (fw_cfg bootorder)


def ata_path(index: int) -> str:
    return f"/pci@i0cf8/ide@1,1/drive@{index >> 1:x}/disk@{index & 1:x}"


def add_ide(m: PcMachine, setup: IdeSetup) -> tuple[Piix3Ide, list[Callable[[], None]]]:
    from southbridge.pci.piix3ide import LEGACY, Piix3Ide

    closers: list[Callable[[], None]] = []
    drives: list[IdeDrive | None] = [None] * 4
    for unit in setup.units:
        if not 0 <= unit.index < 4 or drives[unit.index] is not None:
            raise ValueError(f"IDE index {unit.index} is out of range or taken")
        name = f"ide{unit.index}"
        ex: BlockExecutor = InlineExecutor()
        if setup.executor is not None:
            ex = setup.executor(m.lock, name)
            closer = getattr(ex, "close", None)
            if callable(closer):
                closers.append(closer)
        closer = getattr(unit.backend, "close", None)
        if callable(closer):
            closers.append(closer)
        drives[unit.index] = make_drive(unit, ex)
    irqs = [m.gsi.input(irq, f"ide{n}") for n, (_, _, irq) in enumerate(LEGACY)]
    fn = Piix3Ide(irqs, drives)
    m.pci_bus.add(fn, 1, 1)
    if setup.boot_order in ("c", "d"):
        cds = [u.index for u in setup.units if u.cdrom]
        disks = [u.index for u in setup.units if not u.cdrom]
        first, then = (cds, disks) if setup.boot_order == "d" else (disks, cds)
        paths = [ata_path(i) for i in sorted(first) + sorted(then)]
        paths += [f"/pci@i0cf8/scsi@{s:x}/disk@0,0" for s in virtio_disk_slots(m)]
        m.fw_cfg.add_file("bootorder", "\n".join(paths).encode() + b"\0")
    return fn, closers


def make_drive(unit: IdeUnit, ex: BlockExecutor) -> IdeDrive:
    if unit.cdrom:
        return AtapiCdrom(unit.backend, ex, serial=unit.serial or "")
    return AtaDisk(unit.backend, ex, serial=unit.serial or "")


def virtio_disk_slots(m: PcMachine) -> list[int]:
    from southbridge.virtio.blk import VirtioBlk

    return [fn.slot for fn in m.virtio if isinstance(fn.dev, VirtioBlk)]
