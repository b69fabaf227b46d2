"""Campaigns: inputs from atheris (coverage-guided, when importable) or from a seeded byte
mutator over a corpus, each decoded and run on a fresh world; every new finding is
minimized and written as a qtest script."""

from __future__ import annotations

import os
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from southbridge.fuzz import script
from southbridge.fuzz.detect import Bounds, Finding
from southbridge.fuzz.minimize import minimize
from southbridge.fuzz.ops import Op, decode
from southbridge.fuzz.world import World, make_world

MAX_INPUT = 8192  # bytes per input: a few hundred to a thousand operations
MAX_OPS = 2048
MAX_CORPUS = 256
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF)


@dataclass
class Stats:
    inputs: int = 0
    ops: int = 0
    seconds: float = 0.0
    findings: list[tuple[Finding, Path | None]] = field(default_factory=list)

    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def summary(self, target: str) -> str:
        return (
            f"fuzz: target {target}: {self.inputs} inputs, {self.ops} operations in "
            f"{self.seconds:.1f} s ({self.rate():.0f} ops/s), {len(self.findings)} findings"
        )


@dataclass
class Campaign:
    target: str
    seed: int = 0
    runs: int | None = None  # inputs
    max_ops: int | None = None  # operations over all inputs
    seconds: float | None = None
    out: Path | None = None
    corpus: Path | None = None
    bounds: Bounds = field(default_factory=Bounds)
    memory: bool = False  # trace the Python heap (slower) for the memory-growth check
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        if self.memory and not tracemalloc.is_tracing():
            tracemalloc.start()
        self.world: World = make_world(self.target, self.bounds, self.memory)
        self._seen: set[str] = set()
        self._start = time.monotonic()

    def done(self) -> bool:
        s = self.stats
        return (
            (self.runs is not None and s.inputs >= self.runs)
            or (self.max_ops is not None and s.ops >= self.max_ops)
            or (self.seconds is not None and time.monotonic() - self._start >= self.seconds)
        )

    def one(self, data: bytes) -> Finding | None:
        """Decode and run one input; a new finding is minimized and written."""
        budget = MAX_OPS
        if self.max_ops is not None:
            budget = max(1, min(budget, self.max_ops - self.stats.ops))
        ops = decode(data, self.world.layout, budget)
        finding = self.world.run(ops)
        self.stats.inputs += 1
        self.stats.ops += len(ops) if finding is None else finding.index + 1
        self.stats.seconds = time.monotonic() - self._start
        if finding is None or finding.signature() in self._seen:
            return finding
        self._seen.add(finding.signature())
        explicit = self.world.materialize(ops[: finding.index + 1])
        small = self.shrink(explicit, finding)
        path = None
        if self.out is not None:
            path = script.write(self.out, self.world, finding, small)
        self.stats.findings.append((finding, path))
        where = f" -> {path}" if path else ""
        self.report(f"fuzz: finding {finding.kind}: {finding.detail} ({len(small)} ops){where}")
        return finding

    def shrink(self, ops: list[Op], finding: Finding) -> list[Op]:
        sig = finding.signature()

        def reproduces(cand: list[Op]) -> bool:
            f = self.world.run(cand)
            return f is not None and f.signature() == sig

        self.world.fill = False  # the fills are explicit `mem` ops now
        try:
            if not reproduces(ops):
                self.report(f"fuzz: {sig} does not reproduce from its script; kept whole")
                return ops
            return minimize(ops, reproduces)
        finally:
            self.world.fill = True

    # -- engines -------------------------------------------------------------------------
    def run_random(self) -> Stats:
        """The deterministic engine: seeded mutations of a corpus (the --corpus files, or
        random seeds), no coverage feedback; the same seed gives the same campaign."""
        rng = random.Random(self.seed)
        corpus = self._load_corpus() or [
            rng.randbytes(rng.randint(512, MAX_INPUT)) for _ in range(8)
        ]
        while not self.done():
            if rng.random() < 0.1:
                data = rng.randbytes(rng.randint(16, MAX_INPUT))
            else:
                data = mutate(rng, rng.choice(corpus), corpus)
            f = self.one(data)
            if f is None and len(corpus) < MAX_CORPUS and rng.random() < 0.05:
                corpus.append(data)
                self._save_corpus(data)
        self.world.close()
        return self.stats

    def run_atheris(self, atheris: object) -> Stats:
        """libFuzzer's loop through atheris; it never returns by itself, so the budget
        check ends the process (status 1 with findings, like the random engine's)."""

        def test_one_input(data: bytes) -> None:
            self.one(data)
            if self.done():
                self.world.close()
                self.report(self.stats.summary(self.target))
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(1 if self.stats.findings else 0)

        instrument_loaded(atheris)
        # Full-length inputs from the start: a short one is mostly the world's rebuild.
        args = [sys.argv[0], f"-seed={self.seed + 1}", f"-max_len={MAX_INPUT}", "-runs=-1"]
        args.append("-len_control=0")
        if self.corpus is not None:
            self.corpus.mkdir(parents=True, exist_ok=True)
            args.append(str(self.corpus))
        atheris.Setup(args, test_one_input)  # type: ignore[attr-defined]
        atheris.Fuzz()  # type: ignore[attr-defined]
        return self.stats  # pragma: no cover - Fuzz() exits the process

    def _load_corpus(self) -> list[bytes]:
        if self.corpus is None or not self.corpus.is_dir():
            return []
        from southbridge.host.userfile import InputFileError, read_bytes

        out = []
        for p in sorted(self.corpus.iterdir())[:MAX_CORPUS]:
            try:  # regular files only, bounded: a FIFO or a huge file is skipped
                out.append(read_bytes(p, "corpus file", MAX_INPUT, allow_empty=True))
            except (InputFileError, OSError):
                continue
        return [d for d in out if d]

    def _save_corpus(self, data: bytes) -> None:
        if self.corpus is None:
            return
        import hashlib

        self.corpus.mkdir(parents=True, exist_ok=True)
        (self.corpus / hashlib.sha256(data).hexdigest()[:16]).write_bytes(data)


