"""`--kernel` without a BIOS: the image's format picks its boot protocol, as QEMU's
x86_load_linux / load_multiboot do. A bzImage ("HdrS" setup header) boots by the Linux
boot protocol (machine/bzimage.py, kvm/linuxboot.py); an image with a Multiboot header by
Multiboot (kvm/multiboot.py); an ELF `vmlinux` with a Xen PVH entry note through that
entry (kvm/pvh.py); anything else gets Multiboot's errors, which say what is missing.

For Linux, `--append` is the whole command line and `--initrd` one file, as with QEMU's
`-kernel bzImage -initrd FILE`. With `--bios` too, the firmware loads the bzImage
(`FirmwareKernel`, QEMU's way through fw_cfg and linuxboot_dma.bin).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

from southbridge.host.userfile import find_in
from southbridge.kvm import linuxboot, multiboot, pvh, tables
from southbridge.kvm.loader import LoadError, read_image
from southbridge.kvm.vcpu import Vcpu
from southbridge.machine import bzimage, linuxfw
from southbridge.machine.base import Machine
from southbridge.machine.pc import PcMachine

Entry = Callable[[Vcpu], None]
ACPI_RSDP_ADDR = 0x070  # boot_params field


class BootKernel(Protocol):
    """A kernel read and checked once per run, loaded into RAM on every (re)boot."""

    @property
    def protocol(self) -> str: ...

    def load(self, machine: Machine) -> Entry:
        """Write the kernel and its data into `machine`'s RAM; return how to enter it."""
        ...


@dataclass(frozen=True)
class LinuxKernel:
    path: str
    image: bytes
    cmdline: str
    initrd: bytes

    @property
    def protocol(self) -> str:
        return "linux"

    def load(self, machine: Machine) -> Entry:
        ram = multiboot.ram_ranges(machine)
        plan = bzimage.plan_linux(
            self.image,
            ram,
            multiboot.memory_map(ram),
            self.cmdline,
            self.initrd,
            f"kernel {self.path!r}",
        )
        linuxboot.load(machine, plan)
        rsdp = tables.install(machine)
        if rsdp is not None:  # boot_params.acpi_rsdp_addr (boot.rst, protocol 2.14)
            machine.space.write_bytes(
                bzimage.ZERO_PAGE_ADDR + ACPI_RSDP_ADDR, rsdp.to_bytes(8, "little")
            )
        return partial(linuxboot.enter, plan=plan)


@dataclass(frozen=True)
class MultibootKernel:
    files: multiboot.KernelFiles

    @property
    def protocol(self) -> str:
        return "multiboot"

    def load(self, machine: Machine) -> Entry:
        plan = self.files.load(machine)
        tables.install(machine)  # found by scanning, as a BIOS leaves them
        return partial(multiboot.enter, plan=plan)


def read_kernel(path: str, append: str | None, initrd: str | None, limit: int) -> BootKernel:
    """Read `path` (at most `limit` bytes, the RAM size) and the files that go with it."""
    data = read_image(path, limit, what="kernel")
    if bzimage.is_bzimage(data):
        bzimage.parse_header(data, f"kernel {path!r}")  # a bad header fails before the VM
        ramdisk = b"" if initrd is None else read_image(initrd, limit, "initrd", allow_empty=True)
        return LinuxKernel(path, data, append or "", ramdisk)
    # QEMU's order for anything else: Multiboot, then an ELF's PVH entry note.
    try:
        multiboot.find_header(data, f"kernel {path!r}")
    except multiboot.MultibootError:
        entry = pvh.find_entry(data)
        if entry is not None:
            rd = None if initrd is None else read_image(initrd, limit, "initrd", allow_empty=True)
            return pvh.pvh_kernel(path, data, entry, append, rd)
    return MultibootKernel(multiboot.kernel_files(path, data, append, initrd, limit))


@dataclass(frozen=True)
class FirmwareKernel:
    """A bzImage the BIOS loads (`--bios` with `--kernel`): handed over through fw_cfg with
    QEMU's option ROM (machine/linuxfw.py)."""

    path: str
    image: bytes
    cmdline: str
    initrd: bytes
    option_rom: bytes

    def install(self, machine: PcMachine) -> None:
        ram_top = max((r.end for r in machine.memory.regions if not r.readonly), default=0)
        linuxfw.add_kernel(
            machine.fw_cfg,
            self.image,
            self.initrd,
            self.cmdline,
            min(ram_top, 1 << 32),
            self.option_rom,
            f"kernel {self.path!r}",
        )


# Where set-up puts Debian's qemu-system-data option ROMs, then the system's QEMU data.
ROM_DIRS = (Path(__file__).resolve().parents[2] / ".cache" / "qemu", Path("/usr/share/qemu"))
ROM_DIR_ENV = "SOUTHBRIDGE_QEMU_DATA"
ROM_FILE = "linuxboot_dma.bin"
ROM_LIMIT = 128 * 1024  # an option ROM's size byte counts 512-byte blocks (at most 127.5 KiB)


def find_option_rom(name: str) -> Path:
    env = os.environ.get(ROM_DIR_ENV)
    dirs = [Path(env)] if env else list(ROM_DIRS)
    found = find_in(name, dirs)
    if found is not None:
        return found
    where = " or ".join(str(d) for d in dirs)
    raise LoadError(
        f"{name}: QEMU's option ROM was not found in {where} (./scripts/setup fetches it; "
        f"${ROM_DIR_ENV} names another directory)"
    )


def read_firmware_kernel(
    path: str, append: str | None, initrd: str | None, limit: int
) -> FirmwareKernel:
    """The kernel, initrd and option ROM for a BIOS boot, read and checked once."""
    data = read_image(path, limit, what="kernel")
    if not bzimage.is_bzimage(data):
        raise LoadError(
            f"kernel {path!r}: with --bios the kernel must be a Linux bzImage (a Multiboot "
            f"kernel boots without --bios)"
        )
    bzimage.parse_header(data, f"kernel {path!r}")
    ramdisk = b"" if initrd is None else read_image(initrd, limit, "initrd", allow_empty=True)
    rom = read_image(str(find_option_rom(ROM_FILE)), ROM_LIMIT, "option ROM")
    return FirmwareKernel(path, data, append or "", ramdisk, rom)
