"""The QMP control socket: `--qmp unix:PATH,server` (host side: a listening thread and one
thread per client; each feeds a `QmpSession` and writes its replies)."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading

from southbridge.qmp.protocol import Controller, QmpSession, event

CLOSE_WAIT_S = 5.0


class QmpOptionError(ValueError):
    """A `--qmp` value southbridge cannot serve."""


def parse_qmp_option(text: str) -> str:
    """`unix:PATH,server[,wait=off]` (QEMU's chardev spelling) -> PATH. southbridge never
    waits for a client before starting the guest, so `wait=on` is refused."""
    if not text.startswith("unix:"):
        raise QmpOptionError(f"--qmp {text!r}: only unix:PATH,server is supported")
    path, *opts = text[5:].split(",")
    if not path:
        raise QmpOptionError("--qmp: the socket path is empty")
    flags = set(opts)
    if "server" not in flags and "server=on" not in flags:
        raise QmpOptionError("--qmp: southbridge listens: add ,server")
    if flags - {"server", "server=on", "wait=off", "nowait"}:
        bad = sorted(flags - {"server", "server=on", "wait=off", "nowait"})[0]
        raise QmpOptionError(f"--qmp: unsupported option {bad!r}")
    return path


class QmpServer:
    """Listens on a unix socket; `emit` sends an event to every negotiated client. Commands
    call the controller from the client's thread: the controller takes the locks it needs."""

    def __init__(self, path: str, controller: Controller) -> None:
        self.path = path
        self.controller = controller
        self._clients: list[tuple[socket.socket, QmpSession]] = []
        self._lock = threading.Lock()
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):  # a stale socket of an earlier run
                os.unlink(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(path)
            self._sock.listen(4)
        except OSError as e:
            self._sock.close()
            raise QmpOptionError(f"--qmp {path}: {e.strerror or e}") from None
        self._closed = False
        self._inflight = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="qmp", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(conn,), name="qmp-client", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        session = QmpSession(self.controller)
        with self._lock:
            self._clients.append((conn, session))
        try:
            self._send(conn, session.greeting())
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                # A command and its reply as one step, so that `close` (after `quit`,
                # say) waits for the reply to go out before it shuts the sockets.
                with self._inflight:
                    reply = session.feed(data)
                    if reply:
                        self._send(conn, reply)
        except OSError:
            pass
        finally:
            with self._lock:
                self._clients = [(c, s) for c, s in self._clients if c is not conn]
            conn.close()

    def _send(self, conn: socket.socket, data: bytes) -> None:
        with self._lock:  # replies and events do not interleave mid-line
            conn.sendall(data)

    def emit(self, name: str, data: dict[str, object] | None = None) -> None:
        line = event(name, data)
        with self._lock:
            clients = [c for c, s in self._clients if s.negotiated]
        for conn in clients:
            with contextlib.suppress(OSError):
                self._send(conn, line)

    def close(self) -> None:
        # Bounded: a command stuck in the controller must not hold the run's exit.
        took = self._inflight.acquire(timeout=CLOSE_WAIT_S)
        try:
            self._close()
        finally:
            if took:
                self._inflight.release()

    def _close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with self._lock:
            for conn, _ in self._clients:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
