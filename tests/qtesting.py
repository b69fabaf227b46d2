"""Driving a machine through the qtest protocol in-process, as the device tests do: one
place for the `ask` helper that many test files used to define for themselves."""

from __future__ import annotations

from southbridge.machine.base import Machine
from southbridge.machine.pc import PcMachine
from southbridge.qtest.server import QtestSession


def ask(session: QtestSession, out: list[str], line: str) -> str:
    """Send one qtest line; returns everything it produced (IRQ events, then its answer)
    as one string. `out` is the list the session sends into."""
    out.clear()
    session.handle(line)
    return "".join(out)


class Qtest:
    """A qtest session over `machine` (a fresh pc machine by default), replies collected."""

    def __init__(self, machine: Machine | None = None) -> None:
        self.machine = machine if machine is not None else PcMachine()
        self.out: list[str] = []
        self.session = QtestSession(self.machine, self.out.append)

    def ask(self, line: str) -> str:
        """Everything the line produced, as `ask` returns it."""
        return ask(self.session, self.out, line)
