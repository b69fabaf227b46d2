"""SeaBIOS POST time: from process start to "No bootable device" in the debugcon log (port
0x402), for Debian's bios.bin (scripts/setup caches it in .cache/seabios) under

* southbridge: `southbridge run --bios bios.bin --debugcon file:LOG`;
* QEMU with KVM but its interrupt controllers and PIT in userspace like ours:
  `-accel kvm,kernel-irqchip=off`;
* QEMU's TCG (no KVM: every instruction translated; fast here because this host's nested
  KVM emulates real-mode and privileged code slowly).

Same memory (128 MiB) and no extra devices (-nodefaults) for all; the log is polled every
5 ms and each process is killed once the string appears. The median of --repeat runs is
reported. Target (issue 5): southbridge no slower than QEMU with kernel-irqchip=off.

Run: .venv/bin/python -m benchmarks.seabios [--bios PATH] [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.peers import (
    SEABIOS,
    child_env,
    ensure_qemu,
    qemu_cmd,
    southbridge_cmd,
    summary,
    use_compiled_bytecode,
)

DONE = b"No bootable device"
MEMORY_MB = 128
POLL_S = 0.005


def qemu_seabios_cmd(qemu: str, accel: str, bios: Path, log: Path) -> list[str]:
    cmd = qemu_cmd(qemu, accel, bios, MEMORY_MB, "isa-debugcon,iobase=0x402,chardev=dbg")
    return [*cmd, "-chardev", f"file,id=dbg,path={log}"]


def time_to_done(cmd: list[str], log: Path, timeout: float) -> float:
    """Seconds from spawning `cmd` until `log` contains "No bootable device"."""
    log.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env())
    try:
        while True:
            elapsed = time.perf_counter() - start
            if log.exists() and DONE in log.read_bytes():
                return elapsed
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"{cmd[0]} exited {proc.returncode} before {DONE!r}: {err}")
            if elapsed > timeout:
                raise RuntimeError(f"{cmd[0]}: no {DONE!r} after {timeout:g} s")
            time.sleep(POLL_S)
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bios", type=Path, default=SEABIOS, help="SeaBIOS image (bios.bin)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per POST")
    ap.add_argument("--no-qemu", action="store_true", help="skip QEMU")
    args = ap.parse_args(argv)
    use_compiled_bytecode()
    if not args.bios.is_file():
        raise SystemExit(f"bench: {args.bios} is missing (run scripts/setup)")
    qemu = None if args.no_qemu else ensure_qemu()
    with tempfile.TemporaryDirectory(prefix="sbbench-") as tmp:
        log = Path(tmp) / "debugcon.log"
        cmds = {
            "southbridge run": southbridge_cmd(
                "--bios", str(args.bios), "-m", str(MEMORY_MB), "--serial", "none",
                "--debugcon", f"file:{log}",
            ),
        }  # fmt: skip
        if qemu is not None:
            cmds["qemu kvm,irqchip=off"] = qemu_seabios_cmd(
                qemu, "kvm,kernel-irqchip=off", args.bios, log
            )
            cmds["qemu tcg"] = qemu_seabios_cmd(qemu, "tcg", args.bios, log)
        samples: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.repeat):  # interleaved, so host drift hits every row alike
            for name, cmd in cmds.items():
                samples[name].append(time_to_done(cmd, log, args.timeout))
    post = {name: summary(v) for name, v in samples.items()}
    sb = post["southbridge run"]
    print(f"SeaBIOS POST to {DONE.decode()!r}, {MEMORY_MB} MiB, median of {args.repeat} runs")
    print(f"{'':22} {'seconds':>8} {'southbridge/this':>17}")
    for name, seconds in post.items():
        print(f"{name:22} {seconds:8.3f} {sb / seconds:17.2f}")
    if "qemu kvm,irqchip=off" in post:
        ratio = sb / post["qemu kvm,irqchip=off"]
        print(f"southbridge vs QEMU kvm,kernel-irqchip=off: x{ratio:.2f} (target <= 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
