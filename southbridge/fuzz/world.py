"""What the operations run on, built fresh for every input so each input (and each finding's
script) starts from power-on: the CPU-less pc machine with in-memory virtio functions, or a
hypervisor with a privileged domain, a user domain owning a simulated assigned device and a
second user domain.

Targets are derived from the buses after a firmware-like prelude has placed every PCI BAR,
so a device added to the machine is fuzzed without anything here changing: `--target NAME`
takes any region name the buses carry (by prefix) besides the aliases in `ALIASES`.
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from southbridge.core.mmiobus import MmioBus
from southbridge.core.portbus import PortBus
from southbridge.fuzz.backends import RamDisk, SeededEntropy, SinkChar, SinkNet
from southbridge.fuzz.detect import Bounds, Finding, FuzzClock, TracebackCatcher
from southbridge.fuzz.ops import (
    CONFIG_ADDRESS,
    CONFIG_DATA,
    MAX_FILL,
    MAX_FILL_TOTAL,
    MAX_MEM_WRITE,
    Layout,
    Op,
)
from southbridge.machine.pc import PcMachine
from southbridge.machine.virtio import VirtioSetup
from southbridge.pci.bar import BarKind
from southbridge.qtest.server import QTEST_MAX_CALLBACKS

# Target aliases: region-name prefixes on the buses (anything else is matched as a prefix).
ALIASES: dict[str, tuple[str, ...]] = {
    "pit": ("pit", "port61"),
    "pic": ("pic-", "elcr"),
    "rtc": ("rtc",),
    "uart": ("com",),
    "pci": ("pci-config",),
    "fw_cfg": ("fw_cfg",),
    "lapic": ("lapic",),
    "ioapic": ("ioapic",),
    "piix4pm": ("pm", "apm"),
    "virtio": ("virtio",),
    "i8042": ("i8042",),
    "testdev": ("pc-testdev",),
}
# Where the prelude puts BARs (QEMU's SeaBIOS places them in the same windows).
IO_WINDOW = 0xC000
MEM_WINDOW = 0xE000_0000
PM_BASE = 0x600
# No port is left out: the reset and isa-debug-exit registers only record a request on a
# CPU-less machine, so they are fuzzed like the rest.
NET_MAC = bytes.fromhex("525400123456")


def _cfg(bus: int, devfn: int, reg: int, value: int) -> list[Op]:
    address = 0x8000_0000 | bus << 16 | devfn << 8 | (reg & 0xFC)
    return [Op("out", 4, CONFIG_ADDRESS, address), Op("out", 4, CONFIG_DATA, value)]


def firmware_prelude(m: PcMachine) -> list[Op]:
    """Config writes that give every function's BARs addresses and enable decoding and bus
    mastering, and open the PIIX4 PM block, as firmware would (replayable qtest lines)."""
    ops: list[Op] = []
    io, mem = IO_WINDOW, MEM_WINDOW
    for fn in m.pci_bus.walk():
        bus = 0  # the pc machine's functions sit on the root bus
        for i, bar in enumerate(fn.bars):
            if bar is None:
                continue
            if bar.kind is BarKind.IO:
                io = (io + bar.size - 1) & ~(bar.size - 1)
                ops += _cfg(bus, fn.devfn, 0x10 + 4 * i, io)
                io += bar.size
            else:
                mem = (mem + bar.size - 1) & ~(bar.size - 1)
                ops += _cfg(bus, fn.devfn, 0x10 + 4 * i, mem & 0xFFFF_FFFF)
                if bar.kind is BarKind.MEM64:
                    ops += _cfg(bus, fn.devfn, 0x14 + 4 * i, mem >> 32)
                mem += bar.size
        if any(b is not None for b in fn.bars):
            ops += _cfg(bus, fn.devfn, 0x04, 0x0000_0007)  # I/O, memory, bus master
    if m.pm is not None:
        ops += _cfg(0, m.pm.devfn, 0x40, PM_BASE | 1)
        ops += _cfg(0, m.pm.devfn, 0x80, 1)
    return ops


def build_pc() -> PcMachine:
    setup = VirtioSetup(
        drives=[RamDisk()],
        nets=[(SinkNet(), NET_MAC)],
        rng=SeededEntropy(),
        console=SinkChar(),
    )
    return PcMachine(clock=FuzzClock(), virtio=setup)


def _matches(name: str, target: str) -> bool:
    if target == "all":
        return True
    prefixes = ALIASES.get(target, (target,))
    return any(name.startswith(p) for p in prefixes)


def layout_for(m: PcMachine, target: str) -> Layout:
    ports = [(r.base, r.end - r.base) for r in m.ports.regions() if _matches(r.name, target)]
    mmio = [(r.base, r.end - r.base) for r in m.mmio.regions() if _matches(r.name, target)]
    fns = [(0, fn.devfn) for fn in m.pci_bus.walk() if target == "all" or _matches(fn.name, target)]
    if target == "pci":
        fns = [(0, fn.devfn) for fn in m.pci_bus.walk()]
    return Layout(ports, mmio, fns)


def target_names(m: PcMachine) -> list[str]:
    """Every name `--target` takes on this machine: the aliases with something to hit, and
    each region on the buses."""
    names = {r.name for r in [*m.ports.regions(), *m.mmio.regions()]}
    names |= {fn.name for fn in m.pci_bus.walk()}
    found = [a for a in ALIASES if any(_matches(n, a) for n in names)]
    return ["all", "domains", *found, *sorted(names - set(found))]


class Unit:
    """One domain's machine, with what its checks read before and after each op."""

    def __init__(self, name: str, machine: PcMachine) -> None:
        self.name = name
        self.machine = machine
        assert isinstance(machine.clock, FuzzClock)
        self.clock: FuzzClock = machine.clock
        self.faults = 0
        self.errors = 0

    def buses(self) -> tuple[PortBus, MmioBus]:
        return self.machine.ports, self.machine.mmio

    def state(self) -> object:
        """The machine's saved state (plain data: compared with ==)."""
        return self.machine.save()


