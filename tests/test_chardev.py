"""Character backends: spec parsing, bounded non-blocking output, input queues, real files,
pipes, terminals and Unix sockets (all on temporary paths, with timeouts on every wait)."""

from __future__ import annotations

import contextlib
import os
import socket
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from southbridge.core.clock import HostClock, ManualClock
from southbridge.devices.chardev import CharBackend, NullBackend
from southbridge.devices.uart import LSR, LSR_DR, RBR, THR
from southbridge.host import chardev
from southbridge.host.chardev import (
    BufferBackend,
    FileBackend,
    StdioBackend,
    UnixSocketBackend,
    make_backend,
)
from southbridge.machine.pc import PcMachine

WAIT = 5.0  # seconds: generous bound for host threads; tests finish far sooner


def wait_for(pred: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Wait for another thread's effect (host I/O, not device time)."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            return False
        time.sleep(0.002)
    return True


class Events:
    """Frontend callbacks as events."""

    def __init__(self, backend: CharBackend) -> None:
        self.input = threading.Event()
        self.ready = threading.Event()
        backend.attach(self.input.set, self.ready.set)


def read_exactly(sock: socket.socket, n: int) -> bytes:
    sock.settimeout(WAIT)
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def short_path(tmp_path: Path, name: str) -> str:
    """Unix socket paths are limited to 107 bytes; pytest's tmp paths can be long."""
    p = str(tmp_path / name)
    if len(p) < 100:
        return p
    import tempfile

    return os.path.join(tempfile.mkdtemp(prefix="sb"), name)


# -- make_backend --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    ["", "tcp:1234", "file:", "unix:", "stdio:x", "none:", "FILE:x", "null", "pty", "file:a\0b"],
)
def test_bad_specs_are_one_clear_value_error(spec: str) -> None:
    with pytest.raises(ValueError, match="serial backend"):
        make_backend(spec)


def test_unopenable_paths_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="No such file or directory"):
        make_backend(f"file:{tmp_path / 'missing' / 'out.txt'}")
    regular = tmp_path / "regular"
    regular.write_text("")
    with pytest.raises(ValueError, match="not a socket"):
        make_backend(f"unix:{regular}")


def test_non_string_spec() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        make_backend(42)  # type: ignore[arg-type]


def test_spec_kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(make_backend("none"), NullBackend)
    f = make_backend(f"file:{tmp_path / 'out.txt'}")
    assert isinstance(f, FileBackend) and f.path == str(tmp_path / "out.txt")
    f.close()
    path = short_path(tmp_path, "s.sock")
    u = make_backend(f"unix:{path}")
    assert isinstance(u, UnixSocketBackend) and u.path == path
    u.close()
    made: list[str] = []

    class FakeStdio(NullBackend):
        def __init__(self) -> None:
            super().__init__()
            made.append("stdio")

    monkeypatch.setattr(chardev, "StdioBackend", FakeStdio)
    assert isinstance(make_backend("stdio"), FakeStdio) and made == ["stdio"]
    # A path may contain ':' (only the first one separates the kind).
    g = make_backend(f"file:{tmp_path / 'a:b'}")
    assert isinstance(g, FileBackend) and g.path.endswith("a:b")
    g.close()


# -- in-memory backends --------------------------------------------------------------------


def test_null_backend_discards_and_has_no_input() -> None:
    b = NullBackend()
    assert b.write(b"abc") == 3 and b.read(10) == b"" and b.pending_input() == 0


def test_buffer_backend_capacity_and_callbacks() -> None:
    b = BufferBackend(capacity=3)
    ev = Events(b)
    assert b.write(b"ab") == 2 and b.write(b"cd") == 1 and b.pending == b"abc"
    b.drain(1)
    assert b.output == b"a" and ev.ready.is_set()
    ev.ready.clear()
    b.drain()
    assert not ev.ready.is_set()  # nothing was refused since the last drain
    b.feed(b"xy")
    assert ev.input.is_set() and b.read(1) == b"x" and b.pending_input() == 1


def test_attach_reports_input_already_queued() -> None:
    b = BufferBackend()
    b.feed(b"early")
    ev = Events(b)
    assert ev.input.is_set()


# -- file ----------------------------------------------------------------------------------


def test_file_backend_writes_and_truncates(tmp_path: Path) -> None:
    p = tmp_path / "serial.log"
    p.write_bytes(b"old contents")
    b = FileBackend(str(p))
    assert b.write(b"hello ") == 6 and b.write(b"world") == 5
    b.close()
    assert p.read_bytes() == b"hello world"
    assert b.write(b"late") == 4  # after close output is discarded, never an error


