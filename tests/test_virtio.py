"""virtio-pci transport, split queues, virtio-blk and virtio-rng through the bus on the
manual clock, driven by the tiny driver in virtio_driver.py (virtio 1.2 section numbers)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from southbridge.core.clock import ManualClock
from southbridge.devices.blockdev import InlineExecutor
from southbridge.host.block import RawImage
from southbridge.host.entropy import UrandomSource
from southbridge.machine.pc import PcMachine
from southbridge.pci.msi import MsiRecorder
from southbridge.pci.piix3 import PIRQRC
from southbridge.virtio import blk
from southbridge.virtio import device as vd
from southbridge.virtio.pci import VirtioPci
from southbridge.virtio.rng import VirtioRng
from tests.virtio_driver import IO_BASE, Driver

SLOT = 4


def _image(tmp_path: Path, sectors: int = 64, name: str = "disk.img") -> Path:
    p = tmp_path / name
    p.write_bytes(b"".join(bytes([i]) * 512 for i in range(sectors)))
    return p


def _blk(tmp_path: Path, read_only: bool = False) -> tuple[PcMachine, VirtioPci, Driver, Path]:
    p = _image(tmp_path)
    m = PcMachine(clock=ManualClock())
    img = RawImage(str(p), read_only=read_only)
    fn = VirtioPci(blk.VirtioBlk(img, InlineExecutor()), name="virtio-blk")
    m.pci_bus.add(fn, SLOT)
    return m, fn, Driver(m, SLOT), p


def _rq(rtype: int, sector: int = 0) -> bytes:
    return struct.pack("<IIQ", rtype, 0, sector)


def test_identity_and_capabilities(tmp_path: Path) -> None:
    _, _, d, _ = _blk(tmp_path)
    # 4.1.2: vendor 1af4, transitional device 0x1001, subsystem device = virtio ID 2.
    assert d.cfg_read(0, 4) == 0x10011AF4
    assert d.cfg_read(0x2E, 2) == vd.ID_BLOCK
    assert sorted(d.caps) == [1, 2, 3, 4, 5]
    assert d.cfg_read(d.caps[2] + 2, 1) == 20  # notify cap carries the multiplier
    assert d.notify_mult == 4
    assert d.rd(0x12, 2) == 1  # num_queues
    d.wr(0x16, 2, 0)
    assert d.rd(0x18, 2) == blk.QUEUE_SIZE
    d.wr(0x16, 2, 5)
    assert d.rd(0x18, 2) == 0  # 4.1.4.3.2: an absent queue reads size 0


def test_feature_negotiation_requires_version_1(tmp_path: Path) -> None:
    _, _, d, _ = _blk(tmp_path)
    feats = d.device_features()
    assert feats & vd.F_VERSION_1 and feats & blk.F_FLUSH and feats & vd.F_RING_EVENT_IDX
    assert not feats & blk.F_RO
    # 3.1.1: a modern driver without VERSION_1, or asking for an unoffered bit, is refused.
    assert not d.negotiate(blk.F_FLUSH)
    assert not d.negotiate(vd.F_VERSION_1 | 1 << 60, mask=False)
    assert d.negotiate(vd.F_VERSION_1 | blk.F_FLUSH)


def test_config_space_capacity_and_limits(tmp_path: Path) -> None:
    m, _, d, _ = _blk(tmp_path)
    assert m.mmio.read(d.devcfg, 4) | m.mmio.read(d.devcfg + 4, 4) << 32 == 64
    assert m.mmio.read(d.devcfg + 8, 4) == blk.SIZE_MAX
    assert m.mmio.read(d.devcfg + 12, 4) == blk.SEG_MAX
    assert m.mmio.read(d.devcfg + 20, 4) == 512  # blk_size


def test_read_write_flush_round_trip(tmp_path: Path) -> None:
    _, _, d, p = _blk(tmp_path)
    d.init(blk.F_FLUSH)
    q = d.queues[0]
    n, (data, status) = d.request(q, [_rq(blk.T_IN, 3)], [1024, 1])
    assert status == b"\x00" and data == b"\x03" * 512 + b"\x04" * 512 and n == 1025
    n, (status,) = d.request(q, [_rq(blk.T_OUT, 10), b"\xab" * 512], [1])
    assert status == b"\x00"
    _, (status,) = d.request(q, [_rq(blk.T_FLUSH)], [1])
    assert status == b"\x00"
    assert p.read_bytes()[10 * 512 : 11 * 512] == b"\xab" * 512
    # Reads past the end are I/O errors (5.2.6.1), the disk is untouched.
    _, (_, status) = d.request(q, [_rq(blk.T_IN, 64)], [512, 1])
    assert status == bytes([blk.S_IOERR])


def test_get_id_discard_and_write_zeroes(tmp_path: Path) -> None:
    _, fn, d, p = _blk(tmp_path)
    assert isinstance(fn.dev, blk.VirtioBlk)
    d.init(blk.F_DISCARD | blk.F_WRITE_ZEROES)
    q = d.queues[0]
    _, (ident, status) = d.request(q, [_rq(blk.T_GET_ID)], [20, 1])
    assert status == b"\x00" and ident.rstrip(b"\0").decode() == fn.dev.backend.serial[:20]
    seg = struct.pack("<QII", 4, 2, 0)
    _, (status,) = d.request(q, [_rq(blk.T_WRITE_ZEROES), seg], [1])
    assert status == b"\x00"
    assert p.read_bytes()[4 * 512 : 6 * 512] == bytes(1024)
    _, (status,) = d.request(q, [_rq(blk.T_DISCARD), struct.pack("<QII", 8, 1, 0)], [1])
    assert status == b"\x00"
    # 5.2.6.2: discard with the unmap flag is unsupported; unknown types too.
    _, (status,) = d.request(q, [_rq(blk.T_DISCARD), struct.pack("<QII", 8, 1, 1)], [1])
    assert status == bytes([blk.S_UNSUPP])
    _, (status,) = d.request(q, [_rq(99)], [1])
    assert status == bytes([blk.S_UNSUPP])


def test_read_only_image(tmp_path: Path) -> None:
    _, _, d, p = _blk(tmp_path, read_only=True)
    assert d.device_features() & blk.F_RO
    d.init(blk.F_RO)
    q = d.queues[0]
    before = p.read_bytes()
    _, (status,) = d.request(q, [_rq(blk.T_OUT, 1), b"\x55" * 512], [1])
    assert status == bytes([blk.S_IOERR])
    _, (status,) = d.request(q, [_rq(blk.T_WRITE_ZEROES), struct.pack("<QII", 0, 1, 0)], [1])
    assert status == bytes([blk.S_IOERR])
    assert p.read_bytes() == before


def test_indirect_descriptors_and_event_idx(tmp_path: Path) -> None:
    m, _, d, _ = _blk(tmp_path)
    d.init(vd.F_RING_INDIRECT_DESC | vd.F_RING_EVENT_IDX)
    q = d.queues[0]
    m.piix3.config_write(PIRQRC + ((SLOT - 1) & 3), 1, 11)
    hdr, st, buf = d.alloc(16), d.alloc(1), d.alloc(512)
    d.mem_write(hdr, _rq(blk.T_IN, 7))
    table = d.alloc(48)
    for i, (a, n, fl) in enumerate([(hdr, 16, 1), (buf, 512, 3), (st, 1, 2)]):
        d.mem_write(table + 16 * i, struct.pack("<QIHH", a, n, fl, i + 1))
    d.write_desc(q, 0, table, 48, 4, 0)  # VIRTQ_DESC_F_INDIRECT
    # used_event = 0: the first completion (used idx 0 -> 1) interrupts (2.7.10).
    d.make_available(q, 0)
    assert d.used(q) == [(0, 513)] and d.mem_read(buf, 512) == b"\x07" * 512
    assert d.mem_read(st, 1) == b"\x00"
    assert m.gsi.line(11).level
    assert m.mmio.read(d.isr, 1) == 1 and not m.gsi.line(11).level  # reading ISR deasserts
    # avail_event tracks the device's position.
    assert struct.unpack("<H", d.mem_read(q.used + 4 + 8 * q.size, 2))[0] == 1
    # used_event still 0: the second completion does not interrupt.
    d.make_available(q, 0)
    assert d.used(q) == [(0, 513)]
    assert not m.gsi.line(11).level


def test_msix_queue_vector(tmp_path: Path) -> None:
    m, fn, d, _ = _blk(tmp_path)
    sink = MsiRecorder()
    m.pci_bus.msi_sink = sink
    msix = fn.msix
    assert msix is not None
    d.cfg_write(msix.offset + 2, 2, 0x8000)  # MSI-X enable
    m.mmio.write(0xFEB00000 + 16, 4, 0xFEE00000)
    m.mmio.write(0xFEB00000 + 24, 4, 0x41)
    m.mmio.write(0xFEB00000 + 28, 4, 0)  # unmask vector 1
    assert d.negotiate(vd.F_VERSION_1)
    q = d.setup_queue(0)
    d.wr(0x1A, 2, 1)
    assert d.rd(0x1A, 2) == 1
    d.wr(0x1A, 2, 7)
    assert d.rd(0x1A, 2) == 0xFFFF  # 4.1.5.1.2: unmappable vector reads NO_VECTOR
    d.wr(0x1A, 2, 1)
    d.driver_ok()
    d.request(q, [_rq(blk.T_IN, 0)], [512, 1])
    assert [x.data for x in sink.messages] == [0x41]
    assert m.ports.read(IO_BASE + 0x14, 2) == 0xFFFF  # legacy config vector (4.1.4.10)


def test_legacy_interface(tmp_path: Path) -> None:
    m, fn, d, _ = _blk(tmp_path)
    io = IO_BASE
    m.ports.write(io + 0x12, 1, 0)
    feats = m.ports.read(io, 4)
    assert feats & blk.F_FLUSH and m.ports.read(io + 0x0C, 2) == blk.QUEUE_SIZE
    m.ports.write(io + 0x12, 1, vd.S_ACKNOWLEDGE | vd.S_DRIVER)
    m.ports.write(io + 0x04, 4, blk.F_FLUSH)
    pfn = 0x300
    m.ports.write(io + 0x08, 4, pfn)
    assert m.ports.read(io + 0x08, 4) == pfn
    m.ports.write(io + 0x12, 1, vd.S_ACKNOWLEDGE | vd.S_DRIVER | vd.S_DRIVER_OK)
    # Capacity at 0x14 without MSI-X (4.1.4.10).
    assert m.ports.read(io + 0x14, 4) == 64
    q = fn.queues[0]
    assert q.desc == pfn << 12 and q.device % 4096 == 0
    from tests.virtio_driver import Queue

    dq = Queue(0, q.size, q.desc, q.driver, q.device, 0)
    head, ins = d.add_chain(dq, [_rq(blk.T_IN, 2)], [512, 1])
    d.make_available(dq, head, kick=False)
    m.ports.write(io + 0x10, 2, 0)
    assert d.used(dq) == [(head, 513)] and d.mem_read(ins[0], 512) == b"\x02" * 512
    assert m.ports.read(io + 0x13, 1) == 1  # ISR, cleared by the read
    assert m.ports.read(io + 0x13, 1) == 0
    m.ports.write(io + 0x12, 1, 0)
    assert fn.queues[0].desc == 0 and m.ports.read(io + 0x08, 4) == 0


@pytest.mark.parametrize(
    "case", ["loop", "outside-ram", "head-past-size", "huge-length", "nested-indirect"]
)
def test_bad_chains_set_needs_reset_and_reset_recovers(tmp_path: Path, case: str) -> None:
    _, fn, d, _ = _blk(tmp_path)
    d.init(vd.F_RING_INDIRECT_DESC)
    q = d.queues[0]
    hdr = d.alloc(16)
    d.mem_write(hdr, _rq(blk.T_IN))
    head = 0
    if case == "loop":
        d.write_desc(q, 0, hdr, 16, 1, 1)
        d.write_desc(q, 1, hdr, 16, 1, 0)
    elif case == "outside-ram":
        d.write_desc(q, 0, 0xE0000000, 16, 0, 0)
    elif case == "head-past-size":
        head = q.size + 3
    elif case == "huge-length":
        d.write_desc(q, 0, hdr, 0xFFFFFFFF, 0, 0)
    else:
        t1, t2 = d.alloc(16), d.alloc(16)
        d.mem_write(t1, struct.pack("<QIHH", t2, 16, 4, 0))
        d.write_desc(q, 0, t1, 16, 4, 0)
    d.make_available(q, head)
    assert d.status & vd.S_NEEDS_RESET
    assert d.used(q) == []
    # 2.1.2: the driver resets; the device comes back clean and works again.
    d.wr(0x14, 1, 0)
    assert d.status == 0 and fn.queues[0].enabled is False and fn.queues[0].last_avail == 0
    d.queues.clear()
    d.init(0)
    _, (data, status) = d.request(d.queues[0], [_rq(blk.T_IN, 5)], [512, 1])
    assert status == b"\0" and data == b"\x05" * 512


def test_avail_index_jump_sets_needs_reset(tmp_path: Path) -> None:
    _, _, d, _ = _blk(tmp_path)
    d.init(0)
    q = d.queues[0]
    d.mem_write(q.avail + 2, struct.pack("<H", q.size + 1))
    d.kick(q)
    assert d.status & vd.S_NEEDS_RESET


def test_queue_outside_ram_is_refused(tmp_path: Path) -> None:
    _, fn, d, _ = _blk(tmp_path)
    assert d.negotiate(vd.F_VERSION_1)
    d.wr(0x16, 2, 0)
    d.wr(0x20, 4, 0xFFFF0000)
    d.wr(0x1C, 2, 1)
    assert not fn.queues[0].enabled and d.status & vd.S_NEEDS_RESET


def test_several_disks(tmp_path: Path) -> None:
    m = PcMachine(clock=ManualClock())
    drivers = []
    for k in range(3):
        p = tmp_path / f"d{k}.img"
        p.write_bytes(bytes([0x10 + k]) * 4096)
        fn = VirtioPci(blk.VirtioBlk(RawImage(str(p)), InlineExecutor()), name=f"vd{k}")
        m.pci_bus.add(fn, SLOT + k)
    for k in range(3):
        d = Driver(m, SLOT + k, heap=0x200000 + k * 0x100000, n=k)
        drivers.append(d)
    for k, d in enumerate(drivers):
        d.init(0)
        _, (data, st) = d.request(d.queues[0], [_rq(blk.T_IN, 1)], [512, 1])
        assert st == b"\0" and data == bytes([0x10 + k]) * 512


class _Counting:
    def __init__(self) -> None:
        self.asked: list[int] = []

    def read(self, n: int) -> bytes:
        self.asked.append(n)
        return UrandomSource().read(n)


def test_rng_fills_buffers_bounded() -> None:
    m = PcMachine(clock=ManualClock())
    src = _Counting()
    m.pci_bus.add(VirtioPci(VirtioRng(src), name="rng"), SLOT)
    d = Driver(m, SLOT)
    assert d.cfg_read(0, 4) == 0x10051AF4
    d.init(0)
    q = d.queues[0]
    n, (a, b) = d.request(q, [], [16, 48])
    assert n == 64 and len(set(a + b)) > 8 and b"\xee" * 8 not in a + b
    n, _ = d.request(q, [], [1 << 20])
    assert n == 64 << 10 and max(src.asked) == 64 << 10  # bounded host allocation


def test_save_restore_round_trip_and_validation(tmp_path: Path) -> None:
    from southbridge.core.state import StateError

    _, fn, d, _ = _blk(tmp_path)
    d.init(vd.F_RING_EVENT_IDX)
    q = d.queues[0]
    d.request(q, [_rq(blk.T_IN, 1)], [512, 1])
    saved = fn.save()
    d.wr(0x14, 1, 0)  # reset: queues gone
    assert not fn.queues[0].enabled
    fn.restore(saved)
    assert fn.queues[0].enabled and fn.queues[0].last_avail == 1 and d.status & vd.S_DRIVER_OK
    _, (data, st) = d.request(q, [_rq(blk.T_IN, 2)], [512, 1])  # continues where it was
    assert st == b"\0" and data == b"\x02" * 512
    bad = dict(saved, device=dict(saved["device"], driver_features=1 << 63))
    with pytest.raises(StateError):
        fn.restore(bad)
    qs = dict(saved["device"]["queues"][0], size=3)
    bad = dict(saved, device=dict(saved["device"], queues=[qs]))
    with pytest.raises(StateError):
        fn.restore(bad)
    assert fn.queues[0].size == q.size  # a rejected state leaves the device unchanged


def test_requests_complete_off_the_caller_thread_under_the_machine_lock(tmp_path: Path) -> None:
    """With the host worker (ThreadExecutor), the notify returns before the I/O is done
    and the completion writes the guest's buffers while holding the machine lock."""
    import threading

    from southbridge.host.block import ThreadExecutor

    p = _image(tmp_path)
    m = PcMachine(clock=ManualClock())
    gate = threading.Event()

    class SlowImage(RawImage):
        def read(self, offset: int, length: int) -> bytes:
            gate.wait(5)  # a slow disk: the vCPU side must not wait for it
            return super().read(offset, length)

    ex = ThreadExecutor(m.lock, "test")
    fn = VirtioPci(blk.VirtioBlk(SlowImage(str(p)), ex))
    m.pci_bus.add(fn, SLOT)
    d = Driver(m, SLOT)
    holders: list[bool] = []
    orig_used = fn.used

    def used(q: object) -> None:
        holders.append(m.lock._is_owned())  # type: ignore[attr-defined]  # RLock: this thread?
        orig_used(q)  # type: ignore[arg-type]

    fn.used = used  # type: ignore[method-assign]
    try:
        with m.lock:
            d.init(0)
            q = d.queues[0]
            head, (buf, st) = d.add_chain(q, [_rq(blk.T_IN, 9)], [512, 1])
            d.make_available(q, head)
            assert d.used(q) == []  # returned at once, request still in flight
        gate.set()
        ex.close()  # finishes the queued request
        with m.lock:
            assert d.used(q) == [(head, 513)]
            assert d.mem_read(buf, 512) == b"\x09" * 512 and d.mem_read(st, 1) == b"\0"
        assert holders == [True]
    finally:
        gate.set()
        ex.close()
