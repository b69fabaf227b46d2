"""Run by tests/test_tap.py in its own process: in a fresh network namespace (nothing the
host uses is touched), a tap interface joins a virtio-net card to a raw packet socket,
and frames cross both ways. Prints "ok" or "skip: REASON" and exits 0 / 77."""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import sys
import threading

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP = 0x1
ETH_P_ALL = 0x0003
ETHERTYPE = 0x88B5  # IEEE 802 local experimental
IFNAME = "sbtap0"


def main() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        print(f"skip: unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}")
        return 77
    if not os.path.exists("/dev/net/tun"):
        print("skip: /dev/net/tun is missing")
        return 77
    from southbridge.core.clock import ManualClock
    from southbridge.host.tap import TapBackend, open_tap
    from southbridge.machine.pc import PcMachine
    from southbridge.virtio.net import F_MRG_RXBUF, HDR_LEN, VirtioNet
    from southbridge.virtio.pci import VirtioPci
    from tests.virtio_driver import Driver

    backend = TapBackend(open_tap(IFNAME))
    # The namespace's own IPv6 would greet the link with router solicitations: keep quiet.
    v6 = f"/proc/sys/net/ipv6/conf/{IFNAME}/disable_ipv6"
    if os.path.exists(v6):
        with open(v6, "w") as f:
            f.write("1")
    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    req = struct.pack("16sH22x", IFNAME.encode(), 0)
    flags = struct.unpack("16sH22x", fcntl.ioctl(ctl, SIOCGIFFLAGS, req))[1]
    fcntl.ioctl(ctl, SIOCSIFFLAGS, struct.pack("16sH22x", IFNAME.encode(), flags | IFF_UP))
    peer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    peer.bind((IFNAME, 0))
    peer.settimeout(5)

    mac = bytes.fromhex("525400123456")
    m = PcMachine(clock=ManualClock())
    dev = VirtioNet(backend, mac)
    arrived = threading.Event()
    on_input = m.locked(dev.input_ready)

    def input_and_signal() -> None:
        on_input()
        arrived.set()

    backend.attach(input_and_signal, m.locked(dev.output_ready))
    m.pci_bus.add(VirtioPci(dev, name="virtio-net"), 4)
    d = Driver(m, 4)
    with m.lock:
        d.init(F_MRG_RXBUF, nqueues=2)

    # Guest -> host: a frame the card transmits comes out of the tap.
    out = b"\xff" * 6 + mac + struct.pack(">H", ETHERTYPE) + b"to the host" * 8
    tx = d.queues[1]
    with m.lock:
        head, _ = d.add_chain(tx, [bytes(HDR_LEN), out], [])
        d.make_available(tx, head)
    while True:  # the namespace is quiet, but skip anything that is not ours
        got = peer.recv(65536)
        if got[12:14] == struct.pack(">H", ETHERTYPE):
            break
    assert got == out, got

    # Host -> guest: a frame written into the tap lands in the card's receive buffer.
    back = mac + b"\x02\x00\x00\x00\x00\x01" + struct.pack(">H", ETHERTYPE) + b"to the guest"
    rx = d.queues[0]
    with m.lock:
        h, (buf,) = d.add_chain(rx, [], [2048])
        d.make_available(rx, h)
    arrived.clear()
    peer.send(back)
    assert arrived.wait(5), "no frame from the tap"
    while True:
        with m.lock:
            used = d.used(rx)
        if used:
            break
        arrived.clear()
        assert arrived.wait(5)
    ((idx, length),) = used
    with m.lock:
        data = d.mem_read(buf + HDR_LEN, length - HDR_LEN)
    assert idx == h and data[: len(back)] == back, data
    backend.close()
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
