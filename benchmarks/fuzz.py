"""The standing fuzz campaign (issue 15, item 3): a fixed-seed run of `southbridge fuzz`'s
deterministic engine over every device target, the whole machine and the three domains,
printing operations, operations per second, the lines of southbridge/ it reached (through
`coverage`, when installed) and the findings (target: 0).

`.venv/bin/python -m benchmarks.fuzz [--ops N] [--seed S] [--no-coverage] [--out DIR]`;
the default is 10 million operations, shared equally by the targets. Coverage tracing
slows the run about threefold: the rate it prints is the rate under it (say --no-coverage
for the bare rate). Exit status 1 when there are findings.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from southbridge.fuzz.engine import Campaign, Stats

TARGETS = (
    "all",
    "pit",
    "pic",
    "rtc",
    "uart",
    "pci",
    "fw_cfg",
    "lapic",
    "ioapic",
    "piix4pm",
    "virtio",
    "i8042",
    "testdev",
    "domains",
)
DEFAULT_OPS = 10_000_000
ROOT = Path(__file__).resolve().parent.parent / "southbridge"


def campaign(ops: int, seed: int, out: Path | None, targets: tuple[str, ...]) -> list[Stats]:
    share = max(1, -(-ops // len(targets)))  # rounded up: at least `ops` in all
    results = []
    for n, target in enumerate(targets):
        c = Campaign(target, seed=seed + n, max_ops=share, out=out)
        results.append(c.run_random())
    return results


# The floors a CPU-less campaign drives (kvm/, host I/O and commands/ need a real run).
DEVICE_LAYERS = ("core", "devices", "pci", "virtio", "machine", "domains")


def _lines(cov: object, folders: tuple[str, ...] = ()) -> tuple[int, int]:
    """(statements reached, statements) over southbridge/ (or only `folders` of it)."""
    reached = total = 0
    paths = [p for f in folders for p in (ROOT / f).rglob("*.py")] if folders else None
    for path in sorted(paths if paths is not None else ROOT.rglob("*.py")):
        _, statements, _, missing, _ = cov.analysis2(str(path))  # type: ignore[attr-defined]
        total += len(statements)
        reached += len(statements) - len(missing)
    return reached, total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.fuzz", description=__doc__)
    p.add_argument("--ops", type=int, default=DEFAULT_OPS, help="operations in all")
    p.add_argument("--seed", type=int, default=15)
    p.add_argument("--no-coverage", action="store_true", help="skip line coverage")
    p.add_argument("--out", type=Path, help="write findings' scripts here")
    p.add_argument("--targets", default=",".join(TARGETS), help="comma-separated targets")
    args = p.parse_args(argv)
    targets = tuple(t for t in args.targets.split(",") if t)
    import logging

    logging.getLogger("southbridge").setLevel(logging.ERROR)  # guest oddities, by the 1000
    cov = None
    if not args.no_coverage:
        try:
            import coverage
        except ImportError:
            print("coverage is not installed: no line figures", file=sys.stderr)
        else:
            cov = coverage.Coverage(source=[str(ROOT)], data_file=None)
            cov.start()
    start = time.monotonic()
    results = campaign(args.ops, args.seed, args.out, targets)
    seconds = time.monotonic() - start
    if cov is not None:
        cov.stop()
    total_ops = sum(s.ops for s in results)
    findings = sum(len(s.findings) for s in results)
    print(f"{'target':<10} {'inputs':>8} {'ops':>10} {'ops/s':>8} {'findings':>8}")
    for target, s in zip(targets, results, strict=True):
        print(f"{target:<10} {s.inputs:>8} {s.ops:>10} {s.rate():>8.0f} {len(s.findings):>8}")
    print(f"operations: {total_ops} in {seconds:.1f} s ({total_ops / seconds:.0f} ops/s)")
    if cov is not None:
        reached, total = _lines(cov)
        pct = 100 * reached / total
        print(f"coverage: {reached} of {total} lines of southbridge/ ({pct:.1f}%)")
        reached, total = _lines(cov, DEVICE_LAYERS)
        pct = 100 * reached / total
        print(f"  of which {'/, '.join(DEVICE_LAYERS)}/: {reached} of {total} ({pct:.1f}%)")
    print(f"findings: {findings}")
    for s in results:
        for f, path in s.findings:
            print(f"  {f.kind}: {f.detail} ({path or 'not written'})")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
