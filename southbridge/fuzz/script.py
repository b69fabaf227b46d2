"""Findings as qtest scripts: a header of `#` comments (kind, target, how to replay), the
firmware prelude, then the minimized operations, one qtest line each. `southbridge qtest
FILE` replays the accesses on its pc machine (comments are skipped); `southbridge fuzz
--replay FILE` replays them on the fuzzed world, with every check, and says what it finds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from southbridge.fuzz.detect import Finding
from southbridge.fuzz.ops import Op, from_line, to_line
from southbridge.fuzz.world import World

TARGET_PREFIX = "# target:"


def render(world: World, finding: Finding | None, ops: list[Op]) -> str:
    names = world.layout.domains or None
    head = [
        f"# southbridge fuzz finding: {finding.kind}: {finding.detail}" if finding else "#",
        f"{TARGET_PREFIX} {world.target}",
        "# replay: southbridge fuzz --replay THIS (checks) | southbridge qtest THIS (accesses)",
    ]
    body = [to_line(op, names) for op in [*world.prelude, *ops]]
    return "\n".join([*head, *body]) + "\n"


def write(out: Path, world: World, finding: Finding, ops: list[Op]) -> Path:
    text = render(world, finding, ops)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{finding.kind}-{digest}.qtest"
    path.write_text(text)
    return path


def target_of(text: str) -> str:
    """The target a script was found on ('all' when it does not say)."""
    for line in text.splitlines():
        if line.startswith(TARGET_PREFIX):
            return line[len(TARGET_PREFIX) :].strip() or "all"
    return "all"


def parse(text: str, world: World) -> list[Op]:
    """Every operation of a script, prelude included (raises ScriptError)."""
    names = world.layout.domains or None
    ops = [from_line(line, names) for line in text.splitlines()]
    return [op for op in ops if op is not None]


def replay(text: str, world: World) -> Finding | None:
    """Run a script (which carries its own prelude) from power-on with every check."""
    ops = parse(text, world)
    prelude, world.prelude = world.prelude, []
    fill, world.fill = world.fill, False  # a script carries its DMA fills as writes
    try:
        return world.run(ops)
    finally:
        world.prelude, world.fill = prelude, fill
