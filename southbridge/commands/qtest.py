"""`southbridge qtest`: QEMU's qtest protocol over a CPU-less pc machine, from stdin, a
script or a unix socket."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
from typing import TYPE_CHECKING, TextIO

from southbridge.commands.common import Subparsers
from southbridge.errors import UserError

if TYPE_CHECKING:  # the machine is built only when the command runs
    from southbridge.machine.pc import PcMachine
    from southbridge.qtest.server import QtestSession


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    q = sub.add_parser("qtest", help="serve QEMU's qtest protocol over a CPU-less pc machine")
    q.add_argument("--socket", metavar="PATH", help="listen on a unix socket instead of stdio")
    q.add_argument("--trace", metavar="FILE", help="also record every access as qtest lines")
    q.add_argument("script", nargs="?", help="read commands from FILE instead of stdin")
    q.set_defaults(func=run)
    return q


def _serve_lines(session: QtestSession, infile: TextIO) -> None:
    for line in infile:
        session.handle(line)


def _machine_with_trace(trace: str | None) -> tuple[PcMachine, TextIO | None]:
    from southbridge.core.trace import QtestTracer
    from southbridge.machine.pc import PcMachine

    machine = PcMachine()
    out: TextIO | None = None
    if trace:
        try:
            out = open(trace, "w")  # noqa: SIM115 - lives as long as the session
        except OSError as e:
            raise UserError(f"cannot write trace {trace}: {e.strerror}") from None
        tracer = QtestTracer(out, machine.clock)
        machine.ports.set_tracer(tracer.port)
        machine.mmio.set_tracer(tracer.mmio)
    return machine, out


def run(args: argparse.Namespace) -> int:
    from southbridge.qtest.server import QtestSession

    machine, trace_out = _machine_with_trace(args.trace)
    try:
        if args.socket:
            _serve_socket(machine, args.socket)
            return 0

        def send(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        session = QtestSession(machine, send)
        if args.script:
            try:
                with open(args.script) as f:
                    _serve_lines(session, f)
            except OSError as e:
                raise UserError(f"cannot read {args.script}: {e.strerror}") from None
        else:
            _serve_lines(session, sys.stdin)
        return 0
    finally:
        if trace_out is not None:
            trace_out.close()


def _serve_socket(machine: PcMachine, path: str) -> None:
    """Accept one client at a time on a unix socket; each connection is a fresh session."""
    from southbridge.qtest.server import QtestSession

    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(path)
    except OSError as e:
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
        if os.path.exists(path):
            os.unlink(path)
