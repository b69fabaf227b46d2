"""`--netdev tap,ifname=NAME`: a virtio-net card on a host tap interface (Linux's TUN/TAP
driver, Documentation/networking/tuntap.rst), for root users as with QEMU's tap backend.

The interface is attached with TUNSETIFF (IFF_TAP | IFF_NO_PI: whole Ethernet frames, no
packet-information header); a persistent one made with `ip tuntap add` is reused, a name
that does not exist yet is created for the run. One read is one frame, one write one
frame. The threads and queues are `StreamBackend`'s (host/net.py): the reader waits on the
tap and a wake-up pipe, so close never waits on a quiet interface.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct

from southbridge.host.net import MAX_FRAME, NetError, StreamBackend

TUN_DEVICE = "/dev/net/tun"
TUNSETIFF = 0x400454CA  # _IOW('T', 202, int)
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFNAMSIZ = 16


def open_tap(ifname: str, device: str = TUN_DEVICE) -> int:
    """A tap fd attached to `ifname`, or a NetError line saying why not."""
    raw = ifname.encode()
    if not raw or len(raw) >= IFNAMSIZ or b"/" in raw or b"\0" in raw or raw.strip() != raw:
        raise NetError(f"tap: {ifname!r} is not an interface name (1-15 characters)")
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise NetError(f"tap: cannot open {device}: {e.strerror}") from None
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", raw, IFF_TAP | IFF_NO_PI))
    except OSError as e:
        os.close(fd)
        why = "it exists and is not a tap, or is in use" if e.errno == 16 else e.strerror
        raise NetError(f"tap: cannot attach {ifname}: {why}") from None
    return fd


class TapBackend(StreamBackend):
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._wake_r, self._wake_w = os.pipe()
        super().__init__(None)  # type: ignore[arg-type]  # no socket: the tap fd

    def _recv_frame(self) -> bytes | None:
        while True:
            try:
                ready, _, _ = select.select([self.fd, self._wake_r], [], [])
            except (OSError, ValueError):
                return None
            if self._wake_r in ready:
                return None
            try:
                frame = os.read(self.fd, MAX_FRAME)
            except BlockingIOError:
                continue
            except OSError:
                return None
            if frame:
                return frame

    def _send_frame(self, frame: bytes) -> bool:
        try:
            os.write(self.fd, frame)
        except OSError:
            return False  # the interface went away
        return True

    def _shutdown(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _release(self) -> None:
        for fd in (self.fd, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
