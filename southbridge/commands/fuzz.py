"""`southbridge fuzz`: a coverage-guided fuzzer (atheris when importable, else a seeded
mutator) over the CPU-less pc machine or the hypervisor's domains; each finding becomes a
minimal qtest script. `--replay SCRIPT...` runs scripts with every check instead.

Exit status: 0 without findings, 1 with findings, 2 for bad options."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path

from southbridge.commands.common import Subparsers
from southbridge.errors import UserError

ENGINES = ("auto", "atheris", "random")
# A script (one finding's) is short; a bound keeps a wrong file from being read whole.
MAX_SCRIPT_BYTES = 16 << 20
MAX_COUNT = 1 << 40  # runs/ops beyond this are typos, not campaigns
MAX_SECONDS = 365 * 24 * 3600


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    f = sub.add_parser("fuzz", help="fuzz the CPU-less machine's devices or the domains")
    f.add_argument("--target", default="all", help="a device, 'all' or 'domains' (--list)")
    f.add_argument("--list", action="store_true", help="list the targets and exit")
    f.add_argument("--seed", default="0", help="campaign seed (default 0)")
    f.add_argument("--runs", metavar="N", help="stop after N inputs")
    f.add_argument("--ops", metavar="N", help="stop after N operations")
    f.add_argument("--time", metavar="S", help="stop after S seconds")
    f.add_argument("--out", metavar="DIR", help="write each finding's qtest script here")
    f.add_argument("--corpus", metavar="DIR", help="inputs to start from; new ones go here")
    f.add_argument(
        "--engine", default="auto", help="auto (atheris if installed) | atheris | random"
    )
    f.add_argument("--tracemalloc", action="store_true", help="also check heap growth (slower)")
    f.add_argument("--replay", metavar="SCRIPT", nargs="+", help="replay scripts with all checks")
    f.set_defaults(func=run)
    return f


def _count(option: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        n = int(text, 0)
    except ValueError:
        raise UserError(f"{option} {text[:40]!r}: not a whole number") from None
    if not 0 < n <= MAX_COUNT:
        raise UserError(f"{option} {n}: must be between 1 and {MAX_COUNT}")
    return n


def _seed(text: str) -> int:
    try:
        n = int(text, 0)
    except ValueError:
        raise UserError(f"--seed {text[:40]!r}: not a whole number") from None
    if not 0 <= n < 1 << 64:
        raise UserError(f"--seed {n}: must be between 0 and 2**64-1")
    return n


def _seconds(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        s = float(text)
    except ValueError:
        raise UserError(f"--time {text[:40]!r}: not a number of seconds") from None
    if not (math.isfinite(s) and 0 < s <= MAX_SECONDS):
        raise UserError(f"--time {text[:40]}: must be a positive number of seconds")
    return s


def _directory(option: str, text: str | None) -> Path | None:
    if text is None:
        return None
    p = Path(text)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{option} {text}: exists and is not a directory") from None
    except OSError as e:
        raise UserError(f"{option} {text}: {e.strerror}") from None
    if not p.is_dir():
        raise UserError(f"{option} {text}: not a directory")
    if not os.access(p, os.W_OK | os.X_OK):
        raise UserError(f"{option} {text}: not writable")
    return p


def run(args: argparse.Namespace) -> int:
    log = logging.getLogger("southbridge")
    level = log.level
    if not getattr(args, "verbose", 0):
        # Guest oddities are logged per fresh machine: thousands of lines a second here.
        # Tracebacks (ERROR) still reach the findings' log catcher and the terminal.
        log.setLevel(logging.ERROR)
    try:
        return _run(args)
    finally:
        log.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    if args.engine not in ENGINES:
        raise UserError(f"--engine {args.engine[:40]!r}: one of {', '.join(ENGINES)}")
    seed = _seed(args.seed)
    runs, ops, seconds = _count("--runs", args.runs), _count("--ops", args.ops), _seconds(args.time)
    campaign = not (args.list or args.replay)
    atheris = None
    if campaign and args.engine != "random":
        from southbridge.fuzz.engine import load_atheris

        atheris = load_atheris()
        if atheris is None and args.engine == "atheris":
            raise UserError("--engine atheris: atheris is not installed (pip install atheris)")
    from southbridge.fuzz import engine, world

    probe = world.build_pc()
    try:
        names = world.target_names(probe)
    finally:
        probe.close()
    if args.list:
        print("\n".join(names))
        return 0
    if args.target not in names:
        raise UserError(f"--target {args.target[:40]!r}: not a target here (see --list)")
    if args.replay:
        return _replay(args.replay, args.target, names)
    out, corpus = _directory("--out", args.out), _directory("--corpus", args.corpus)
    if runs is None and ops is None and seconds is None:
        runs = 1000  # a bounded default: a campaign is asked for, never implied
    c = engine.Campaign(args.target, seed, runs, ops, seconds, out, corpus, memory=args.tracemalloc)
    stats = c.run_atheris(atheris) if atheris is not None else c.run_random()
    print(stats.summary(args.target))
    return 1 if stats.findings else 0


def _replay(paths: list[str], target: str, names: list[str]) -> int:
    from southbridge.fuzz import script
    from southbridge.fuzz.ops import ScriptError
    from southbridge.fuzz.world import make_world
    from southbridge.host.userfile import InputFileError, read_text

    found = 0
    for path in paths:
        try:
            text = read_text(path, "fuzz script", MAX_SCRIPT_BYTES, allow_empty=True)
        except InputFileError as e:
            raise UserError(f"cannot read {path}: {e.reason}") from None
        name = script.target_of(text) if target == "all" else target
        if name not in names:
            raise UserError(f"{path}: target {name[:40]!r} is not a target here")
        w = make_world(name)
        try:
            finding = script.replay(text, w)
        except ScriptError as e:
            raise UserError(f"{path}: {e}") from None
        finally:
            w.close()
        if finding is None:
            print(f"{path}: no finding")
        else:
            found += 1
            print(f"{path}: finding {finding.kind}: {finding.detail}", file=sys.stdout)
    return 1 if found else 0
