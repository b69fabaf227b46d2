"""Port-bus dispatch rate: emulated register, unhandled port, permitted port (fake host).

Prints accesses per second for each path and the ratio to the floor: calling the device's
`read` method directly in the same loop (what dispatch costs on top of the device itself).
Target (issue 2): >= 2,000,000 emulated-register dispatches per second on one core.

Run: .venv/bin/python -m benchmarks.dispatch
"""

from __future__ import annotations

import time
from collections.abc import Callable

from southbridge.core.device import BusDevice
from southbridge.core.hostports import FakeHostPorts
from southbridge.core.mmiobus import MmioBus
from southbridge.core.permissions import PortPermissions
from southbridge.core.portbus import PortBus

N = 1_000_000


class Scratch(BusDevice):
    io_sizes = frozenset({1, 2, 4})

    def __init__(self) -> None:
        self.value = 0

    def read(self, offset: int, size: int) -> int:
        return self.value

    def write(self, offset: int, size: int, value: int) -> None:
        self.value = value


def rate(fn: Callable[[int, int], int], port: int, n: int = N) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn(port, 1)
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    dev = Scratch()
    perms = PortPermissions()
    bus = PortBus(perms, FakeHostPorts())
    bus.register(0xE0, 4, dev)
    perms.allow(0x300, 4)
    mmio = MmioBus()
    for i in range(64):
        mmio.register(0xFE000000 + i * 0x1000, 0x1000, Scratch())

    floor = rate(dev.read, 0)
    rows = [
        ("direct device call (floor)", floor),
        ("emulated register (port bus)", rate(bus.read, 0xE0)),
        ("unhandled port (all-ones)", rate(bus.read, 0x1234, N // 10)),
        ("permitted port -> fake host", rate(bus.read, 0x300, N // 2)),
        ("MMIO register (64 regions)", rate(mmio.read, 0xFE020010)),
    ]
    print(f"{'path':34} {'accesses/s':>14} {'vs floor':>9}")
    for name, r in rows:
        print(f"{name:34} {r:14,.0f} {r / floor:9.2f}")
    emu = rows[1][1]
    verdict = "meets" if emu >= 2_000_000 else "MISSES"
    print(f"emulated-register dispatch {emu / 1e6:.2f} M/s {verdict} the 2 M/s target")


if __name__ == "__main__":
    main()
