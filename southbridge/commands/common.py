"""What the command modules share: the subparsers type and checks of common options."""

from __future__ import annotations

import argparse
from typing import NoReturn, TypeAlias

from southbridge.errors import UserError

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class Parser(argparse.ArgumentParser):
    """argparse with the project's rule for bad input: one line and exit status 2 (argparse
    prints the whole usage block first). Subparsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(message.split())
        self.exit(2, f"southbridge: error: {line} (see {self.prog} --help)\n")


# A year: anything longer is a typo or "never", which is what leaving --timeout out means.
MAX_TIMEOUT_S = 365 * 24 * 3600


def check_timeout(timeout: float | None) -> None:
    """`--timeout SECONDS`: None (no limit) or a positive, finite number of seconds up to
    MAX_TIMEOUT_S (`inf` and 1e308 are refused, not taken as "never")."""
    if timeout is None:
        return
    if not 0 < timeout <= MAX_TIMEOUT_S:  # also false for nan
        raise UserError(
            f"--timeout {timeout:g}: must be a positive number of seconds, "
            f"at most {MAX_TIMEOUT_S} (leave it out for no limit)"
        )