def test_file_backend_to_a_slow_pipe_applies_back_pressure(tmp_path: Path) -> None:
    """A sink that does not keep up (a FIFO nobody reads) fills the bounded buffer; writes
    are refused without blocking, and `on_ready` fires once the sink drains."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    b = FileBackend(str(fifo), capacity=64)
    ev = Events(b)
    accepted = bytearray()
    chunk = bytes(range(256)) * 16
    start = time.monotonic()
    while True:
        n = b.write(chunk)
        accepted += chunk[:n]
        if n < len(chunk):
            break
    assert time.monotonic() - start < WAIT  # never blocked
    got = bytearray()

    def more() -> bool:
        with contextlib.suppress(BlockingIOError):
            got.extend(os.read(rfd, 65536))
        return len(got) >= len(accepted)

    assert wait_for(more)
    assert got == accepted and ev.ready.wait(WAIT)
    b.close()
    os.close(rfd)


def test_sink_errors_lose_output_without_raising(tmp_path: Path) -> None:
    """A sink that fails (reader gone: EPIPE) never raises into the UART; output drains."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    b = FileBackend(str(fifo), capacity=64)
    os.close(rfd)
    for _ in range(20):
        assert b.write(b"x" * 8) >= 0
    assert wait_for(lambda: b._writer.buffered() == 0)
    b.close()


# -- stdio ---------------------------------------------------------------------------------


def test_stdio_backend_with_pipes() -> None:
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    b = StdioBackend(in_fd=in_r, out_fd=out_w)
    ev = Events(b)
    try:
        assert b.write(b"to the terminal") == 15
        assert os.read(out_r, 100) == b"to the terminal"
        os.write(in_w, b"typed")
        assert ev.input.wait(WAIT)
        assert wait_for(lambda: b.pending_input() == 5)
        assert b.read(100) == b"typed"
    finally:
        b.close()
        for fd in (in_r, in_w, out_r, out_w):
            os.close(fd)


