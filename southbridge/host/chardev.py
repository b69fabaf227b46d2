"""Character backends: where a serial port's output goes and where its input comes from.

They implement the device side's `southbridge.devices.chardev.CharBackend` protocol. A
backend never blocks its caller (a vCPU thread holding the device lock):

* Output: `write(data)` takes what fits in a bounded buffer and returns how many bytes it
  took; a writer thread owned by the backend drains the buffer into the host file, terminal
  or socket. When a write was refused, the backend calls the frontend's `on_ready` callback
  once the buffer has drained, so the UART can retry (its back-pressure keeps THRE clear in
  the meantime and no guest byte is lost).
* Input: a reader thread queues host bytes in a bounded buffer (waiting, never dropping, when
  it is full) and calls `on_input`; the UART pulls them with `read(n)` at the line rate.

Callbacks run on the backend's threads with no backend lock held, so the machine may take its
device lock around them (lock order: device lock, then backend lock).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import stat
import sys
import termios
import threading
from collections.abc import Callable, Sequence
from typing import Any

from southbridge.core.ratelog import RateLimitedLog
from southbridge.devices.chardev import Callback, CharBackend, NullBackend
from southbridge.devices.debugport import ByteSink
from southbridge.host.userfile import open_output_binary, open_output_fd

logger = logging.getLogger("southbridge.chardev")
# Output errors repeat for every chunk the guest writes: keep them from flooding the log.
_errlog = RateLimitedLog(logger)


OUT_CAPACITY = 64 * 1024
IN_CAPACITY = 4096
_CHUNK = 4096
_CLOSE_FLUSH_SECONDS = 2.0


def _nothing() -> None:
    return None


class CharBackendBase:
    """Base backend: the bounded host-input queue and the frontend callbacks."""

    def __init__(self, in_capacity: int = IN_CAPACITY) -> None:
        self._in = bytearray()
        self._in_capacity = max(1, in_capacity)
        self._in_cond = threading.Condition()
        self._closed = False
        self._on_input: Callback = _nothing
        self._on_ready: Callback = _nothing

    def attach(self, on_input: Callback, on_ready: Callback) -> None:
        """Connect a frontend: `on_input` when host bytes are queued, `on_ready` when output
        that was refused can be retried."""
        self._on_input = on_input
        self._on_ready = on_ready
        if self.pending_input():
            on_input()

    def write(self, data: bytes) -> int:
        """Queue guest output without blocking; returns how many leading bytes were taken."""
        raise NotImplementedError

    def read(self, n: int) -> bytes:
        """Take up to `n` queued host-input bytes (never blocks)."""
        with self._in_cond:
            chunk = bytes(self._in[:n])
            del self._in[:n]
            if chunk:
                self._in_cond.notify_all()  # a reader thread may wait for room
        return chunk

    def pending_input(self) -> int:
        with self._in_cond:
            return len(self._in)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._in_cond:
            self._closed = True
            self._in_cond.notify_all()

    def _feed(self, data: bytes) -> bool:
        """Reader threads: queue host input, waiting while the queue is full.

        Returns False if the backend was closed before everything was queued.
        """
        view = memoryview(data)
        while view:
            with self._in_cond:
                while not self._closed and len(self._in) >= self._in_capacity:
                    self._in_cond.wait()
                if self._closed:
                    return False
                room = self._in_capacity - len(self._in)
                self._in += view[:room]
                view = view[room:]
            self._on_input()
        return True


class BufferBackend(CharBackendBase):
    """In-memory backend for tests and tools, driven by the caller (no threads).

    With `capacity`, at most that many accepted bytes wait in `pending` until the caller
    `drain`s them into `output`, like a slow host; without it output goes straight to
    `output`. `feed` queues host input.
    """

    def __init__(self, capacity: int | None = None, in_capacity: int = IN_CAPACITY) -> None:
        super().__init__(in_capacity)
        self.capacity = capacity
        self.output = bytearray()
        self.pending = bytearray()
        self._refused = False

    def write(self, data: bytes) -> int:
        if self._closed:
            return len(data)
        if self.capacity is None:
            self.output += data
            return len(data)
        take = max(0, self.capacity - len(self.pending))
        if take < len(data):
            self._refused = True
        self.pending += data[:take]
        return min(take, len(data))

    def drain(self, n: int | None = None) -> bytes:
        """Deliver up to `n` (default all) pending bytes, then tell the frontend."""
        count = len(self.pending) if n is None else max(0, n)
        chunk = bytes(self.pending[:count])
        del self.pending[:count]
        self.output += chunk
        if self._refused:
            self._refused = False
            self._on_ready()
        return chunk

    def feed(self, data: bytes) -> None:
        """Queue host input now (the caller is the host side; no capacity check)."""
        with self._in_cond:
            self._in += data
        if data:
            self._on_input()


class _Writer:
    """A bounded output buffer drained by one thread into a blocking `sink`."""

    def __init__(
        self, sink: Callable[[bytes], None], capacity: int, on_ready: Callback, name: str
    ) -> None:
        self._sink = sink
        self._capacity = max(1, capacity)
        self._on_ready = on_ready
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._closing = False
        self._refused = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def offer(self, data: bytes) -> int:
        with self._cond:
            if self._closing:
                return len(data)
            take = min(len(data), self._capacity - len(self._buf))
            if take < len(data):
                self._refused = True
            if take:
                self._buf += data[:take]
                self._cond.notify()
            return take

    def buffered(self) -> int:
        with self._cond:
            return len(self._buf)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._buf and not self._closing:
                    self._cond.wait()
                if not self._buf:
                    return
                # The chunk stays counted in the buffer until written: the bound is real.
                chunk = bytes(self._buf[:_CHUNK])
            try:
                self._sink(chunk)
            except OSError as e:
                _errlog.warning(self._thread.name, "%s: output lost: %s", self._thread.name, e)
            with self._cond:
                del self._buf[: len(chunk)]
                wake = self._refused
                self._refused = False
            if wake:
                self._on_ready()

    def close(self) -> None:
        """Stop taking output; give what is buffered a bounded time to reach the sink."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(_CLOSE_FLUSH_SECONDS)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class _WakePipe:
    """A self-pipe that lets `close()` interrupt a reader thread's select()."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.w, b"x")

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


class _WriterBackend(CharBackendBase):
    """A backend whose output goes through a bounded `_Writer` drained by its own thread;
    the writer's "drained" signal reaches whichever frontend is attached at the time."""

    _writer: _Writer

    def _ready(self) -> None:
        self._on_ready()

    def write(self, data: bytes) -> int:
        return self._writer.offer(data)


