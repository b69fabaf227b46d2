#!/usr/bin/env python3
"""Build the small Linux initramfs set-up puts beside Debian's kernel: a newc cpio archive
(the kernel's Documentation/driver-api/early-userspace/buffer-format.rst) holding
busybox-static as /bin/busybox and an /init script that prints a marker on the console
and powers the machine off (ACPI S5 when the platform has it, else reboot -f ends a
--no-reboot run).

usage: mkinitramfs.py BUSYBOX OUTPUT
"""

from __future__ import annotations

import os
import sys

MARKER = "SOUTHBRIDGE-LINUX-UP"
INIT = f"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
echo "{MARKER} cpus=$(/bin/busybox nproc)"
/bin/busybox poweroff -f
/bin/busybox reboot -f
"""


def _entry(ino: int, name: str, mode: int, data: bytes = b"") -> bytes:
    raw = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = head + raw
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def build(busybox: bytes) -> bytes:
    files = [
        ("bin", 0o040755, b""),
        ("bin/busybox", 0o100755, busybox),
        ("init", 0o100755, INIT.encode()),
    ]
    archive = b"".join(_entry(i + 1, n, m, d) for i, (n, m, d) in enumerate(files))
    archive += _entry(0, "TRAILER!!!", 0)
    return archive + b"\0" * (-len(archive) % 512)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        data = build(f.read())
    tmp = argv[2] + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
