"""Wiring virtio-pci functions into the pc machine: disks, entropy, console, boot order.

The host-side pieces come opened from the caller (images, the entropy source, the console's
chardev backend, an executor factory taking the machine lock); the machine owns them from
here on and closes them with itself. Functions take PCI slots from `first_slot` up, in the
order disks, network cards, rng, console, as QEMU assigns addresses in command-line order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from southbridge.devices.blockdev import BlockBackend, BlockExecutor, InlineExecutor
from southbridge.devices.chardev import CharBackend
from southbridge.machine.ide import IdeSetup
from southbridge.virtio.blk import VirtioBlk
from southbridge.virtio.console import VirtioConsole
from southbridge.virtio.net import NetBackend, VirtioNet
from southbridge.virtio.pci import VirtioPci
from southbridge.virtio.rng import EntropySource, VirtioRng

if TYPE_CHECKING:
    from southbridge.machine.pc import PcMachine

FIRST_SLOT = 3


@dataclass
class VirtioSetup:
    drives: Sequence[BlockBackend] = ()
    # (machine lock, name) -> executor; None: inline (the manual clock, qtest).
    executor: Callable[[Any, str], BlockExecutor] | None = None
    # (frame backend, MAC) per virtio-net function.
    nets: Sequence[tuple[NetBackend, bytes]] = ()
    rng: EntropySource | None = None
    console: CharBackend | None = None
    boot_order: str | None = None  # "c": the virtio disks first, "n": the NICs (bootorder)
    # The option ROM SeaBIOS runs for the virtio-net functions (iPXE's pxe-virtio.rom), as
    # fw_cfg "pciVVVV,DDDD.rom", which SeaBIOS prefers to a ROM BAR (optionrom.c).
    net_rom: bytes | None = None
    first_slot: int = FIRST_SLOT
    # The IDE drives the same options name (`machine/ide.py`; PcMachine takes them from here).
    ide: IdeSetup = field(default_factory=IdeSetup)


def add_virtio(m: PcMachine, setup: VirtioSetup) -> list[Callable[[], None]]:
    """Plug the functions in; returns what `close` must call."""
    closers: list[Callable[[], None]] = []
    fns: list[VirtioPci] = []
    slot = setup.first_slot
    disk_slots: list[int] = []
    for i, drive in enumerate(setup.drives):
        name = f"virtio-blk{i}"
        ex: BlockExecutor = InlineExecutor()
        if setup.executor is not None:
            ex = setup.executor(m.lock, name)
            closer = getattr(ex, "close", None)
            if callable(closer):
                closers.append(closer)
        closer = getattr(drive, "close", None)
        if callable(closer):
            closers.append(closer)
        fns.append(VirtioPci(VirtioBlk(drive, ex), name=name))
        disk_slots.append(slot)
        slot += 1
    net_slots: list[int] = []
    for i, (backend, mac) in enumerate(setup.nets):
        net = VirtioNet(backend, mac)
        backend.attach(m.locked(net.input_ready), m.locked(net.output_ready))
        closers.append(backend.close)
        fns.append(VirtioPci(net, name=f"virtio-net{i}"))
        if i == 0 and setup.net_rom is not None:
            ids = f"pci{fns[-1].vendor_id:04x},{fns[-1].device_id:04x}.rom"
            m.fw_cfg.add_file(ids, setup.net_rom)
        net_slots.append(slot)
        slot += 1
    if setup.rng is not None:
        fns.append(VirtioPci(VirtioRng(setup.rng), name="virtio-rng"))
    if setup.console is not None:
        con = VirtioConsole(setup.console)
        setup.console.attach(m.locked(con.input_ready), m.locked(con.output_ready))
        closers.append(setup.console.close)
        fns.append(VirtioPci(con, name="virtio-console"))
    for k, fn in enumerate(fns):
        m.pci_bus.add(fn, setup.first_slot + k)
    m.virtio = fns
    if setup.boot_order == "c" and disk_slots:
        m.fw_cfg.add_file("bootorder", bootorder(disk_slots))
    elif setup.boot_order == "n" and net_slots:
        nics = "\n".join(f"/pci@i0cf8/ethernet@{s:x}" for s in net_slots).encode()
        m.fw_cfg.add_file(
            "bootorder", nics + b"\n" + bootorder(disk_slots) if disk_slots else nics + b"\0"
        )
    return closers


def bootorder(disk_slots: Sequence[int]) -> bytes:
    """SeaBIOS's boot order file (QEMU's fw_cfg `bootorder`): one Open Firmware path a
    line, NUL-terminated as QEMU writes it; a virtio-blk function is a "scsi" class device
    with disk@0,0 below it."""
    return "\n".join(f"/pci@i0cf8/scsi@{s:x}/disk@0,0" for s in disk_slots).encode() + b"\0"
