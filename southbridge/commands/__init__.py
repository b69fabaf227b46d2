"""The `southbridge` command line: one module per command, each with `add_parser(sub)`
(its options, `func` set to its entry point) and the body it runs.

A new command is a new module listed in `COMMANDS`; a new option of an existing command goes
into that command's module. Command modules import the layers below lazily, inside the
function that runs, so `southbridge --help` and every command start fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from southbridge import __version__
from southbridge.commands import demo, fuzz, host, lspci, qtest, run
from southbridge.commands.common import Parser
from southbridge.errors import UserError

# In the order `southbridge --help` lists them.
COMMANDS = (qtest, host, lspci, run, demo, fuzz)

DESCRIPTION = "The `southbridge` command line."


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="southbridge", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"southbridge {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="southbridge: %(levelname)s: %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except UserError as e:
        print(f"southbridge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
