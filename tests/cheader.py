"""Values of a kernel header as the C compiler sees them: the ground truth our ctypes ABI
mirrors (linux/kvm.h, linux/vfio.h) are checked against."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest


def header_values(
    workdir: Path,
    header: str,
    structs: Iterable[str] = (),
    offsets: Iterable[tuple[str, str]] = (),
    names: Iterable[str] = (),
) -> dict[str, int]:
    """Compile and run a program printing `sizeof.S`, `offsetof.S.M` and each NAME's value
    from <HEADER>; skips the test (with the reason) without a C compiler or the header."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not (Path("/usr/include") / header).exists():
        pytest.skip(f"needs a C compiler and {header} (linux-libc-dev) to check the ABI")
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        f"#include <{header}>",
        "int main(void) {",
    ]
    for s in structs:
        lines.append(f'printf("sizeof.{s} %zu\\n", sizeof(struct {s}));')
    for s, member in offsets:
        lines.append(f'printf("offsetof.{s}.{member} %zu\\n", offsetof(struct {s}, {member}));')
    for name in names:
        lines.append(f'printf("{name} %llu\\n", (unsigned long long)({name}));')
    lines += ["return 0;", "}"]
    src, exe = workdir / "abi.c", workdir / "abi"
    src.write_text("\n".join(lines))
    subprocess.run([cc, "-o", str(exe), str(src)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}
