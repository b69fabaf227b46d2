"""The set-up's initramfs (scripts/mkinitramfs.py) read back as the kernel's initramfs
unpacker reads a newc archive (buffer-format.rst): "070701", thirteen 8-digit hex fields,
the NUL-terminated name padded to 4 bytes, the data padded to 4, a TRAILER!!! entry."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "mkinitramfs.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mkinitramfs", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parse(archive: bytes) -> list[tuple[str, int, bytes]]:
    out: list[tuple[str, int, bytes]] = []
    pos = 0
    while True:
        assert archive[pos : pos + 6] == b"070701"
        f = [int(archive[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = f[1], f[6], f[11]
        pos += 110
        name = archive[pos : pos + namesize]
        assert name.endswith(b"\0")
        pos += namesize
        pos += -pos % 4
        data = archive[pos : pos + size]
        pos += size
        pos += -pos % 4
        if name == b"TRAILER!!!\0":
            assert len(archive) % 512 == 0 and not archive[pos:].strip(b"\0")
            return out
        out.append((name[:-1].decode(), mode, data))


def test_archive_holds_busybox_and_an_init_that_powers_off(tmp_path: Path) -> None:
    mod = _module()
    busybox = bytes(range(256)) * 3 + b"x"  # odd length: data padding is exercised
    entries = parse(mod.build(busybox))
    assert [(n, m) for n, m, _ in entries] == [
        ("bin", 0o040755),
        ("bin/busybox", 0o100755),
        ("init", 0o100755),
    ]
    assert entries[1][2] == busybox
    init = entries[2][2].decode()
    assert init.startswith("#!/bin/busybox sh\n") and mod.MARKER in init and "poweroff -f" in init


def test_main_writes_the_output_file(tmp_path: Path) -> None:
    bb = tmp_path / "busybox"
    bb.write_bytes(b"\x7fELF")
    out = tmp_path / "initrd.img"
    assert _module().main(["mkinitramfs.py", str(bb), str(out)]) == 0
    assert [n for n, _, _ in parse(out.read_bytes())] == ["bin", "bin/busybox", "init"]
