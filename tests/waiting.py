"""Waiting in guest-level tests for something that must happen (a file a guest writes, a
socket appearing): bounded polls, never a measure of time."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path


def wait_for(cond: Callable[[], object], bound_s: float, step_s: float = 0.02) -> bool:
    """Poll `cond` until it is true (True) or `bound_s` seconds have gone by (False)."""
    ev = threading.Event()
    for _ in range(max(1, int(bound_s / step_s))):
        if cond():
            return True
        ev.wait(step_s)
    return False


def text(path: Path) -> str:
    """What the guest wrote so far ("" before the file exists)."""
    return path.read_text(errors="replace") if path.exists() else ""


def run_until(cmd: Sequence[str], watch: Sequence[Path], pattern: str | None) -> int | None:
    """Run `cmd` until `pattern` (a multi-line regex; None: never) shows in one of the
    `watch` files, then kill it and return None; or until it ends: its exit status. The
    command bounds its own run (`--timeout`)."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rx = re.compile(pattern, re.M) if pattern is not None else None
    ev = threading.Event()
    try:
        while proc.poll() is None:
            if rx is not None and any(rx.search(text(p)) for p in watch):
                return None
            ev.wait(0.2)  # polling files the guest writes, not timing anything
        return proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
