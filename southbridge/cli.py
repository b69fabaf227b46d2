"""The `southbridge` entry point (pyproject's console script); the commands live in
`southbridge.commands`."""

from southbridge.commands import build_parser, main
from southbridge.errors import UserError

__all__ = ["UserError", "build_parser", "main"]