def mutate(rng: random.Random, parent: bytes, corpus: list[bytes]) -> bytes:
    """A few of libFuzzer's byte mutations: flip, set interesting, insert, erase, copy a
    range within, splice with another corpus entry."""
    b = bytearray(parent) or bytearray(rng.randbytes(16))
    for _ in range(rng.randint(1, 8)):
        k = rng.randrange(6)
        i = rng.randrange(len(b))
        if k == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif k == 1:
            b[i] = rng.choice(INTERESTING_BYTES)
        elif k == 2:
            b[i:i] = rng.randbytes(rng.randint(1, 32))
        elif k == 3 and len(b) > 8:
            del b[i : i + rng.randint(1, min(32, len(b) - 1))]
        elif k == 4:
            j = rng.randrange(len(b))
            n = rng.randint(1, 64)
            b[i:i] = b[j : j + n]
        else:
            other = rng.choice(corpus)
            j = rng.randrange(len(other)) if other else 0
            b = b[:i] + bytearray(other[j:])
    return bytes(b[:MAX_INPUT])


def instrument_loaded(atheris: object) -> int:
    """Give atheris coverage feedback from southbridge's functions already imported (the
    command line imports most of the package before a command runs, so an import hook
    alone would see none of it); returns how many functions were instrumented."""
    import types

    instrument = atheris.instrument_func  # type: ignore[attr-defined]
    done = 0
    for name, mod in list(sys.modules.items()):
        if not name.startswith("southbridge.") or name.startswith("southbridge.fuzz"):
            continue
        for obj in list(vars(mod).values()):
            members = list(vars(obj).values()) if isinstance(obj, type) else [obj]
            for f in members:
                if isinstance(f, (staticmethod, classmethod)):
                    f = f.__func__
                elif isinstance(f, property):
                    f = f.fget
                if isinstance(f, types.FunctionType) and f.__module__ == name:
                    try:
                        instrument(f)
                        done += 1
                    except Exception:  # an odd function stays uninstrumented
                        continue
    return done


def load_atheris() -> object | None:
    import importlib

    try:  # by name: the type checker needs no stubs for an optional module
        return importlib.import_module("atheris")
    except ImportError:
        return None
