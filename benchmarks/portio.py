"""Port-I/O exit cost: one guest image doing N OUTs to the pc-testdev scratch port (0xE0)
then exiting through isa-debug-exit (0xF4), timed under

* the C floor: a minimal KVM loop built here with gcc (benchmarks/c/kvm_portio.c), same image
  and memory layout, handling only KVM_EXIT_IO;
* southbridge: `southbridge run --bios IMAGE` (a full pc machine, the real device);
* QEMU: `qemu-system-x86_64 -accel kvm -bios IMAGE` with isa-debug-exit at 0xF4 and pc-testdev.

Each is also run with 0 OUTs (same image, count patched to 0) to separate start-up from the
exits: "per OUT" = (t(N) - t(0)) / N. Runs are interleaved and the median of --repeat is
reported. Target (issue 5): southbridge per OUT within 10% of the C floor, faster than QEMU.

Run: .venv/bin/python -m benchmarks.portio [--count 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import struct
import tempfile
from pathlib import Path

from benchmarks.peers import (
    build_c,
    ensure_qemu,
    qemu_cmd,
    ratio,
    southbridge_cmd,
    summary,
    timed_run,
    use_compiled_bytecode,
)
from southbridge.kvm import guestbuild

GUEST = "bench_portio"
EXIT_STATUS = 1  # isa-debug-exit: (0 << 1) | 1
MEMORY_MB = 16


def patched_image(out_dir: Path, count: int) -> Path:
    """The bench guest with its OUT count (the image's first dword) set to `count`."""
    data = bytearray(guestbuild.build(GUEST).read_bytes())
    data[0:4] = struct.pack("<I", count)
    path = out_dir / f"{GUEST}-{count}.bin"
    path.write_bytes(bytes(data))
    return path


def commands(floor: Path, qemu: str | None, image: Path) -> dict[str, list[str]]:
    cmds = {
        "C KVM loop (floor)": [str(floor), str(image), str(MEMORY_MB)],
        "southbridge run": southbridge_cmd(
            "--bios", str(image), "-m", str(MEMORY_MB), "--serial", "none"
        ),
    }
    if qemu is not None:
        cmds["qemu -accel kvm"] = qemu_cmd(
            qemu, "kvm", image, MEMORY_MB, "isa-debug-exit,iobase=0xf4,iosize=4", "pc-testdev"
        )
    return cmds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200_000, help="OUTs per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration")
    ap.add_argument("--no-qemu", action="store_true", help="skip QEMU")
    args = ap.parse_args(argv)
    use_compiled_bytecode()
    qemu = None if args.no_qemu else ensure_qemu()
    with tempfile.TemporaryDirectory(prefix="sbbench-") as tmp:
        floor = build_c("kvm_portio", Path(tmp))
        full = commands(floor, qemu, patched_image(Path(tmp), args.count))
        empty = commands(floor, qemu, patched_image(Path(tmp), 0))
        times: dict[str, list[float]] = {name: [] for name in full}
        starts: dict[str, list[float]] = {name: [] for name in full}
        for _ in range(args.repeat):  # interleaved, so host drift hits every row alike
            for name in full:
                times[name].append(timed_run(full[name], EXIT_STATUS))
                starts[name].append(timed_run(empty[name], EXIT_STATUS))
    total = {name: summary(v) for name, v in times.items()}
    start = {name: summary(v) for name, v in starts.items()}
    per = {name: max(total[name] - start[name], 0.0) / args.count * 1e6 for name in total}
    base = "C KVM loop (floor)"
    print(f"port-I/O exit cost: {args.count} OUTs to port 0xE0, median of {args.repeat} runs")
    print(f"{'':22} {'total s':>8} {'start s':>8} {'us/OUT':>8} {'total/C':>8} {'OUT/C':>7}")
    for name in total:
        print(
            f"{name:22} {total[name]:8.3f} {start[name]:8.3f} {per[name]:8.2f} "
            f"{ratio(total[name], total[base]):8.2f} {ratio(per[name], per[base]):7.2f}"
        )
    sb = "southbridge run"
    print(f"southbridge per OUT vs C floor: {ratio(per[sb], per[base]) - 1:+.1%} (target <= +10%)")
    if "qemu -accel kvm" in per:
        q = "qemu -accel kvm"
        print(
            f"southbridge vs QEMU: per OUT x{ratio(per[sb], per[q]):.2f}, "
            f"total x{total[sb] / total[q]:.2f} (target < 1)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
