"""Timer accuracy seen from a guest, idle and next to a CPU hog (issue 13, quality bar c).

Two guests on the pc machine under KVM, each run `--runs` times per condition:
* `rate` (southbridge/guests/rate.S): 1000 periods of the PIT (1000.15 Hz) or of the RTC
  periodic interrupt (1024 Hz) timed by the host clock between two guest OUTs; the error is
  (host time / programmed time - 1) in parts per million;
* `tour` (southbridge/guests/tour.S): PIT and RTC interrupts the guest counts in one RTC
  second (between two update-ended interrupts); the error against 1000.15 and 1024, in ppm.
The hog is a busy Python process bounded to the run (the host has 2 cores). Prints one row
per measurement with the median and the worst error. Run as root with /dev/kvm:
`.venv/bin/python -m benchmarks.timers [--runs N]`.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from southbridge.core.clock import HostClock
from southbridge.core.device import BusDevice
from southbridge.host.chardev import make_backend
from southbridge.kvm import guestbuild
from southbridge.kvm.loader import load_bios
from southbridge.kvm.session import KvmSession
from southbridge.machine.pc import PcConfig, PcMachine

PIT_HZ = 1193182 / 1193
RTC_HZ = 1024.0


class Stamps(BusDevice):
    """The rate guest's test device at 0x700: +4 reads the source, +5 is timestamped."""

    io_sizes = frozenset({1, 2, 4})

    def __init__(self, mode: int) -> None:
        self.mode = mode
        self.stamps: list[float] = []

    def read(self, offset: int, size: int) -> int:
        return self.mode if offset == 4 else 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 5:
            self.stamps.append(time.monotonic())


@contextlib.contextmanager
def hog(on: bool) -> Iterator[None]:
    if not on:
        yield
        return
    code = "import time\nt = time.monotonic() + 60\nwhile time.monotonic() < t: pass"
    p = subprocess.Popen([sys.executable, "-c", code])
    try:
        yield
    finally:
        p.kill()
        p.wait()


def rate_ppm(mode: int) -> float:
    m = PcMachine(PcConfig(memory_mb=16), clock=HostClock())
    dev = Stamps(mode)
    m.ports.register(0x700, 8, dev, "stamps")
    load_bios(m, str(guestbuild.build("rate")))
    with KvmSession(m) as s:
        s.run(20)
    if len(dev.stamps) != 2:
        return float("nan")
    hz = PIT_HZ if mode == 0 else RTC_HZ
    return ((dev.stamps[1] - dev.stamps[0]) / (1000 / hz) - 1) * 1e6


def tour_ppm() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "com1"
        m = PcMachine(
            PcConfig(memory_mb=16), clock=HostClock(), serial=[make_backend(f"file:{out}")]
        )
        load_bios(m, str(guestbuild.build("tour")))
        try:
            with KvmSession(m) as s:
                s.run(20)
        finally:
            for uart in m.serial:
                uart.backend.close()
        text = out.read_text()
    pit = re.search(r"PIT IRQ0: (\d+)", text)
    rtc = re.search(r"RTC IRQ8: (\d+)", text)
    if pit is None or rtc is None:
        return float("nan"), float("nan")
    return (int(pit[1]) / PIT_HZ - 1) * 1e6, (int(rtc[1]) / RTC_HZ - 1) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    rows: dict[str, list[float]] = {}
    for loaded in (False, True):
        tag = "hog" if loaded else "idle"
        with hog(loaded):
            for _ in range(args.runs):
                rows.setdefault(f"rate PIT 1000 periods ({tag})", []).append(rate_ppm(0))
                rows.setdefault(f"rate RTC 1000 periods ({tag})", []).append(rate_ppm(1))
                pit, rtc = tour_ppm()
                rows.setdefault(f"tour PIT per RTC second ({tag})", []).append(pit)
                rows.setdefault(f"tour RTC per RTC second ({tag})", []).append(rtc)
    print(f"{'measurement':40} {'median ppm':>12} {'worst ppm':>12}")
    for name, values in rows.items():
        worst = max(values, key=abs)
        print(f"{name:40} {statistics.median(values):12.0f} {worst:12.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
