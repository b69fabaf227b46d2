"""`southbridge qtest`: QEMU's qtest protocol over a CPU-less pc machine, from stdin, a
script or a unix socket."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import stat
import sys
from typing import TYPE_CHECKING, TextIO

from southbridge.commands import machine_opts
from southbridge.commands.common import Subparsers
from southbridge.errors import UserError

if TYPE_CHECKING:  # the machine is built only when the command runs
    from southbridge.machine.pc import PcMachine
    from southbridge.qtest.server import QtestSession

# A script is read whole (and checked) before the first command runs; traces of a long
# session stay far below this.
MAX_SCRIPT_BYTES = 64 << 20


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    q = sub.add_parser("qtest", help="serve QEMU's qtest protocol over a CPU-less pc machine")
    q.add_argument("--socket", metavar="PATH", help="listen on a unix socket instead of stdio")
    q.add_argument("--trace", metavar="FILE", help="also record every access as qtest lines")
    q.add_argument("script", nargs="?", help="read commands from FILE instead of stdin")
    machine_opts.add_options(q)
    q.set_defaults(func=run)
    return q


def _serve_lines(session: QtestSession, infile: TextIO) -> None:
    from southbridge.qtest.server import serve_stream

    serve_stream(session, infile)  # a line without a newline is read with a bound


def _machine_with_trace(
    trace: str | None, switches: dict[str, bool] | None = None
) -> tuple[PcMachine, TextIO | None]:
    from southbridge.core.trace import QtestTracer
    from southbridge.host.userfile import open_output_text
    from southbridge.machine.pc import PcConfig, PcMachine

    sw = switches or {}
    machine = PcMachine(PcConfig(acpi=sw.get("acpi", True), hpet=sw.get("hpet", True)))
    out: TextIO | None = None
    if trace:
        try:
            out = open_output_text(trace)  # lives as long as the session
        except OSError as e:
            raise UserError(f"cannot write trace {trace}: {e.strerror}") from None
        tracer = QtestTracer(out, machine.clock)
        machine.ports.set_tracer(tracer.port)
        machine.mmio.set_tracer(tracer.mmio)
    return machine, out


def run(args: argparse.Namespace) -> int:
    from southbridge.qtest.server import QtestSession

    # Read (and refuse) the script before anything is built or a trace file truncated.
    switches = machine_opts.switches(args)
    script = _read_script(args.script) if args.script else None
    machine, trace_out = _machine_with_trace(args.trace, switches)
    try:
        if args.socket:
            _serve_socket(machine, args.socket)
            return 0

        def send(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        session = QtestSession(machine, send)
        if script is not None:
            for line in script.splitlines(keepends=True):
                # A script may carry `#` comments (the fuzzer's findings do): not sent.
                if not line.lstrip().startswith("#"):
                    session.handle(line)
        else:
            # A stream, not a file: an undecodable line is answered FAIL like any unknown
            # command (as on the socket).
            stream = _stdin_text()
            try:
                _serve_lines(session, stream)
            finally:
                if stream is not sys.stdin and isinstance(stream, io.TextIOWrapper):
                    stream.detach()  # leave sys.stdin's own buffer open
        return 0
    finally:
        if trace_out is not None:
            trace_out.close()


def _stdin_text() -> TextIO:
    """stdin as text where a bad byte is U+FFFD (a replaced stdin without bytes is used as
    it is: it holds text already)."""
    raw = getattr(sys.stdin, "buffer", None)
    if raw is None:
        return sys.stdin
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace")


def _read_script(path: str) -> str:
    from southbridge.host.userfile import InputFileError, read_text

    try:
        return read_text(path, "qtest script", MAX_SCRIPT_BYTES, allow_empty=True)
    except InputFileError as e:
        raise UserError(f"cannot read {path}: {e.reason}") from None


def _claim_socket_path(path: str) -> None:
    """Make room for our socket at `path`: nothing there, or a stale socket (one nobody
    listens on), which is removed. Anything else (a file, a directory, a live socket) is
    refused: never delete what is not a dead socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise UserError(f"--socket {path!r}: {e.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise UserError(f"--socket {path!r} exists and is not a socket: not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)  # a live server with a full backlog must not block us
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # nobody listens: a socket left by a run that ended
        return
    except BlockingIOError:
        pass
    except OSError as e:
        raise UserError(f"--socket {path!r}: {e.strerror}") from None
    finally:
        probe.close()
    raise UserError(f"--socket {path!r} is in use by a running server")


def _serve_socket(machine: PcMachine, path: str) -> None:
    """Accept one client at a time on a unix socket; each connection is a fresh session."""
    from southbridge.qtest.server import QtestSession

    _claim_socket_path(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(path)
        ours = os.lstat(path)
    except OSError as e:
        srv.close()
        raise UserError(f"cannot listen on {path}: {e.strerror}") from None
    srv.listen(1)
    try:
        while True:
            conn, _ = srv.accept()
            with conn, conn.makefile("r", encoding="utf-8", errors="replace") as rf:

                def send(text: str, conn: socket.socket = conn) -> None:
                    conn.sendall(text.encode())

                session = QtestSession(machine, send)
                with contextlib.suppress(OSError):
                    _serve_lines(session, rf)
    finally:
        srv.close()
        # Remove the socket only if it is still the one we bound (not a file put there since).
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino):
                os.unlink(path)
