"""virtio-net (virtio 1.2, 5.1) on QEMU's stream framing over a real socket pair, and
passt started as a child."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from southbridge.core.clock import ManualClock
from southbridge.host.net import NetError, StreamBackend, start_passt
from southbridge.machine.pc import PcMachine
from southbridge.virtio import device as vd
from southbridge.virtio.net import F_MRG_RXBUF, HDR_LEN, VirtioNet
from southbridge.virtio.pci import VirtioPci
from tests.virtio_driver import Driver

SLOT = 4
MAC = bytes.fromhex("525400123456")


class Rig:
    def __init__(self, features: int) -> None:
        self.ours, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.peer.settimeout(5)
        self.m = PcMachine(clock=ManualClock())
        self.backend = StreamBackend(self.ours)
        self.dev = VirtioNet(self.backend, MAC)
        self.arrived = threading.Event()
        on_input = self.m.locked(self.dev.input_ready)

        def input_and_signal() -> None:
            on_input()
            self.arrived.set()

        self.backend.attach(input_and_signal, self.m.locked(self.dev.output_ready))
        self.fn = VirtioPci(self.dev, name="virtio-net")
        self.m.pci_bus.add(self.fn, SLOT)
        self.d = Driver(self.m, SLOT)
        with self.m.lock:
            self.d.init(features, nqueues=2)

    def peer_send(self, frame: bytes) -> None:
        self.arrived.clear()
        self.peer.sendall(struct.pack(">I", len(frame)) + frame)
        assert self.arrived.wait(5)

    def peer_recv(self) -> bytes:
        n = struct.unpack(">I", _exact(self.peer, 4))[0]
        return _exact(self.peer, n)

    def close(self) -> None:
        self.backend.close()
        self.peer.close()


def _exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk
        buf += chunk
    return buf


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig(F_MRG_RXBUF)
    yield r
    r.close()


def test_config_mac_and_link(rig: Rig) -> None:
    m, d = rig.m, rig.d
    assert d.cfg_read(0, 4) == 0x10001AF4
    assert bytes(m.mmio.read(d.devcfg + i, 1) for i in range(6)) == MAC
    assert m.mmio.read(d.devcfg + 6, 2) == 1  # VIRTIO_NET_S_LINK_UP
    with m.lock:
        rig.dev.set_link(False)
    assert m.mmio.read(d.devcfg + 6, 2) == 0
    assert m.mmio.read(d.isr, 1) & 2  # configuration change interrupt (5.1.4)


def test_transmit_frame_reaches_the_peer(rig: Rig) -> None:
    frame = MAC + bytes(6) + b"\x08\x00" + b"payload" * 10
    tx = rig.d.queues[1]
    with rig.m.lock:
        head, _ = rig.d.add_chain(tx, [bytes(HDR_LEN), frame], [])
        rig.d.make_available(tx, head)
    assert rig.peer_recv() == frame
    with rig.m.lock:
        assert rig.d.used(tx) == [(head, 0)]


def test_receive_waits_for_buffers_then_merges(rig: Rig) -> None:
    d, rx = rig.d, rig.d.queues[0]
    frame = bytes(range(256)) * 12  # 3072 bytes: needs two 2048-byte buffers
    rig.peer_send(frame)
    assert rig.backend.peek() == frame  # no buffers yet: the frame waits, not dropped
    with rig.m.lock:
        h1, (b1,) = d.add_chain(rx, [], [2048])
        d.make_available(rx, h1)
        assert d.used(rx) == [] and rig.backend.peek() == frame  # one is not enough
        h2, (b2,) = d.add_chain(rx, [], [2048])
        d.make_available(rx, h2)
        got = d.used(rx)
    assert [g[0] for g in got] == [h1, h2]
    assert got[0][1] == 2048 and got[1][1] == HDR_LEN + len(frame) - 2048
    hdr = d.mem_read(b1, HDR_LEN)
    assert struct.unpack("<H", hdr[10:12])[0] == 2  # num_buffers (5.1.6.4)
    data = d.mem_read(b1 + HDR_LEN, 2048 - HDR_LEN) + d.mem_read(b2, got[1][1])
    assert data == frame and rig.backend.peek() is None


def test_receive_many_frames_in_order(rig: Rig) -> None:
    d, rx = rig.d, rig.d.queues[0]
    with rig.m.lock:
        bufs = []
        for _ in range(4):
            h, (b,) = d.add_chain(rx, [], [1600])
            d.make_available(rx, h)
            bufs.append(b)
    for k in range(4):
        rig.peer_send(bytes([k]) * (60 + k))
    with rig.m.lock:
        got = d.used(rx)
    assert [n for _, n in got] == [HDR_LEN + 60 + k for k in range(4)]
    for k, b in enumerate(bufs):
        assert d.mem_read(b + HDR_LEN, 60 + k) == bytes([k]) * (60 + k)


def test_missing_passt_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(NetError, match="passt binary is not installed"):
        start_passt()


@pytest.mark.skipif(shutil.which("passt") is None, reason="Debian's passt is not installed")
def test_passt_child_starts_and_ends_with_the_backend() -> None:
    be = start_passt()
    assert be._on_close is not None
    # passt answers nothing unprompted; the stream is open and the child alive.
    assert be.peek() is None
    assert any(p.isdigit() and _is_passt_child(int(p)) for p in os.listdir("/proc"))
    be.close()
    assert not any(p.isdigit() and _is_passt_child(int(p)) for p in os.listdir("/proc")), (
        "passt kept running after close"
    )


def _is_passt_child(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().split()
    except OSError:
        return False
    return fields[1].startswith("(passt") and int(fields[3]) == os.getpid() and fields[2] != "Z"


def test_features_offered() -> None:
    r = Rig(0)
    try:
        f = r.d.device_features()
        assert f & vd.F_VERSION_1 and f & F_MRG_RXBUF and f & (1 << 5) and f & (1 << 16)
    finally:
        r.close()