class FileBackend(_WriterBackend):
    """Output to a file (created or truncated, as QEMU's file chardev does); no input."""

    def __init__(self, path: str, capacity: int = OUT_CAPACITY) -> None:
        super().__init__()
        self.path = path
        self._fd = open_output_fd(path)  # a FIFO without a reader is refused, not waited for
        self._writer = _Writer(self._sink, capacity, self._ready, f"chardev-file:{path}")

    def _sink(self, data: bytes) -> None:
        _write_all(self._fd, data)

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        self._writer.close()
        os.close(self._fd)


class StdioBackend(_WriterBackend):
    """The host terminal: output to `out_fd`, input from `in_fd` (stdout/stdin by default).

    A terminal on `in_fd` is switched to character-at-a-time input without echo (the guest
    echoes), keeping ISIG so Ctrl-C still stops the VMM; `close` restores it.
    """

    def __init__(
        self,
        in_fd: int | None = None,
        out_fd: int | None = None,
        capacity: int = OUT_CAPACITY,
        in_capacity: int = IN_CAPACITY,
    ) -> None:
        super().__init__(in_capacity)
        self._in_fd = sys.stdin.fileno() if in_fd is None else in_fd
        self._out_fd = sys.stdout.fileno() if out_fd is None else out_fd
        self._saved_tty: list[Any] | None = None
        self._make_raw()
        self._wake = _WakePipe()
        self._writer = _Writer(self._sink, capacity, self._ready, "chardev-stdio-out")
        self._reader = threading.Thread(target=self._read_loop, name="chardev-stdio-in")
        self._reader.daemon = True
        self._reader.start()

    def _make_raw(self) -> None:
        try:
            if not os.isatty(self._in_fd):
                return
            attrs = termios.tcgetattr(self._in_fd)
        except (OSError, termios.error):
            return
        self._saved_tty = list(attrs)
        attrs[0] &= ~(termios.ICRNL | termios.IXON)  # iflag: guest sees CR, ^S/^Q pass
        attrs[3] &= ~(termios.ICANON | termios.ECHO | termios.IEXTEN)  # lflag
        attrs[6][termios.VMIN] = 1
        attrs[6][termios.VTIME] = 0
        termios.tcsetattr(self._in_fd, termios.TCSANOW, attrs)

    def _sink(self, data: bytes) -> None:
        _write_all(self._out_fd, data)

    def _read_loop(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(self._in_fd, selectors.EVENT_READ)
            sel.register(self._wake.r, selectors.EVENT_READ)
        except PermissionError:
            # A regular file or /dev/null cannot be polled: it never blocks, so plain reads
            # until EOF do (a guest reading it sees the file's bytes, as with QEMU's stdio).
            sel.close()
            self._read_plain()
            return
        except (OSError, ValueError) as e:
            logger.warning("stdio: no input: %s", e)
            sel.close()
            return
        try:
            while not self._closed:
                for key, _ in sel.select():
                    if key.fd == self._wake.r:
                        return
                    data = os.read(self._in_fd, _CHUNK)
                    if not data or not self._feed(data):
                        return  # EOF on stdin: output keeps working
        except OSError as e:
            logger.warning("stdio: input stopped: %s", e)
        finally:
            sel.close()

    def _read_plain(self) -> None:
        try:
            while not self._closed:
                data = os.read(self._in_fd, _CHUNK)
                if not data or not self._feed(data):
                    return
        except OSError as e:
            logger.warning("stdio: input stopped: %s", e)

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        self._wake.wake()
        self._reader.join(_CLOSE_FLUSH_SECONDS)
        self._writer.close()
        self._wake.close()
        if self._saved_tty is not None:
            with contextlib.suppress(OSError, termios.error):
                termios.tcsetattr(self._in_fd, termios.TCSADRAIN, self._saved_tty)


class UnixSocketBackend(_WriterBackend):
    """A listening Unix stream socket at `path`, serving one client at a time.

    A further client waits in the listen backlog until the current one disconnects. Output
    while nobody is connected is discarded (an unplugged cable); a connected client that
    reads slowly back-pressures the guest through the bounded buffer.
    """

    def __init__(
        self, path: str, capacity: int = OUT_CAPACITY, in_capacity: int = IN_CAPACITY
    ) -> None:
        super().__init__(in_capacity)
        self.path = path
        self._remove_stale_socket(path)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._server.bind(path)
            self._server.listen(1)
        except OSError:
            self._server.close()
            raise
        self._client: socket.socket | None = None
        self._client_lock = threading.Lock()
        self.connections = 0
        self._wake = _WakePipe()
        self._writer = _Writer(self._sink, capacity, self._ready, f"chardev-unix:{path}")
        self._io = threading.Thread(target=self._serve, name=f"chardev-unix-in:{path}")
        self._io.daemon = True
        self._io.start()

    @staticmethod
    def _remove_stale_socket(path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(f"unix:{path}: exists and is not a socket")
        os.unlink(path)

    @property
    def connected(self) -> bool:
        with self._client_lock:
            return self._client is not None

    def _sink(self, data: bytes) -> None:
        with self._client_lock:
            client = self._client
        if client is None:
            return
        try:
            client.sendall(data)
        except OSError:
            self._drop(client)

    def _drop(self, client: socket.socket) -> None:
        with self._client_lock:
            if self._client is client:
                self._client = None
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)
        client.close()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake.r, selectors.EVENT_READ)
        try:
            while not self._closed:
                sel.register(self._server, selectors.EVENT_READ)
                if not self._wait(sel):
                    return
                sel.unregister(self._server)
                client, _ = self._server.accept()
                with self._client_lock:
                    self._client = client
                    self.connections += 1
                sel.register(client, selectors.EVENT_READ)
                try:
                    while self._wait(sel):
                        data = client.recv(_CHUNK)
                        if not data or not self._feed(data):
                            break
                except OSError:
                    pass
                sel.unregister(client)
                self._drop(client)
        except OSError as e:
            if not self._closed:
                logger.warning("unix:%s: stopped serving: %s", self.path, e)
        finally:
            sel.close()

    def _wait(self, sel: selectors.BaseSelector) -> bool:
        """Block until the registered socket is readable; False when closing."""
        while True:
            for key, _ in sel.select():
                return key.fd != self._wake.r

    def write(self, data: bytes) -> int:
        if not self.connected:
            return len(data)  # nobody listening: the bytes leave on an open line
        return self._writer.offer(data)

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        self._wake.wake()
        with self._client_lock:
            client = self._client
        if client is not None:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)  # unblocks a writer stuck in sendall
        self._io.join(_CLOSE_FLUSH_SECONDS)
        self._writer.close()
        self._server.close()
        self._wake.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def make_backend(spec: str) -> CharBackend:
    """Parse a serial backend spec: "stdio", "file:PATH", "unix:PATH" or "none".

    Raises ValueError with one clear line for a bad spec or a path that cannot be opened.
    """
    if not isinstance(spec, str):
        raise ValueError(f"serial backend must be a string, not {type(spec).__name__}")
    kind, sep, arg = spec.partition(":")
    if not sep and kind == "stdio":
        return StdioBackend()
    if not sep and kind == "none":
        return NullBackend()
    if sep and kind in ("file", "unix"):
        if not arg:
            raise ValueError(f"serial backend {spec!r}: {kind}: needs a path ({kind}:PATH)")
        if "\0" in arg:
            raise ValueError(f"serial backend {spec!r}: path contains a NUL byte")
        try:
            return FileBackend(arg) if kind == "file" else UnixSocketBackend(arg)
        except OSError as e:
            raise ValueError(f"serial backend {spec!r}: {e.strerror or e}") from e
    raise ValueError(
        f"unknown serial backend {spec!r}: expected stdio, file:PATH, unix:PATH or none"
    )


