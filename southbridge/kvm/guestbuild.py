"""Build the bundled assembly guests (southbridge/guests/*.S) with the system's `as` and `ld`.

Images are cached under $SOUTHBRIDGE_CACHE (default ~/.cache/southbridge/guests) by a hash
of the source, the included files and the linker script, so a changed guest is rebuilt and
an unchanged one is built once.

Guests named `mb_*` are 32-bit Multiboot kernels: linked by `mb.ld` into ELF images (`.elf`)
for `southbridge run --kernel`, instead of flat reset-vector images. Guests named `lx_*` are
Linux-boot-protocol test kernels: assembled as 64-bit objects (with 16- and 32-bit parts),
linked by `lx.ld` and flattened into a bzImage (`.bzimage`); `pvh_*` are 32-bit ELF kernels
with a Xen PVH entry note (`pvh.ld`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

GUEST_DIR = Path(__file__).resolve().parent.parent / "guests"
LINKER_SCRIPT = "guest.ld"
MULTIBOOT_PREFIX = "mb_"
MULTIBOOT_LINKER_SCRIPT = "mb.ld"
LINUX_PREFIX = "lx_"
LINUX_LINKER_SCRIPT = "lx.ld"
PVH_PREFIX = "pvh_"
PVH_LINKER_SCRIPT = "pvh.ld"


class GuestBuildError(Exception):
    """A bundled guest could not be built (no assembler, or the source does not assemble)."""


def cache_dir() -> Path:
    env = os.environ.get("SOUTHBRIDGE_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "southbridge"
    return base / "guests"


def available() -> list[str]:
    """Names of the bundled guests (sources that have a reset vector)."""
    return sorted(
        p.stem
        for p in GUEST_DIR.glob("*.S")
        if not p.stem.startswith(("_", MULTIBOOT_PREFIX, LINUX_PREFIX, PVH_PREFIX))
    )


def multiboot_available() -> list[str]:
    """Names of the bundled Multiboot kernels."""
    return sorted(p.stem for p in GUEST_DIR.glob(f"{MULTIBOOT_PREFIX}*.S"))


def linux_available() -> list[str]:
    """Names of the bundled Linux-boot-protocol and PVH test kernels."""
    return sorted(p.stem for pre in (LINUX_PREFIX, PVH_PREFIX) for p in GUEST_DIR.glob(f"{pre}*.S"))


def _linker_script(name: str) -> Path:
    if name.startswith(LINUX_PREFIX):
        return GUEST_DIR / LINUX_LINKER_SCRIPT
    if name.startswith(PVH_PREFIX):
        return GUEST_DIR / PVH_LINKER_SCRIPT
    multiboot = name.startswith(MULTIBOOT_PREFIX)
    return GUEST_DIR / (MULTIBOOT_LINKER_SCRIPT if multiboot else LINKER_SCRIPT)


def _commands(name: str, source: Path, obj: Path, linked: Path, binary: Path) -> list[list[str]]:
    script = str(_linker_script(name))
    if name.startswith(LINUX_PREFIX):
        return [
            ["as", "--64", "-I", str(GUEST_DIR), "-o", str(obj), str(source)],
            ["ld", "-m", "elf_x86_64", "-T", script, "-o", str(linked), str(obj)],
            ["objcopy", "-O", "binary", str(linked), str(binary)],
        ]
    return [
        ["as", "--32", "-I", str(GUEST_DIR), "-o", str(obj), str(source)],
        ["ld", "-m", "elf_i386", "-T", script, "-o", str(binary), str(obj)],
    ]


def _digest(source: Path) -> str:
    h = hashlib.sha256()
    for p in [source, _linker_script(source.stem), *sorted(GUEST_DIR.glob("_*.S"))]:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def build(name: str) -> Path:
    """Path of the flat binary (the ELF image for `mb_*`, the bzImage for `lx_*`) for guest
    `name`, building it if the cache lacks it."""
    source = GUEST_DIR / f"{name}.S"
    if not source.is_file():
        have = ", ".join(available() + multiboot_available() + linux_available())
        raise GuestBuildError(f"no bundled guest named {name!r} (have: {have})")
    suffix = ".bin"
    if name.startswith((MULTIBOOT_PREFIX, PVH_PREFIX)):
        suffix = ".elf"
    elif name.startswith(LINUX_PREFIX):
        suffix = ".bzimage"
    out = cache_dir() / f"{name}-{_digest(source)}{suffix}"
    if out.is_file():
        return out
    tools = ("as", "ld", "objcopy") if name.startswith(LINUX_PREFIX) else ("as", "ld")
    for tool in tools:
        if shutil.which(tool) is None:
            raise GuestBuildError(f"building guest {name!r} needs '{tool}' (binutils)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sbguest-") as tmp:
        obj = Path(tmp) / f"{name}.o"
        linked = Path(tmp) / f"{name}.elf"
        binary = Path(tmp) / f"{name}.bin"
        for cmd in _commands(name, source, obj, linked, binary):
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise GuestBuildError(
                    f"building guest {name!r}: {' '.join(cmd[:1])} failed:\n{proc.stderr.strip()}"
                )
        # Atomic publish: concurrent builders (pytest-xdist) never see a partial image.
        tmp_out = out.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(binary, tmp_out)
        os.replace(tmp_out, out)
    return out
