"""Smoke test of benchmarks/ide.py: both guests read a small image under southbridge and
exit cleanly, and QEMU gets the same kernel, argument and disk. Nothing asserts a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import ide
from benchmarks.peers import timed_run
from southbridge.kvm import guestbuild
from southbridge.kvm.testing import kvm_unavailable_reason

_reason = kvm_unavailable_reason()


def test_qemu_gets_the_same_kernel_argument_and_disk(tmp_path: Path) -> None:
    kernel, image = tmp_path / "k.elf", tmp_path / "d.img"
    cmds = ide.commands("qemu-system-x86_64", kernel, image, 7)
    q, sb = cmds["qemu"], cmds["southbridge"]
    assert q[q.index("-append") + 1] == "7" and sb[sb.index("--append") + 1] == "7"
    assert f"file={image},if=ide,format=raw" in q and f"file={image},if=ide,format=raw" in sb
    assert "isa-debug-exit,iobase=0xf4,iosize=4" in q and q[q.index("-kernel") + 1] == str(kernel)


@pytest.mark.kvm
@pytest.mark.skipif(_reason is not None, reason=_reason or "")
@pytest.mark.parametrize("guest", sorted(ide.GUESTS.values()))
def test_guest_reads_and_exits(tmp_path: Path, guest: str) -> None:
    image = tmp_path / "d.img"
    image.write_bytes(bytes(4 * ide.CHUNK))
    cmd = ide.commands(None, guestbuild.build(guest), image, 4)["southbridge"]
    assert timed_run(cmd, ide.EXIT_STATUS, timeout=60) > 0
