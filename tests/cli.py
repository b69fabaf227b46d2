"""Running `southbridge` as a user does, for the command-line tests: a `python -m southbridge`
subprocess with a timeout (a hang fails the test instead of stalling it), and the
project's rule for bad input checked in one place."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Long enough for a loaded CI machine to start Python; a blocked open() waits forever.
TIMEOUT_S = 30


def env() -> dict[str, str]:
    """The environment for a subprocess that imports this checkout's package."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [e.get("PYTHONPATH")])])
    return e


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "southbridge", *args]


def run(
    *args: str, stdin: bytes = b"", timeout: float = TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(command(*args), input=stdin, capture_output=True, timeout=timeout, env=env())
    return subprocess.CompletedProcess(
        r.args, r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    )


def error_line(stderr: str) -> str:
    """The one line a bad input may print (HELPERS.md: one clear error line, no traceback),
    without its "southbridge: error: " prefix; fails the calling test otherwise."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert lines[0].startswith("southbridge: error: "), stderr
    return lines[0].removeprefix("southbridge: error: ")


def refused(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Assert `result` is a refusal: non-zero status, one error line containing each of
    `expected`; returns the line."""
    line = error_line(result.stderr)
    assert result.returncode != 0, result
    for text in expected:
        assert text in line, line
    return line


def refused_in_process(argv: Sequence[str], stderr: str, rc: int, *expected: str) -> str:
    """`refused` for an in-process `main(argv)` call and its captured stderr."""
    line = error_line(stderr)
    assert rc == 2, (argv, stderr)
    for text in expected:
        assert text in line, line
    return line