def test_stdio_backend_reads_an_unpollable_regular_file_as_input(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`southbridge run < file` (or < /dev/null, as under CI): epoll refuses such fds, so
    input is read plainly until EOF, without a warning."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"from a file")
    out_r, out_w = os.pipe()
    with open(src, "rb") as f:
        b = StdioBackend(in_fd=f.fileno(), out_fd=out_w)
        ev = Events(b)
        try:
            assert ev.input.wait(WAIT)
            assert wait_for(lambda: b.pending_input() == 11)
            assert b.read(100) == b"from a file"
        finally:
            b.close()
            for fd in (out_r, out_w):
                os.close(fd)
    assert "no input" not in caplog.text


def test_stdio_backend_puts_a_terminal_in_character_mode_and_restores_it() -> None:
    """No line buffering or local echo while the guest owns the terminal; ISIG kept."""
    master, slave = os.openpty()
    out_r, out_w = os.pipe()
    before = termios.tcgetattr(slave)
    b = StdioBackend(in_fd=slave, out_fd=out_w)
    try:
        lflag = termios.tcgetattr(slave)[3]
        assert not lflag & (termios.ICANON | termios.ECHO) and lflag & termios.ISIG
        ev = Events(b)
        os.write(master, b"k")
        assert ev.input.wait(WAIT) and wait_for(lambda: b.pending_input() == 1)
    finally:
        b.close()
    assert termios.tcgetattr(slave) == before
    for fd in (master, slave, out_r, out_w):
        os.close(fd)


def test_stdio_input_waits_when_the_queue_is_full() -> None:
    """The reader thread never drops host input: it waits for the UART to take bytes."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    b = StdioBackend(in_fd=in_r, out_fd=out_w, in_capacity=4)
    try:
        data = bytes(range(50))
        os.write(in_w, data)
        got = bytearray()

        def take() -> bool:
            assert b.pending_input() <= 4
            got.extend(b.read(2))
            return len(got) == len(data)

        assert wait_for(take)
        assert got == data
    finally:
        b.close()
        for fd in (in_r, in_w, out_r, out_w):
            os.close(fd)


# -- unix socket ---------------------------------------------------------------------------


def connect(path: str) -> socket.socket:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(WAIT)
    c.connect(path)
    return c


def test_unix_socket_both_directions(tmp_path: Path) -> None:
    path = short_path(tmp_path, "com1.sock")
    b = UnixSocketBackend(path)
    ev = Events(b)
    try:
        assert b.write(b"lost: nobody listens") == 20  # discarded, like an open line
        c = connect(path)
        assert wait_for(lambda: b.connected)
        assert b.write(b"login: ") == 7
        assert read_exactly(c, 7) == b"login: "
        c.sendall(b"root\r")
        assert ev.input.wait(WAIT) and wait_for(lambda: b.pending_input() == 5)
        assert b.read(16) == b"root\r"
        c.close()
        assert wait_for(lambda: not b.connected)
    finally:
        b.close()
    assert not os.path.exists(path)


def test_unix_socket_serves_one_client_at_a_time(tmp_path: Path) -> None:
    path = short_path(tmp_path, "one.sock")
    b = UnixSocketBackend(path)
    try:
        c1 = connect(path)
        assert wait_for(lambda: b.connections == 1)
        c2 = connect(path)  # waits in the backlog
        c2.sendall(b"second")
        c1.sendall(b"first")
        assert wait_for(lambda: b.pending_input() == 5)
        assert b.read(100) == b"first" and b.connections == 1
        c1.close()
        assert wait_for(lambda: b.pending_input() == 6)
        assert b.read(100) == b"second" and b.connections == 2
        assert b.write(b"hi 2") == 4 and read_exactly(c2, 4) == b"hi 2"
        c2.close()
    finally:
        b.close()


def test_unix_socket_slow_client_back_pressure(tmp_path: Path) -> None:
    """A client that does not read: the kernel buffer fills, the writer thread blocks, the
    bounded buffer fills and writes are refused; all accepted bytes arrive once it reads."""
    path = short_path(tmp_path, "slow.sock")
    b = UnixSocketBackend(path, capacity=256)
    ev = Events(b)
    try:
        c = connect(path)
        assert wait_for(lambda: b.connected)
        accepted = bytearray()
        chunk = bytes(range(256)) * 64
        for _ in range(10_000):
            n = b.write(chunk)
            accepted += chunk[:n]
            if n < len(chunk):
                break
        else:
            pytest.fail("a client that never reads never back-pressured")
        assert read_exactly(c, len(accepted)) == accepted
        assert ev.ready.wait(WAIT)
        c.close()
    finally:
        b.close()


def test_unix_socket_path_checks(tmp_path: Path) -> None:
    path = short_path(tmp_path, "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # leaves the socket file behind, like a crashed VMM
    b = UnixSocketBackend(path)
    b.close()
    regular = tmp_path / "regular"
    regular.write_text("keep me")
    with pytest.raises(FileExistsError):
        UnixSocketBackend(str(regular))
    assert regular.read_text() == "keep me"


def test_close_unblocks_a_writer_stuck_on_a_client(tmp_path: Path) -> None:
    path = short_path(tmp_path, "stuck.sock")
    b = UnixSocketBackend(path, capacity=64)
    c = connect(path)
    assert wait_for(lambda: b.connected)
    # Fill the client's socket buffer so the writer thread blocks inside sendall.
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        b.write(b"x" * 64)
    start = time.monotonic()
    b.close()
    assert time.monotonic() - start < WAIT
    c.close()


# -- UART end to end over a socket ---------------------------------------------------------


def test_uart_over_unix_socket(tmp_path: Path) -> None:
    """Input from the socket's reader thread enters the UART under the device lock; guest
    output reaches the client after its character time on the manual clock."""
    path = short_path(tmp_path, "uart.sock")
    b = UnixSocketBackend(path)
    m = PcMachine(with_ram=False, serial=[b])
    clock, lock, uart = m.clock, m.lock, m.serial[0]
    assert isinstance(clock, ManualClock)
    uart.write(3, 1, 0x03)  # LCR: 8 data bits (after reset it is 5: 'o' would read 0x0F)
    try:
        c = connect(path)
        assert wait_for(lambda: b.connected)
        c.sendall(b"ok")
        assert wait_for(lambda: b.pending_input() == 2 and uart._rx_timer.armed)
        got = bytearray()
        with lock:
            for _ in range(2):
                clock.set(clock.now() + uart.char_ns)
                assert uart.read(LSR, 1) & LSR_DR
                got.append(uart.read(RBR, 1))
        assert got == b"ok"
        with lock:
            uart.write(THR, 1, ord("!"))
            clock.set(clock.now() + uart.char_ns)
        assert read_exactly(c, 1) == b"!"
        c.close()
    finally:
        b.close()


def test_uart_echo_on_the_host_clock(tmp_path: Path) -> None:
    """The real-time stack: HostClock timer thread and socket threads both enter under the
    device lock while a "guest" thread polls LSR and echoes what it receives."""
    path = short_path(tmp_path, "echo.sock")
    clock = HostClock()
    b = UnixSocketBackend(path)
    m = PcMachine(clock=clock, with_ram=False, serial=[b])
    lock, uart = m.lock, m.serial[0]
    stop = threading.Event()
    timers = threading.Thread(target=clock.run, args=(stop, lock), daemon=True)
    timers.start()
    with lock:
        for reg, value in ((3, 0x83), (0, 1), (1, 0), (3, 0x03), (2, 0x07)):
            uart.write(reg, 1, value)
    try:
        c = connect(path)
        assert wait_for(lambda: b.connected)
        c.sendall(b"ping")
        echoed = 0

        def echo() -> bool:
            nonlocal echoed
            with lock:
                while uart.read(LSR, 1) & LSR_DR:
                    uart.write(THR, 1, uart.read(RBR, 1))
                    echoed += 1
            return echoed == 4

        assert wait_for(echo)
        assert read_exactly(c, 4) == b"ping"
        c.close()
    finally:
        stop.set()
        clock.wake()
        timers.join(WAIT)
        b.close()
