"""`southbridge demo`: replay the bundled sample qtest trace, each command with its answer."""

from __future__ import annotations

import argparse
from importlib import resources

from southbridge.commands.common import Subparsers


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    d = sub.add_parser("demo", help="replay the bundled sample trace and show the answers")
    d.set_defaults(func=run)
    return d


def run(args: argparse.Namespace) -> int:
    from southbridge.machine.pc import PcMachine
    from southbridge.qtest.server import QtestSession

    text = resources.files("southbridge").joinpath("data/sample.qtest").read_text()
    machine = PcMachine()

    answers: list[str] = []
    session = QtestSession(machine, answers.append)
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            if line.startswith("# "):
                print(line)
            continue
        answers.clear()
        session.handle(line)
        print(f"  {line:<40} -> {' | '.join(a.strip() for a in answers)}")
    return 0
