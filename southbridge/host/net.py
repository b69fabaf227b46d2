"""Host network backends for virtio-net: QEMU's `-netdev stream` framing over a connected
stream socket (a socket pair in tests, passt's socket), and passt started as a child.

Frames are a 4-byte big-endian length then the Ethernet frame, as QEMU and passt speak
it. A reader thread queues received frames (at most `QUEUE_FRAMES`; it stops reading the
socket while full, so the peer sees back-pressure, never a silent drop); a writer thread
sends queued frames (`send` refuses, without blocking, when its queue is full, and
`on_ready` says when to retry). Callbacks come from these threads: the machine wraps them
in its device lock.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Callable

logger = logging.getLogger("southbridge.host.net")

QUEUE_FRAMES = 256
MAX_FRAME = 65535 + 14


def _nothing() -> None:
    return None


class NetError(ValueError):
    """A network backend could not be set up: one line for the user."""


class StreamBackend:
    def __init__(self, sock: socket.socket, on_close: Callable[[], None] | None = None) -> None:
        self.sock = sock
        self._rx: collections.deque[bytes] = collections.deque()
        self._tx: collections.deque[bytes] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._on_input: Callable[[], None] = _nothing
        self._on_ready: Callable[[], None] = _nothing
        self._refused = False
        self._on_close = on_close
        self._reader = threading.Thread(target=self._read_loop, name="net-rx", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="net-tx", daemon=True)
        self._reader.start()
        self._writer.start()

    def attach(self, on_input: Callable[[], None], on_ready: Callable[[], None]) -> None:
        self._on_input, self._on_ready = on_input, on_ready
        if self.peek() is not None:
            on_input()

    # -- the device side -----------------------------------------------------------------
    def send(self, frame: bytes) -> bool:
        with self._cond:
            if self._closed:
                return True  # the peer is gone: frames go nowhere, as a cable pulled
            if len(self._tx) >= QUEUE_FRAMES:
                self._refused = True
                return False
            self._tx.append(frame)
            self._cond.notify_all()
            return True

    def peek(self) -> bytes | None:
        with self._cond:
            return self._rx[0] if self._rx else None

    def take(self) -> None:
        with self._cond:
            if self._rx:
                self._rx.popleft()
                self._cond.notify_all()  # the reader may wait for room

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._shutdown()
        for t in (self._reader, self._writer):
            if t is not threading.current_thread():
                t.join(2)
        self._release()
        if self._on_close is not None:
            self._on_close()

    # -- the transport (a subclass may carry frames another way: host/tap.py) -------------
    def _shutdown(self) -> None:
        """Wake the reader thread blocked on the peer (close is under way)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _release(self) -> None:
        self.sock.close()

    # -- threads -------------------------------------------------------------------------
    def _recv_exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _recv_frame(self) -> bytes | None:
        """The next frame from the peer (None: it is gone)."""
        head = self._recv_exact(4)
        if head is None:
            return None
        (n,) = struct.unpack(">I", head)
        if n > MAX_FRAME:
            logger.warning("net: peer sent a %d-byte frame; closing the stream", n)
            return None
        return self._recv_exact(n)

    def _send_frame(self, frame: bytes) -> bool:
        try:
            self.sock.sendall(struct.pack(">I", len(frame)) + frame)
        except OSError:
            return False
        return True

    def _read_loop(self) -> None:
        while True:
            frame = self._recv_frame()
            if frame is None:
                return
            with self._cond:
                while not self._closed and len(self._rx) >= QUEUE_FRAMES:
                    self._cond.wait()
                if self._closed:
                    return
                self._rx.append(frame)
            self._on_input()

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._tx and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                frame = self._tx.popleft()
                ready = self._refused
                self._refused = False
            if not self._send_frame(frame):
                return
            if ready:
                self._on_ready()


def start_passt() -> StreamBackend:
    """Debian's passt as a child on one end of a socket pair (`--fd`); ended with the
    backend."""
    exe = shutil.which("passt")
    if exe is None:
        raise NetError("--netdev user: the passt binary is not installed (apt-get install passt)")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        child = subprocess.Popen(
            [exe, "-f", "-q", "--fd", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # chatty even with -q; never read, so never a pipe
        )
    except OSError as e:
        ours.close()
        raise NetError(f"--netdev user: cannot start passt: {e.strerror}") from None
    finally:
        theirs.close()

    def stop() -> None:
        child.terminate()
        try:
            child.wait(2)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    return StreamBackend(ours, on_close=stop)


class FrameBuffer:
    """In-memory frame backend for tests and tools, driven by the caller (no threads):
    `feed` queues a received frame, `sent` collects transmitted ones (at most `capacity`
    until `drain`, which then says the backend is ready again)."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.sent: list[bytes] = []
        self.delivered: list[bytes] = []
        self._rx: collections.deque[bytes] = collections.deque()
        self._on_input: Callable[[], None] = _nothing
        self._on_ready: Callable[[], None] = _nothing

    def attach(self, on_input: Callable[[], None], on_ready: Callable[[], None]) -> None:
        self._on_input, self._on_ready = on_input, on_ready

    def send(self, frame: bytes) -> bool:
        if self.capacity is not None and len(self.sent) >= self.capacity:
            return False
        self.sent.append(frame)
        return True

    def drain(self) -> None:
        self.delivered += self.sent
        self.sent.clear()
        self._on_ready()

    def feed(self, frame: bytes) -> None:
        self._rx.append(frame)
        self._on_input()

    def peek(self) -> bytes | None:
        return self._rx[0] if self._rx else None

    def take(self) -> None:
        if self._rx:
            self._rx.popleft()

    def close(self) -> None:
        return None
