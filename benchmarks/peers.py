"""What the KVM benchmarks share: the peers they run (QEMU, the C floor), subprocess timing.

QEMU is installed here on demand (`apt-get install -y qemu-system-x86` when root), never by
scripts/setup: the tests must not need it.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

QEMU = "qemu-system-x86_64"
ROOT = Path(__file__).resolve().parent.parent
SEABIOS = ROOT / ".cache" / "seabios" / "bios.bin"
C_DIR = Path(__file__).resolve().parent / "c"


def ensure_qemu() -> str | None:
    """Path of qemu-system-x86_64, installing Debian's package when missing and root; None
    (with a message on stderr) when it is not there and cannot be installed."""
    found = shutil.which(QEMU)
    if found is not None:
        return found
    if os.geteuid() != 0:
        print(
            f"bench: {QEMU} is missing; install it with `sudo apt-get install -y "
            "qemu-system-x86` to compare against QEMU (skipping the QEMU rows)",
            file=sys.stderr,
        )
        return None
    print("bench: installing qemu-system-x86 (apt-get) ...", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "qemu-system-x86"]
    if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"bench: apt-get failed:\n{proc.stderr.strip()}", file=sys.stderr)
            return None
    return shutil.which(QEMU)


def build_c(name: str, out_dir: Path) -> Path:
    """Compile benchmarks/c/<name>.c with gcc -O2 (at benchmark time, for this host)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise SystemExit("bench: gcc is needed to build the C KVM loop (apt-get install gcc)")
    out = out_dir / name
    cmd = [gcc, "-O2", "-Wall", "-o", str(out), str(C_DIR / f"{name}.c")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench: building {name}.c failed:\n{proc.stderr.strip()}")
    return out


_child_env: dict[str, str] | None = None  # None: the children inherit ours


def use_compiled_bytecode() -> None:
    """Start southbridge from compiled bytecode, as an installed package does (pip compiles
    it at install). Without this, a shell with PYTHONDONTWRITEBYTECODE set (this host's)
    recompiles every module on every start: 0.08 s of start-up that no user pays."""
    global _child_env
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cmd = [sys.executable, "-m", "compileall", "-q", str(ROOT / "southbridge")]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, env=env, check=False)
    _child_env = env


def child_env() -> dict[str, str] | None:
    """The environment the timed commands run with."""
    return _child_env


def ratio(a: float, b: float) -> float:
    """a / b, NaN when b is not positive (a tiny run's difference can be noise below zero)."""
    return a / b if b > 0 else float("nan")


def qemu_cmd(qemu: str, accel: str, bios: Path, memory_mb: int, *devices: str) -> list[str]:
    """A headless QEMU pc machine with nothing but the firmware and the given -device args."""
    cmd = [qemu, "-accel", accel, "-nodefaults", "-display", "none", "-monitor", "none"]
    cmd += ["-serial", "none", "-m", str(memory_mb), "-bios", str(bios)]
    for dev in devices:
        cmd += ["-device", dev]
    return cmd


def southbridge_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "southbridge", "run", *args]


def timed_run(cmd: Sequence[str], expect_status: int, timeout: float = 120.0) -> float:
    """Wall time of `cmd` from spawn to exit; raises RuntimeError on an unexpected status."""
    start = time.perf_counter()
    proc = subprocess.run(
        list(cmd),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=timeout,
        check=False,
        env=_child_env,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != expect_status:
        tail = proc.stderr.decode(errors="replace").strip()[-500:]
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}, expected {expect_status}: {tail}")
    return elapsed


def summary(samples: list[float]) -> float:
    """The figure reported for repeated runs: the median (robust to host hiccups)."""
    return statistics.median(samples)