class _StdoutSink:
    """Debugcon output to stdout, flushed per write; closing leaves stdout open."""

    def write(self, data: bytes) -> None:
        out = sys.stdout.buffer
        out.write(data)
        out.flush()

    def close(self) -> None:
        return None


def open_debugcon(spec: str) -> ByteSink:
    """Parse `stdio` or `file:PATH` into the debugcon's output.

    Files are opened unbuffered and truncated like QEMU's file chardev: one write per guest
    byte costs far less than the VM exit that produced it, and nothing is lost if the run
    ends abruptly. Raises ValueError for an unknown spec and OSError if the file cannot be
    created.
    """
    if spec == "stdio":
        return _StdoutSink()
    if spec.startswith("file:") and len(spec) > len("file:") and "\0" not in spec:
        return open_output_binary(spec[len("file:") :])
    raise ValueError(f"debugcon backend must be 'stdio' or 'file:PATH', not {spec!r}")


def open_backends(
    serial: Sequence[str] = (), debugcon: str | None = None
) -> tuple[list[CharBackend], ByteSink | None]:
    """Open the serial backends (COM1, COM2, ... in order) and the debugcon output a pc
    machine is given; all or nothing: on an error whatever was opened is closed again.
    Raises ValueError or OSError with one clear line."""
    opened: list[CharBackend] = []
    try:
        for spec in serial:
            opened.append(make_backend(spec))
        sink = None if debugcon is None else open_debugcon(debugcon)
    except BaseException:
        close_backends(opened, None)
        raise
    return opened, sink


def close_backends(serial: Sequence[CharBackend], debugcon: ByteSink | None) -> None:
    """Close what `open_backends` opened (for when no machine took them over)."""
    for backend in serial:
        backend.close()
    if debugcon is not None:
        debugcon.close()
