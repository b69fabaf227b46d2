"""`--netdev tap,ifname=NAME` (host/tap.py) end to end, as root, in a network namespace of
its own (tests/tap_child.py): virtio-net's frames come out of the tap and frames written
into the tap reach the guest's receive buffers. Bad names and a missing device are one
error line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from southbridge.host.net import NetError
from southbridge.host.tap import open_tap

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(os.geteuid() != 0, reason="a tap interface needs root")
def test_frames_cross_a_tap_both_ways() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "tap_child.py")],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    if proc.returncode == 77:
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["", "a" * 16, "a/b", " eth0"])
def test_bad_interface_names(name: str) -> None:
    with pytest.raises(NetError, match="is not an interface name"):
        open_tap(name)


def test_missing_tun_device(tmp_path: Path) -> None:
    with pytest.raises(NetError, match="cannot open"):
        open_tap("sbtap9", device=str(tmp_path / "tun"))
