"""Hypothesis: any register writes and any ring contents never raise out of the virtio
device, never hang, and a device reset always brings it back to a working state."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from southbridge.core.clock import ManualClock
from southbridge.devices.blockdev import InlineExecutor
from southbridge.host.block import RawImage
from southbridge.machine.pc import PcMachine
from southbridge.virtio import blk
from southbridge.virtio import device as vd
from southbridge.virtio.pci import VirtioPci
from southbridge.virtio.rng import VirtioRng
from tests.virtio_driver import IO_BASE, MODERN_BASE, Driver

SLOT = 4

_reg = st.tuples(
    st.sampled_from(["common", "legacy", "notify", "devcfg", "isr", "cfg"]),
    st.integers(0, 0x3F),
    st.sampled_from([1, 2, 4]),
    st.integers(0, 2**32 - 1),
)
_mem = st.tuples(st.integers(0, 0x3FFF), st.binary(min_size=1, max_size=64))


def _apply(d: Driver, op: tuple[str, int, int, int]) -> None:
    kind, off, size, value = op
    m = d.m
    if kind == "common":
        m.mmio.write(d.common + off, size, value)
    elif kind == "legacy":
        m.ports.write(IO_BASE + off, size, value)
    elif kind == "notify":
        m.mmio.write(d.notify_base + (off & 3) * 4, 2, value)
    elif kind == "devcfg":
        m.mmio.write(d.devcfg + off, size, value)
    elif kind == "isr":
        m.mmio.read(d.isr, 1)
    else:
        d.cfg_write(0x40 + off * 3 % 0xBC, size if (0x40 + off) % size == 0 else 1, value)


def _check_recovers(d: Driver, fn: VirtioPci) -> None:
    d.cfg_write(0x04, 2, 7)  # the writes may have turned decoding off or moved BARs
    for reg, base in ((0x10, IO_BASE), (0x14, 0xFEB00000), (0x20, MODERN_BASE), (0x24, 0)):
        d.cfg_write(reg, 4, base)
    if fn.msix is not None:
        d.cfg_write(fn.msix.offset + 2, 2, 0)
    d.wr(0x14, 1, 0)
    assert d.status == 0
    assert all(not q.enabled and q.last_avail == 0 for q in fn.queues)
    d.queues.clear()
    d.heap = 0x300000
    d.init(0)
    n, (data, status) = d.request(d.queues[0], [struct.pack("<IIQ", blk.T_IN, 0, 1)], [512, 1])
    assert status == b"\0" and data == b"\x01" * 512 and n == 513


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(_reg, max_size=40),
    ring=st.lists(_mem, max_size=12),
    features=st.integers(0, 2**64 - 1),
)
def test_blk_any_registers_and_rings(
    ops: list[tuple[str, int, int, int]], ring: list[tuple[int, bytes]], features: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "d.img"
        p.write_bytes(b"".join(bytes([i]) * 512 for i in range(16)))
        m = PcMachine(clock=ManualClock())
        fn = VirtioPci(blk.VirtioBlk(RawImage(str(p)), InlineExecutor()))
        m.pci_bus.add(fn, SLOT)
        d = Driver(m, SLOT)
        d.negotiate(features, mask=False) or d.negotiate(vd.F_VERSION_1 | features)
        q = d.setup_queue(0, 16)
        d.driver_ok()
        # Garbage in the descriptor table, avail ring and the buffers around them.
        for off, data in ring:
            d.mem_write(q.desc + off, data)
        d.kick(q)
        for op in ops:
            _apply(d, op)
        d.kick(q)
        _check_recovers(d, fn)


@settings(max_examples=30, deadline=None)
@given(ring=st.lists(_mem, max_size=12), ops=st.lists(_reg, max_size=20))
def test_rng_any_rings(ring: list[tuple[int, bytes]], ops: list[tuple[str, int, int, int]]) -> None:
    m = PcMachine(clock=ManualClock())
    fn = VirtioPci(VirtioRng(_Zero()))
    m.pci_bus.add(fn, SLOT)
    d = Driver(m, SLOT)
    d.init(vd.F_RING_INDIRECT_DESC | vd.F_RING_EVENT_IDX)
    q = d.queues[0]
    for off, data in ring:
        d.mem_write(q.desc + off % (16 * q.size + 6 + 2 * q.size), data)
    d.kick(q)
    for op in ops:
        _apply(d, op)
    d.wr(0x14, 1, 0)
    assert d.status == 0


class _Zero:
    def read(self, n: int) -> bytes:
        return bytes(n)


@settings(max_examples=30, deadline=None)
@given(
    ring=st.lists(_mem, max_size=12),
    frames=st.lists(st.binary(min_size=0, max_size=3000), max_size=4),
    ops=st.lists(_reg, max_size=20),
    merge=st.booleans(),
)
def test_net_and_console_any_rings(
    ring: list[tuple[int, bytes]],
    frames: list[bytes],
    ops: list[tuple[str, int, int, int]],
    merge: bool,
) -> None:
    from southbridge.host.chardev import BufferBackend
    from southbridge.host.net import FrameBuffer
    from southbridge.virtio.console import VirtioConsole
    from southbridge.virtio.net import F_MRG_RXBUF, VirtioNet

    m = PcMachine(clock=ManualClock())
    nb, cb = FrameBuffer(capacity=2), BufferBackend(capacity=8)
    net, con = VirtioNet(nb, bytes.fromhex("525400123456")), VirtioConsole(cb)
    nb.attach(net.input_ready, net.output_ready)
    cb.attach(con.input_ready, con.output_ready)
    m.pci_bus.add(VirtioPci(net), SLOT)
    m.pci_bus.add(VirtioPci(con), SLOT + 1)
    for k in range(2):
        d = Driver(m, SLOT + k, heap=0x200000 + 0x100000 * k, n=k)
        d.init(vd.F_RING_INDIRECT_DESC | (F_MRG_RXBUF if merge else 0), nqueues=2)
        for q in d.queues.values():
            for off, data in ring:
                d.mem_write(q.desc + off % (16 * q.size + 6 + 2 * q.size), data)
            d.kick(q)
        for f in frames:
            nb.feed(f)
            cb.feed(f[:16])
        nb.drain()
        cb.drain()
        for op in ops:
            _apply(d, op)
        d.cfg_write(0x20, 4, d.modern_base)  # the writes may have moved or disabled BAR4
        d.cfg_write(0x24, 4, 0)
        d.cfg_write(0x04, 2, 7)
        d.wr(0x14, 1, 0)
        assert d.status == 0
