"""Hypothesis: any sequence of config writes (mechanism #1 and ECAM, any offset and size, to
any device, bridges included), BAR accesses and device interrupts never raises, keeps the
read-only bits and capability chains intact, keeps the port/MMIO registrations equal to what
the BARs, command registers and bridge windows ask for, and save/restore round-trips."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from southbridge.core.clock import ManualClock
from southbridge.machine.pc import PcConfig, PcMachine
from southbridge.pci.bar import Bar, BarKind, Region
from southbridge.pci.bridge import PciBridge
from southbridge.pci.bus import PciBus, PciRoot
from southbridge.pci.capabilities import walk_capabilities, walk_extended
from southbridge.pci.config import CMD_IO, CMD_MEMORY
from southbridge.pci.demo import DemoDevice
from southbridge.pci.function import PciFunction
from southbridge.pci.passthrough import FilteredFunction
from tests.test_pci_passthrough import FakeHost, HostBar, host_demo

ECAM = 0xB0000000


def build() -> PcMachine:
    m = PcMachine(PcConfig(memory_mb=2, extra={"pci_ecam_base": ECAM}), clock=ManualClock())
    br = PciBridge()
    m.pci_bus.add(br, 5)
    br.add(DemoDevice(pcie=True, name="pcie-demo"), 0)
    br.add(DemoDevice(name="demo-b"), 1)
    m.pci_bus.add(DemoDevice(name="demo-c"), 6, 0)
    m.pci_bus.add(DemoDevice(name="demo-d"), 6, 2)
    # An assigned function over a fake host: no guest write may ever reach the host.
    host = FakeHost(bytes(host_demo().data))
    bars = {0: Bar(BarKind.MEM32, 0x1000, HostBar()), 2: Bar(BarKind.MEM64, 0x1000, HostBar())}
    m.pci_bus.add(FilteredFunction(host, bars, name="assigned"), 7)
    return m


def host_of(m: PcMachine) -> FakeHost:
    fn = m.pci_bus.find(0, 7 << 3)
    assert isinstance(fn, FilteredFunction) and isinstance(fn.source, FakeHost)
    return fn.source


INTERESTING = [
    0x00,
    0x04,
    0x06,
    0x0C,
    0x0E,
    0x10,
    0x14,
    0x18,
    0x19,
    0x1A,
    0x1C,
    0x1D,
    0x1E,
    0x20,
    0x22,
    0x24,
    0x26,
    0x28,
    0x2C,
    0x30,
    0x34,
    0x38,
    0x3C,
    0x3E,
    0x40,
    0x44,
    0x48,
    0x4A,
    0x4C,
    0x50,
    0x54,
    0x58,
    0x5C,
    0x60,
    0x62,
    0x64,
    0x68,
    0x6C,
    0x72,
    0x59,
    0x5F,
    0x100,
]
values = st.one_of(
    st.sampled_from([0, 0xFFFFFFFF, 0x7, 0x3, 0x1, 0xFEB00000, 0xFFFF, 0x8000, 0xC001]),
    st.integers(0, 0xFFFFFFFF),
)
targets = st.tuples(st.sampled_from([0, 1, 2, 3]), st.integers(0, 31), st.integers(0, 7))
known = st.sampled_from(
    [
        (0, 0, 0),
        (0, 1, 0),
        (0, 2, 0),
        (0, 5, 0),
        (0, 6, 0),
        (0, 6, 2),
        (1, 0, 0),
        (1, 1, 0),
        (2, 0, 0),
        (0, 7, 0),
    ]
)
offsets = st.one_of(st.sampled_from(INTERESTING), st.integers(0, 0xFF), st.integers(0, 0xFFF))

# Firmware-like programming so that regions really get decoded, moved and overlapped: a BAR
# value followed by a command value on one function, or a whole bridge set-up.
bar_values = st.sampled_from(
    [
        0xFEB00000,
        0xFEB01000,
        0xFEB00008,
        0xE0000000,
        0xC000,
        0xC041,
        0xD000,
        0xFEB00001,
        0,
        1,
        0x3F9,
        0x61,
        0xFFFFFFFF,
        0xFFFFFFF0,
    ]
)
program = st.tuples(
    st.just("prog"),
    known,
    st.sampled_from([0x10, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x30]),
    bar_values,
    st.sampled_from([0, 1, 2, 3, 7, 0x407]),
)
bridge = st.tuples(
    st.just("bridge"),
    st.sampled_from([0x010100, 0x020100, 0x000000]),
    st.sampled_from([0xD0C0, 0xC0C0, 0x00F0]),
    st.sampled_from([0xFEB0FEB0, 0xFEF0FEB0, 0xFFF0]),
    st.sampled_from([0xE000E000, 0]),
    st.sampled_from([0, 1, 2, 3, 7]),
)

ops = st.one_of(
    program,
    program,
    program,
    bridge,
    st.tuples(
        st.just("cf8"), st.one_of(known, targets), offsets, st.sampled_from([1, 2, 4]), values
    ),
    st.tuples(
        st.just("ecam"), st.one_of(known, targets), offsets, st.sampled_from([1, 2, 4, 8]), values
    ),
    st.tuples(st.just("cf8raw"), st.integers(0, 7), st.sampled_from([1, 2, 4]), values),
    st.tuples(st.just("mmio"), st.integers(0, 0x1FFF), st.sampled_from([1, 2, 4, 8]), values),
    st.tuples(st.just("irq"), st.integers(0, 4), values),
    st.tuples(
        st.just("dma"),
        st.integers(0, 4),
        st.sampled_from([0x1000, 0x7F0, 0xFEB00034, 0xFEB00800, 2**64 - 16, 0xFFFFF]),
        st.sampled_from([0x2000, 0x10, 0xFEB00034, 0xFEB00800, 2**64 - 8]),
        st.sampled_from([0, 4, 16, 0x800, 0xFFFFFFFF]),
        st.integers(0, 7),
    ),
)


def apply(m: PcMachine, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "prog":
        _, target, reg, value, cmd = op
        apply(m, ("cf8", target, reg, 4, value))
        apply(m, ("cf8", target, 0x04, 2, cmd))
    elif kind == "bridge":
        _, buses, io, mem, pref, cmd = op
        for reg, value in ((0x18, buses), (0x1C, io), (0x20, mem), (0x24, pref), (0x04, cmd)):
            apply(m, ("cf8", (0, 5, 0), reg, 4 if reg != 0x1C else 2, value))
    elif kind == "cf8":
        (bus, dev, fn), off, size, value = op[1], op[2], op[3], op[4]
        m.ports.write(0xCF8, 4, 0x80000000 | bus << 16 | dev << 11 | fn << 8 | (off & 0xFC))
        port = 0xCFC + (off & 3)
        m.ports.write(port, size, value & ((1 << (8 * size)) - 1))
        m.ports.read(port, size)
    elif kind == "ecam":
        (bus, dev, fn), off, size, value = op[1], op[2], op[3], op[4]
        addr = ECAM + (bus << 20 | dev << 15 | fn << 12 | off)
        m.mmio.write(addr, size, value)
        m.mmio.read(addr, size)
    elif kind == "cf8raw":
        _, off, size, value = op
        m.ports.write(0xCF8 + (off & 7), size, value & ((1 << (8 * size)) - 1))
        m.ports.read(0xCF8 + (off & 7), size)
    elif kind == "mmio":
        # Poke wherever a BAR currently is, at any offset (unaligned and straddling too).
        _, off, size, value = op
        regions = sorted(m.pci_bus.mapped().values(), key=lambda r: r.base)
        if regions:
            r = regions[off % len(regions)]
            addr = r.base + off % r.length
            if isinstance(r.owner, Bar) and r.owner.is_io:
                size = min(size, 4)
                m.ports.write(addr & 0xFFFF, size, value & ((1 << (8 * size)) - 1))
                m.ports.read(addr & 0xFFFF, size)
            else:
                m.space.write(addr, size, value)
                m.space.read(addr, size)
    elif kind == "dma":
        _, which, src, dst, count, cmd = op
        fns = [f for f in m.pci_bus.walk() if isinstance(f, DemoDevice)]
        dev = fns[which % len(fns)]
        for reg, v in (
            (0x20, src),
            (0x24, src >> 32),
            (0x28, dst),
            (0x2C, dst >> 32),
            (0x30, count),
            (0x34, cmd),
        ):
            dev.reg_write(reg, v & 0xFFFFFFFF)
    else:
        _, which, bits = op
        fns = [f for f in m.pci_bus.walk() if isinstance(f, DemoDevice)]
        dev = fns[which % len(fns)]
        dev.raise_irq(bits)
        dev.ack_irq(bits >> 1)


def snapshot_ro(m: PcMachine) -> dict[str, bytes]:
    out = {}
    for fn in m.pci_bus.walk():
        cs = fn.config
        out[fn.name] = bytes(cs.data[o] & ~cs.mutable_mask(o) & 0xFF for o in range(cs.size))
    return out


def chains(m: PcMachine) -> dict[str, Any]:
    return {
        f.name: (walk_capabilities(f.config), walk_extended(f.config)) for f in m.pci_bus.walk()
    }


def forwarded(fn: PciFunction, r: Region) -> bool:
    """Whether every bridge above `fn` forwards region `r` (independent re-derivation)."""
    bus: PciBus | None = fn.bus
    io = isinstance(r.owner, Bar) and r.owner.is_io
    while bus is not None and bus.bridge is not None:
        br = bus.bridge
        if io:
            ok = (
                br.command & CMD_IO
                and br.io_window()[0] <= r.base
                and r.base + r.length <= br.io_window()[1]
            )
        else:
            ok = br.command & CMD_MEMORY and any(
                lo <= r.base and r.base + r.length <= hi
                for lo, hi in (br.mem_window(), br.pref_window())
            )
        if not ok:
            return False
        bus = br.bus
    return True


def check_registrations(root: PciRoot) -> None:
    mapped = root.mapped()
    # Every BAR device on the buses is there because its BAR is mapped, at that place.
    bar_devices = {id(b.device): b for fn in root.walk() for b in fn.all_bars()}
    for route in root.ports.regions() + root.mmio.regions():
        bar = bar_devices.get(id(route.device))
        if bar is not None:
            got = mapped.get(bar)
            assert got is not None and (got.base, got.length) == (
                route.base,
                route.end - route.base,
            ), f"stale registration {route}"
    wanted: list[tuple[PciFunction, Region]] = []
    for fn in root.walk():
        for bar in fn.all_bars():
            reg = fn.bar_region(bar)  # recomputed from config: value + command bits
            if reg is None:
                assert bar not in mapped
                continue
            r = Region(bar, reg[0], reg[1], bar.device, bar.name, bar.seq)
            if not forwarded(fn, r):
                assert bar not in mapped
                continue
            wanted.append((fn, r))
    regs = list(mapped.values())
    for i, a in enumerate(regs):
        for b in regs[i + 1 :]:
            if (isinstance(a.owner, Bar) and a.owner.is_io) == (
                isinstance(b.owner, Bar) and b.owner.is_io
            ):
                assert not a.overlaps(b)
    for _fn, r in wanted:
        is_io = isinstance(r.owner, Bar) and r.owner.is_io
        bus = root.ports if is_io else root.mmio
        if r.owner in mapped:
            got = mapped[r.owner]
            assert (got.base, got.length) == (r.base, r.length)
            found = bus.find(r.base)
            assert found is not None and found.device is r.device and found.base == r.base
        else:
            # Undecoded only because something else holds part of the range.
            assert any(bus.find(a) is not None for a in range(r.base, r.base + r.length, 4)) or any(
                o.overlaps(r) for o in regs
            )


def overlaps(m: PcMachine) -> bool:
    regions: list[Region] = []
    for fn in m.pci_bus.walk():
        io, mem = fn.regions()
        regions += io + mem
    return any(
        a.overlaps(b)
        and (isinstance(a.owner, Bar) and a.owner.is_io)
        == (isinstance(b.owner, Bar) and b.owner.is_io)
        for i, a in enumerate(regions)
        for b in regions[i + 1 :]
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, max_size=60))
def test_any_config_sequence_keeps_invariants(seq: list[tuple[Any, ...]]) -> None:
    m = build()
    ro, ch = snapshot_ro(m), chains(m)
    for op in seq:
        apply(m, op)
        check_registrations(m.pci_bus)
    assert m.ports.faults == 0 and m.mmio.faults == 0  # no device raised on any access
    assert host_of(m).writes == []
    assert snapshot_ro(m) == ro
    assert chains(m) == ch
    check_registrations(m.pci_bus)
    # Save/restore round-trips into a fresh machine, registrations included.
    state = m.pci_bus.save()
    host = m.pci_host.save()
    m2 = build()
    m2.pci_bus.restore(state)
    m2.pci_host.restore(host)
    assert m2.pci_bus.save() == state
    check_registrations(m2.pci_bus)
    # Which of two overlapping BARs wins depends on programming order, which is not state
    # of real hardware (both would answer); without overlaps the mappings must be identical.
    before = {(r.base, r.length, r.name) for r in m.pci_bus.mapped().values()}
    after = {(r.base, r.length, r.name) for r in m2.pci_bus.mapped().values()}
    if not m.pci_bus.io_mapper.refused and not m.pci_bus.mem_mapper.refused and not overlaps(m):
        assert after == before
    levels = [m.gsi.line(n).level for n in range(16, 20)]
    assert [m2.gsi.line(n).level for n in range(16, 20)] == levels


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.text(max_size=8),
    st.lists(st.integers(0, 255), max_size=3),
    st.dictionaries(st.text(max_size=3), st.none(), max_size=2),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_restore_of_tampered_state_only_raises_state_error(data: st.DataObject) -> None:
    """Saved state is attacker input: any field replaced by junk is either a state the
    hardware can be in or a StateError (leaving the bus as it was), never another error."""
    from southbridge.core.state import StateError

    m = build()
    state = m.pci_bus.save()
    funcs = state["functions"]
    path = data.draw(st.sampled_from(sorted(funcs)))
    fstate = funcs[path]
    where = data.draw(st.sampled_from(["top", "device", "config"]))
    if where == "top":
        fstate[data.draw(st.sampled_from(sorted(fstate)))] = data.draw(junk)
    elif where == "device" and fstate["device"]:
        fstate["device"][data.draw(st.sampled_from(sorted(fstate["device"])))] = data.draw(junk)
    else:
        raw = bytearray.fromhex(fstate["config"])
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        fstate["config"] = raw.hex()
    target = build()
    target.demo.config_write(0x3C, 1, 0x0B)  # some state of its own that must survive
    before = target.pci_bus.save()
    try:
        target.pci_bus.restore(state)
    except StateError:
        assert target.pci_bus.save() == before  # all or nothing
        return
    check_registrations(target.pci_bus)
