"""Loading a BIOS image like a PC's flash: mapped read-only so that it ends at 4 GiB (the
reset vector at 0xFFFFFFF0 is its last 16 bytes), with its last 128 KiB (or all of a smaller
image) also at the top of the first megabyte (the 0xE0000-0xFFFFF legacy window), as
QEMU's `-bios` does. Writes to either are dropped (KVM_MEM_READONLY makes them MMIO exits).
"""

from __future__ import annotations

import mmap

from southbridge.core.memory import RamRegion
from southbridge.host.userfile import InputFileError, read_bytes
from southbridge.machine.base import Machine
from southbridge.machine.loaderror import LoadError as LoadError  # re-exported for loaders

FOUR_GIB = 1 << 32
LEGACY_TOP = 1 << 20
LEGACY_WINDOW = 128 * 1024
# The flash window a PC decodes below 4 GiB; QEMU's pc machine allows 16 MiB of firmware.
MAX_BIOS_SIZE = 16 << 20


def read_image(
    path: str, limit: int = MAX_BIOS_SIZE, what: str = "BIOS image", allow_empty: bool = False
) -> bytes:
    """Read a firmware image with clear errors for missing, unreadable, not a regular file
    (a FIFO is refused without blocking), empty (unless `allow_empty`) or too big."""
    try:
        return read_bytes(path, what, limit, allow_empty)
    except InputFileError as e:
        raise LoadError(str(e)) from None


def _rom(data: bytes) -> mmap.mmap:
    buf = mmap.mmap(-1, len(data), mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf[:] = data
    return buf


def map_bios(machine: Machine, data: bytes) -> list[RamRegion]:
    """Map `data` below 4 GiB and its tail at 0xE0000-0xFFFFF; returns the two regions.

    The image is padded at its start to whole pages (0xFF, like erased flash) so that its
    end stays at 4 GiB. Refuses an image that would cover RAM or an MMIO device."""
    pad = -len(data) % mmap.PAGESIZE
    image = b"\xff" * pad + data
    base = FOUR_GIB - len(image)
    if len(image) > MAX_BIOS_SIZE:
        raise LoadError(f"BIOS image of {len(data)} bytes is too big (at most {MAX_BIOS_SIZE})")
    clash = machine.mmio.overlaps(base, len(image))
    if clash is not None:
        raise LoadError(
            f"BIOS image of {len(data)} bytes is too big: mapped at 0x{base:x} it would cover "
            f"{clash.name} at 0x{clash.base:x}"
        )
    for r in machine.memory.regions:
        if r.gpa < FOUR_GIB and base < r.end:
            raise LoadError(
                f"BIOS image of {len(data)} bytes is too big: mapped at 0x{base:x} it would "
                f"cover {r.name} (RAM at 0x{r.gpa:x}-0x{r.end - 1:x}); use less memory"
            )
    alias = image[-LEGACY_WINDOW:]
    high = machine.memory.add(base, len(image), "bios", readonly=True, buf=_rom(image))
    low = machine.memory.add(
        LEGACY_TOP - len(alias), len(alias), "isa-bios", readonly=True, buf=_rom(alias)
    )
    return [high, low]


def load_bios(machine: Machine, path: str) -> list[RamRegion]:
    return map_bios(machine, read_image(path))
