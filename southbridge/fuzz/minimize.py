"""Shrink a finding's operations while it still reproduces (delta debugging over ops)."""

from __future__ import annotations

from collections.abc import Callable

from southbridge.fuzz.ops import Op

# Replays a minimization may spend; each replays the input from power-on.
MAX_TRIES = 2000


def minimize(
    ops: list[Op], reproduces: Callable[[list[Op]], bool], max_tries: int = MAX_TRIES
) -> list[Op]:
    """The shortest subsequence found (dropping ever smaller chunks, then single ops) for
    which `reproduces` holds; `ops` itself must reproduce."""
    cur = list(ops)
    tries = 0
    chunk = max(1, len(cur) // 2)
    while chunk >= 1 and tries < max_tries:
        i = 0
        shrunk = False
        while i < len(cur) and tries < max_tries:
            cand = cur[:i] + cur[i + chunk :]
            tries += 1
            if cand != cur and reproduces(cand):
                cur = cand
                shrunk = True
            else:
                i += chunk
        if chunk == 1 and not shrunk:
            break
        chunk = chunk // 2 if chunk > 1 else 1
    return cur
