"""What the command modules share: the subparsers type and checks of common options."""

from __future__ import annotations

import argparse
from typing import TypeAlias

from southbridge.errors import UserError

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def check_timeout(timeout: float | None) -> None:
    """`--timeout SECONDS`: None (no limit) or a positive number of seconds."""
    if timeout is not None and not timeout > 0:
        raise UserError(f"--timeout {timeout:g}: must be a positive number of seconds")
