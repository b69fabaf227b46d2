"""Whole-VM snapshot and restore of a 256 MiB guest that has filled 48 MiB of its RAM
(guests/mb_fill.S), against QEMU's migration to a file, in the same run:

* southbridge: `run --kernel GUEST -m 256 --qmp ...`, then QMP `stop` and
  `x-southbridge-snapshot-save`; restore is `run ... --restore FILE` until QMP answers
  `query-status` "running".
* QEMU: `-accel kvm -kernel GUEST -m 256 -qmp ...`, then `stop` and `migrate
  "exec:cat > FILE"` until `query-migrate` says completed; restore is `-incoming
  "exec:cat FILE"` until `query-status` says "running" (a paused one is sent `cont`).

Printed: save time, file size, restore time (process start to running) with the plain
start-up to running of the same command beside it, and the ratios southbridge / QEMU
(issue 14's target: no slower than QEMU, file no larger). The median of --repeat runs.

Run: .venv/bin/python -m benchmarks.snapshot [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from benchmarks.peers import (
    child_env,
    ensure_qemu,
    ratio,
    southbridge_cmd,
    summary,
    use_compiled_bytecode,
)
from southbridge.kvm import guestbuild

MEMORY_MB = 256
Figures = tuple[float, int, float, float]  # save s, file bytes, restore s, plain start s
BOUND_S = 300.0


def _cmd(kind: str, qemu: str | None, kernel: Path, sock: Path, log: Path) -> list[str]:
    if kind == "southbridge":
        return southbridge_cmd(
            *("--kernel", str(kernel), "-m", str(MEMORY_MB), "--serial", "none"),
            *("--debugcon", f"file:{log}", "--qmp", f"unix:{sock},server,wait=off"),
        )
    assert qemu is not None
    return [
        *(qemu, "-accel", "kvm", "-nodefaults", "-display", "none", "-monitor", "none"),
        *("-serial", "none", "-m", str(MEMORY_MB), "-kernel", str(kernel)),
        *("-qmp", f"unix:{sock},server=on,wait=off"),
        *("-chardev", f"file,id=dc,path={log}", "-device", "isa-debugcon,iobase=0x402,chardev=dc"),
    ]


async def _connect(sock: Path) -> QMPClient:
    deadline = time.monotonic() + BOUND_S
    while True:
        qmp = QMPClient("bench")
        try:
            await qmp.connect(str(sock))
            return qmp
        except Exception:  # the socket is not up yet
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.005)


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + BOUND_S
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError("bench: timed out")
        await asyncio.sleep(0.005)


async def _one(kind: str, qemu: str | None, kernel: Path, tmp: Path) -> Figures:
    sock, log, snap = tmp / f"{kind}.sock", tmp / f"{kind}.log", tmp / f"{kind}.snap"
    for p in (sock, log, snap):
        p.unlink(missing_ok=True)
    proc = subprocess.Popen(_cmd(kind, qemu, kernel, sock, log), env=child_env())
    try:
        qmp = await _connect(sock)
        await _until(lambda: _filled(log))
        start = time.perf_counter()
        await qmp.execute("stop")
        if kind == "southbridge":
            await qmp.execute("x-southbridge-snapshot-save", {"file": str(snap)})
        else:
            await qmp.execute("migrate", {"uri": f"exec:cat > {snap}"})

            async def done() -> bool:
                info: Any = await qmp.execute("query-migrate")
                if info.get("status") == "failed":
                    raise RuntimeError(f"bench: QEMU migration failed: {info}")
                return bool(info.get("status") == "completed")

            await _until(done)
        save = time.perf_counter() - start
        await qmp.execute("quit")
        with contextlib.suppress(EOFError):  # the peer closes after quit's reply
            await qmp.disconnect()
    finally:
        proc.wait(BOUND_S)
    size = snap.stat().st_size
    restore = await _to_running(_cmd(kind, qemu, kernel, sock, log) + _incoming(kind, snap), sock)
    boot = await _to_running(_cmd(kind, qemu, kernel, sock, log), sock)
    return save, size, restore, boot


def _incoming(kind: str, snap: Path) -> list[str]:
    return ["--restore", str(snap)] if kind == "southbridge" else ["-incoming", f"exec:cat {snap}"]


async def _to_running(cmd: list[str], sock: Path) -> float:
    """Seconds from spawning `cmd` to its QMP saying "running" (then it quits)."""
    sock.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=child_env())
    try:
        qmp = await _connect(sock)

        async def running() -> bool:
            status: Any = await qmp.execute("query-status")
            if status["status"] in ("paused", "postmigrate"):
                await qmp.execute("cont")
            return bool(status["running"])

        await _until(running)
        elapsed = time.perf_counter() - start
        await qmp.execute("quit")
        with contextlib.suppress(EOFError):  # the peer closes after quit's reply
            await qmp.disconnect()
    finally:
        proc.wait(BOUND_S)
    return elapsed


async def _filled(log: Path) -> bool:
    return log.exists() and "filled" in log.read_text(errors="replace")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-qemu", action="store_true")
    args = ap.parse_args(argv)
    use_compiled_bytecode()
    qemu = None if args.no_qemu else ensure_qemu()
    kernel = guestbuild.build("mb_fill")
    kinds = ["southbridge"] + (["qemu"] if qemu else [])
    results: dict[str, list[Figures]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="sbsnap-") as t:
        for _ in range(args.repeat):
            for kind in kinds:  # interleaved: host noise hits both alike
                results[kind].append(asyncio.run(_one(kind, qemu, kernel, Path(t))))
    figures = {k: tuple(summary([r[i] for r in v]) for i in range(4)) for k, v in results.items()}
    for k, (save, size, restore, boot) in figures.items():
        print(f"{k:12} save {save * 1000:7.1f} ms  file {size / 2**20:6.1f} MiB  restore "
              f"{restore * 1000:7.1f} ms (start-up alone {boot * 1000:6.1f} ms)")  # fmt: skip
    if "qemu" in figures:
        sb, q = figures["southbridge"], figures["qemu"]
        print(
            f"southbridge/QEMU: save time {ratio(sb[0], q[0]):.2f}x, file size "
            f"{ratio(sb[1], q[1]):.2f}x, restore time {ratio(sb[2], q[2]):.2f}x with start-up, "
            f"{ratio(sb[2] - sb[3], q[2] - q[3]):.2f}x without (target: at most 1.0x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