class World:
    """Fresh machines for one input; `run(ops)` returns the first finding, or None."""

    def __init__(self, target: str, bounds: Bounds | None = None, memory: bool = False) -> None:
        self.target = target
        self.bounds = bounds or Bounds()
        self.memory = memory  # tracemalloc is on: check heap growth per input
        self.units: list[Unit] = []
        # DMA-read fills: on while fuzzing, off for replays and minimization (a finding's
        # ops carry its fills as `mem` writes then, see `materialize`).
        self.fill = True
        self.fills: list[tuple[int, int, bytes]] = []  # (op index, gpa, bytes)
        self._closers: list[Callable[[], None]] = []
        self.build()
        self.prelude = self._prelude()
        self._run_prelude()  # the BARs are where the prelude puts them: aim there
        self.layout = self._layout()

    # -- building ------------------------------------------------------------------------
    def build(self) -> None:
        self.units = [Unit("pc", build_pc())]

    def _layout(self) -> Layout:
        return layout_for(self.units[0].machine, self.target)

    def _prelude(self) -> list[Op]:
        return firmware_prelude(self.units[0].machine)

    def close(self) -> None:
        for unit in self.units:
            unit.machine.close()
        for closer in self._closers:
            closer()
        self._closers = []

    def reset(self) -> None:
        self.close()
        self.build()

    # -- running -------------------------------------------------------------------------
    def run(self, ops: list[Op], fresh: bool = True) -> Finding | None:
        """Prelude then `ops`, from power-on (unless `fresh` is False), checking after each."""
        if fresh:
            self.reset()
        start_mem = tracemalloc.get_traced_memory()[0] if self.memory else 0
        self._run_prelude()
        self._start_fills()
        with TracebackCatcher() as catcher:
            self._mark_switch()
            for u in self.units:
                u.faults = u.machine.ports.faults + u.machine.mmio.faults
                u.errors = len(u.clock.errors)
            for i, op in enumerate(ops):
                f = self._step(i, op, catcher)
                if f is not None:
                    return f
            f = self._end_switch(len(ops))
            if f is not None:
                return f
            if self.memory:
                grown = tracemalloc.get_traced_memory()[0] - start_mem
                if grown > self.bounds.memory_bytes:
                    return Finding("memory", f"heap grows by {grown >> 20} MiB per input", len(ops))
        return None

    def _run_prelude(self) -> None:
        """The prelude, unchecked (it is firmware's work, the same for every input)."""
        self._cur = 0
        for op in self.prelude:
            if op.kind == "domain":
                self._cur = op.addr
            else:
                self._apply(op)
        self._cur = 0

    # -- DMA-read fills -------------------------------------------------------------------
    def _start_fills(self) -> None:
        self.fills = []
        self._pattern: tuple[bytes, int] | None = None
        self._filled: set[int] = set()  # 16-byte chunks written (by a fill or the input)
        self._fill_total = 0
        self._fill_on = False
        self._op_index = 0
        for u in self.units:
            space = u.machine.space
            space.__dict__.pop("read_bytes", None)
            if self.fill:
                space.read_bytes = self._filling(space.read_bytes)  # type: ignore[method-assign,assignment]

    def _filling(self, read_bytes: Callable[[int, int], bytes]) -> Callable[[int, int], bytes]:
        def hooked(gpa: int, length: int) -> bytes:
            if self._fill_on and self._pattern is not None:
                self._fill(gpa, length)
            return read_bytes(gpa, length)

        return hooked

    def _mark(self, gpa: int, length: int) -> None:
        self._filled.update(range(gpa >> 4, (gpa + length + 15) >> 4))

    def _fill(self, gpa: int, length: int) -> None:
        """Put the pattern where a device reads RAM not yet written in this input (bounds:
        MAX_FILL bytes of one read, MAX_FILL_TOTAL per input)."""
        n = min(length, MAX_FILL, MAX_FILL_TOTAL - self._fill_total)
        m = self.units[self._cur].machine
        r = m.memory.find(gpa)
        if n <= 0 or r is None or r.readonly or gpa + n > r.end:
            return
        assert self._pattern is not None
        pat, stride = self._pattern
        run_start: int | None = None
        for a in range(gpa, gpa + n + 1):
            free = a < gpa + n and (a >> 4) not in self._filled
            if free and run_start is None:
                run_start = a
            elif not free and run_start is not None:
                data = bytes(
                    (pat[(b - gpa) % len(pat)] + stride * ((b - gpa) // len(pat))) & 0xFF
                    for b in range(run_start, a)
                )
                r.buf[run_start - r.gpa : a - r.gpa] = data
                self.fills.append((self._op_index, run_start, data))
                self._fill_total += len(data)
                run_start = None
        self._mark(gpa, n)

    def materialize(self, ops: list[Op]) -> list[Op]:
        """`ops` with the last run's fills as `mem` writes before the op that read them and
        without pattern ops: the same run with fills off (what a script replays)."""
        by_op: dict[int, list[tuple[int, bytes]]] = {}
        for i, gpa, data in self.fills:
            by_op.setdefault(i, []).append((gpa, data))
        out: list[Op] = []
        for i, op in enumerate(ops):
            for gpa, data in by_op.get(i, []):
                for k in range(0, len(data), MAX_MEM_WRITE):
                    chunk = data[k : k + MAX_MEM_WRITE]
                    out.append(Op("mem", len(chunk), gpa + k, 0, chunk))
            if op.kind != "pattern":
                out.append(op)
        return out

    def _step(self, i: int, op: Op, catcher: TracebackCatcher) -> Finding | None:
        if op.kind == "pattern":
            self._pattern = (op.data, op.value)
            return None
        if op.kind in ("mem", "write"):
            self._mark(op.addr, op.size)  # the input's own data is never filled over
        self._op_index = i
        self._fill_on = op.kind not in ("read", "mem")
        if op.kind == "domain":
            f = self._end_switch(i)
            self._cur = op.addr % len(self.units)
            self._mark_switch()
            return f
        u = self.units[self._cur]
        before = self._fingerprints(False)
        t0 = time.perf_counter()
        counts = u.clock.counts
        counts.clear()
        try:
            self._apply(op)
        except Exception as e:
            return Finding("exception", f"{type(e).__name__} escaped {op.kind}: {e}", i)
        finally:
            self._fill_on = False
        elapsed = time.perf_counter() - t0
        # A step may fire many (rate-checked) callbacks: each gets its own allowance.
        if elapsed > self.bounds.op_s + sum(counts.values()) * self.bounds.callback_s:
            return Finding("slow", f"{op.kind} at {_region(u.machine, op)} took {elapsed:.2f} s", i)
        faults = u.machine.ports.faults + u.machine.mmio.faults
        if faults != u.faults:
            u.faults = faults
            where = _region(u.machine, op)
            return Finding("exception", f"{where} raised on {op.kind} (bus fault)", i)
        if len(u.clock.errors) != u.errors:
            return Finding("exception", u.clock.errors[-1], i)
        if catcher.records:
            return Finding("exception", catcher.records[-1], i)
        if len(u.clock._heap) > self.bounds.heap_entries:
            return Finding("memory", f"timer heap holds {len(u.clock._heap)} entries", i)
        if op.kind == "step" and counts:
            span = max(1, op.addr)
            limit = span // self.bounds.min_fire_ns + 2
            for t, n in counts.items():
                if n > limit:
                    return Finding("rate", f"timer {t.name} fired {n} times in {span} ns", i)
        if before is not None:
            after = self._fingerprints(True)
            if after is not None and after != before:
                return Finding("isolation", self._isolation_detail(before, after), i)
        return None

    def _apply(self, op: Op) -> None:
        m = self.units[self._cur].machine
        k = op.kind
        # Exactly what `southbridge qtest` does for the line `to_line(op)` writes.
        if k == "out":
            m.ports.write(op.addr, op.size, op.value & ((1 << (8 * op.size)) - 1))
        elif k == "in":
            m.ports.read(op.addr, op.size)
        elif k == "write":
            m.space.write(op.addr, op.size, op.value)
        elif k == "read":
            m.space.read(op.addr, op.size)
        elif k == "mem":
            m.space.write_bytes(op.addr, op.data)
        elif k == "step":
            clock = self.units[self._cur].clock
            clock.set_bounded(clock.now() + op.addr, QTEST_MAX_CALLBACKS)

    # -- isolation (the domains world overrides these) -----------------------------------
    def _fingerprints(self, after: bool) -> tuple[object, ...] | None:
        """What the current op must not change (None: nothing to watch); `after` is False
        for the reading taken before the op."""
        return None

    def _isolation_detail(self, before: tuple[object, ...], after: tuple[object, ...]) -> str:
        return "state changed"

    def _mark_switch(self) -> None:
        return None

    def _end_switch(self, i: int) -> Finding | None:
        return None


class DomainsWorld(World):
    """dom0 (privileged), u1 (owns the simulated NIC 02:00.0) and u2, each on its own
    manual clock; ops go to the current domain (`domain` ops switch).

    Isolation: while u1 is not the current domain, the NIC's registers, config space and
    memory BARs must not change nor see an access; the machines of the domains not current
    must have the state they had when the current one took over."""

    def build(self) -> None:
        from southbridge.domains.config import DomainConfig, HypervisorConfig
        from southbridge.domains.hypervisor import Hypervisor
        from southbridge.host.hide import parse_hide
        from southbridge.host.pciaddr import PciAddress
        from southbridge.host.simulated import build_simulated_host, example_specs

        tmp = tempfile.TemporaryDirectory(prefix="southbridge-fuzz-")
        sim = build_simulated_host(Path(tmp.name) / "sys", example_specs())
        cfg = HypervisorConfig(
            hide=parse_hide("02:00.0"),
            domains=[DomainConfig("dom0", privileged=True), DomainConfig("u1"), DomainConfig("u2")],
        )
        hv = Hypervisor(cfg, sim=sim, clock_factory=FuzzClock)
        hv.build()
        self._closers = [hv.shutdown, tmp.cleanup]
        self.units = [Unit(d.name, d.machine) for d in hv.domains]
        nic = sim.get(PciAddress.parse("02:00.0"))
        assert nic is not None
        self._nic = nic
        self._sim = sim
        self._log_len = 0

    def close(self) -> None:
        # The hypervisor's shutdown closes the machines.
        for closer in self._closers:
            closer()
        self._closers = []

    def _layout(self) -> Layout:
        lay = Layout(domains=[u.name for u in self.units])
        for u in self.units:
            sub = layout_for(u.machine, "all")
            lay.ports += [r for r in sub.ports if r not in lay.ports]
            lay.mmio += [r for r in sub.mmio if r not in lay.mmio]
            lay.functions += [f for f in sub.functions if f not in lay.functions]
        return lay

    def _prelude(self) -> list[Op]:
        ops: list[Op] = []
        for n, u in enumerate(self.units):
            ops.append(Op("domain", 0, n))
            ops += firmware_prelude(u.machine)
        ops.append(Op("domain", 0, 0))
        return ops

    def _fingerprints(self, after: bool) -> tuple[object, ...] | None:
        log = self._sim.ports.log
        if self.units[self._cur].name == "u1":
            return None
        nic = self._nic
        io = nic.io
        regs = (io.scratch, io.doorbells) if io is not None else ()
        mem = tuple(len(m.log) for m in nic.memory.values())
        base, length = 0xC000, 0x100  # the NIC's host I/O BAR (example_specs)
        touched = after and any(base <= e[1] < base + length for e in log[self._log_len :])
        self._log_len = len(log)
        return (regs, mem, bytes(nic.cfg), len(nic.config_writes), nic.irq.level, touched)

    def _isolation_detail(self, before: tuple[object, ...], after: tuple[object, ...]) -> str:
        name = self.units[self._cur].name
        return f"{name} reached u1's assigned device 02:00.0"

    def _mark_switch(self) -> None:
        self._saved = {n: u.state() for n, u in enumerate(self.units) if n != self._cur}

    def _end_switch(self, i: int) -> Finding | None:
        for n, st in self._saved.items():
            if self.units[n].state() != st:
                cur = self.units[self._cur].name
                return Finding("isolation", f"{cur} changed {self.units[n].name}'s state", i)
        return None


def _region(m: PcMachine, op: Op) -> str:
    """The region an op hits, for a finding's words (its signature)."""
    if op.kind in ("in", "out"):
        r = m.ports.find(op.addr)
    elif op.kind in ("read", "write"):
        r = m.mmio.find(op.addr)
    else:
        return op.kind
    return r.name if r is not None else "unassigned"


def make_world(target: str, bounds: Bounds | None = None, memory: bool = False) -> World:
    if target == "domains":
        return DomainsWorld(target, bounds, memory)
    return World(target, bounds, memory)
