"""The command-line audit of issue 15, kept as a test: every command's every file or socket
argument given a missing path, a directory, an empty file, a FIFO, random bytes and a
file of the wrong kind, plus options of the wrong type. Each run is a real `python -m
southbridge` with a timeout; each must end with one error line naming the argument and a
non-zero status (or, where the input is legal, status 0), never a traceback, a hang or a
changed input file (HELPERS.md, "Bad user input").

`run` gets a KVM device that does not exist, so that an input that is fine ends with that
one line instead of a guest run: the audit checks inputs, not guests.

The cases run concurrently from one module fixture (a few seconds in all); each is then
reported by its own parametrized test.
"""

from __future__ import annotations

import os
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from southbridge.kvm import guestbuild
from southbridge.machine.pc import PcMachine
from southbridge.pci.lspci import dump
from tests import cli

NO_KVM = "/nonexistent/kvm"
RUN = ["run", "--serial", "none", "--kvm-device", NO_KVM, "--timeout", "5"]
FUZZ1 = ["fuzz", "--engine", "random", "--runs", "1"]
WRONG_TOML = '[[domain]]\nname = "u"\nmemory = "lots"\npermissive = { "02:00.0" = true }\n'

# What a case must end with: "path" = one error line naming the argument's path, "kvm" =
# the input was fine and the run stopped at the missing KVM device, "ok" = status 0.
Expect = str


@dataclass(frozen=True)
class Slot:
    """One argument that takes a file: its argv with {x} for the path, and per input kind
    what it must end with (kinds it cannot take are left out)."""

    name: str
    argv: tuple[str, ...]
    expect: dict[str, Expect]


ALL_PATH = dict.fromkeys(("missing", "directory", "empty", "fifo", "random", "wrong"), "path")
INPUTS = [
    Slot("run --bios", (*RUN, "--bios", "{x}"), {**ALL_PATH, "random": "kvm", "wrong": "kvm"}),
    Slot("run --kernel", (*RUN, "--kernel", "{x}"), ALL_PATH),
    Slot(
        "run --initrd",
        (*RUN, "--kernel", "{kernel}", "--initrd", "{x}"),
        # An empty module is valid Multiboot (mod_start == mod_end).
        {**ALL_PATH, "empty": "kvm", "random": "kvm", "wrong": "kvm"},
    ),
    Slot("run --config", (*RUN, "--config", "{x}"), ALL_PATH),
    # Any bytes make a raw disk image, an empty one included.
    Slot(
        "run --drive",
        (*RUN, "--drive", "file={x},format=raw"),
        {**ALL_PATH, "empty": "kvm", "random": "kvm", "wrong": "kvm"},
    ),
    # An IDE disk needs a whole sector and a CD-ROM a 2048-byte one (WRONG_TOML is shorter).
    Slot(
        "run --drive if=ide",
        (*RUN, "--drive", "file={x},if=ide"),
        {**ALL_PATH, "random": "kvm"},
    ),
    Slot("run --cdrom", (*RUN, "--cdrom", "{x}"), {**ALL_PATH, "random": "kvm"}),
    Slot(
        "host --config",
        ("host", "--lspci-dump", "{dump}", "--config", "{x}"),
        {**ALL_PATH, "empty": "ok"},
    ),
    Slot("host --lspci-dump", ("host", "--lspci-dump", "{x}"), ALL_PATH),
    Slot("host --sysfs", ("host", "--sysfs", "{x}"), ALL_PATH),
    Slot("qtest SCRIPT", ("qtest", "{x}"), {**ALL_PATH, "empty": "ok", "wrong": "ok"}),
    # A missing path is where the server listens: not an error (and it would serve forever).
    Slot(
        "qtest --socket",
        ("qtest", "--socket", "{x}"),
        {k: "path" for k in ALL_PATH if k != "missing"},
    ),
    Slot("fuzz --replay", ("fuzz", "--replay", "{x}"), {**ALL_PATH, "empty": "ok"}),
]
OUTPUT_KINDS = {"missing": "path", "directory": "path", "fifo": "path"}
OUTPUTS = [
    Slot("qtest --trace", ("qtest", "--trace", "{x}", "{empty_script}"), OUTPUT_KINDS),
    Slot("run --trace", (*RUN, "--trace", "{x}"), OUTPUT_KINDS),
    Slot("lspci --dump", ("lspci", "--dump", "{x}"), OUTPUT_KINDS),
    Slot("run --serial file:", (*RUN, "--serial", "file:{x}"), OUTPUT_KINDS),
    Slot("run --debugcon file:", (*RUN, "--debugcon", "file:{x}"), OUTPUT_KINDS),
    # Directories, made when missing: only something else in the way is refused.
    Slot(
        "fuzz --out", (*FUZZ1, "--out", "{x}"), {"missing": "ok", "directory": "ok", "fifo": "path"}
    ),
    Slot(
        "fuzz --corpus",
        (*FUZZ1, "--corpus", "{x}"),
        {"missing": "ok", "directory": "ok", "fifo": "path"},
    ),
]
# Options of the wrong type or out of range: (argv, a word the one line must contain).
OPTIONS = [
    ((*RUN, "-m", "lots"), "-m"),
    ((*RUN, "-m", "0"), "-m"),
    ((*RUN, "-m", "99999999999999999999"), "-m"),
    ((*RUN, "--smp", "0"), "--smp"),
    ((*RUN, "--smp", "two"), "--smp"),
    ((*RUN, "--timeout=inf"), "--timeout"),
    ((*RUN, "--timeout=1e308"), "--timeout"),
    ((*RUN, "--timeout=nan"), "--timeout"),
    ((*RUN, "--serial", "tcp:1234"), "serial"),
    ((*RUN, "--debugcon", "pipe"), "debugcon"),
    ((*RUN, "--hide", "not-an-address"), "not-an-address"),
    ((*RUN, "--append", "x"), "--kernel"),
    (("host", "--hide", "zz:zz.z", "--lspci-dump", "{dump}"), "zz:zz.z"),
    (("lspci", "--bogus"), "--bogus"),
    (("qtest", "one", "two"), "two"),
    (("nosuch",), "nosuch"),
    (("fuzz", "--runs", "0"), "--runs"),
    (("fuzz", "--ops", "many"), "--ops"),
    (("fuzz", "--time", "inf"), "--time"),
    (("fuzz", "--seed", "-1"), "--seed"),
    (("fuzz", "--target", "nope"), "nope"),
    (("fuzz", "--engine", "afl"), "--engine"),
]


def _make(kind: str, path: Path, wrong: bytes) -> None:
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "random":
        # Fixed seed: the same bytes every run (and, at 4 KiB, certainly not UTF-8).
        path.write_bytes(random.Random(15).randbytes(4096))
    elif kind == "wrong":
        path.write_bytes(wrong)
    else:
        assert kind == "missing"


@dataclass
class Case:
    id: str
    argv: list[str]
    expect: Expect
    path: str
    result: subprocess.CompletedProcess[str] | None = None


def _cases(tmp: Path) -> list[Case]:
    good_dump = tmp / "good-dump.txt"
    good_dump.write_text(dump(PcMachine(with_ram=False).pci_bus, 3))
    empty_script = tmp / "empty.qtest"
    empty_script.write_text("")
    fill = {
        "kernel": str(guestbuild.build("mb_info")),
        "dump": str(good_dump),
        "empty_script": str(empty_script),
    }
    cases: list[Case] = []
    for group, slots in (("in", INPUTS), ("out", OUTPUTS)):
        for slot in slots:
            for kind, expect in slot.expect.items():
                d = tmp / f"{group}-{len(cases)}"
                d.mkdir()
                path = d / ("missing-dir/x" if group == "out" and kind == "missing" else "x")
                _make(kind, path, WRONG_TOML.encode())
                argv = [a.format(x=path, **fill) for a in slot.argv]
                cases.append(Case(f"{slot.name} {kind}", argv, expect, str(path)))
    for options, word in OPTIONS:
        filled = [a.format(**fill) for a in options]
        cases.append(Case(_option_id(options), filled, "path", word))
    return cases


def _option_id(options: tuple[str, ...]) -> str:
    if options[: len(RUN)] == tuple(RUN):
        return " ".join(["run", *options[len(RUN) :]])
    return " ".join(options)


def _snapshot(tmp: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in tmp.rglob("*") if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    tmp = tmp_path_factory.mktemp("audit")
    cases = _cases(tmp)
    before = _snapshot(tmp)

    def run(case: Case) -> None:
        try:
            case.result = cli.run(*case.argv)
        except subprocess.TimeoutExpired:
            case.result = None  # reported by the case's test as a hang

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(run, cases))
    after = _snapshot(tmp)
    changed = [p for p, data in before.items() if after.get(p) != data]
    assert changed == [], f"input files changed or lost: {changed}"
    by_id = {c.id: c for c in cases}
    assert len(by_id) == len(cases)
    return by_id


def _ids() -> list[str]:
    ids = [f"{s.name} {k}" for s in [*INPUTS, *OUTPUTS] for k in s.expect]
    return ids + [_option_id(options) for options, _ in OPTIONS]


@pytest.mark.parametrize("case_id", _ids())
def test_audit_case(audit: dict[str, Case], case_id: str) -> None:
    case = audit[case_id]
    r = case.result
    assert r is not None, f"{case.argv}: still running after {cli.TIMEOUT_S} s (blocked?)"
    if case.expect == "ok":
        assert r.returncode == 0 and "Traceback" not in r.stderr, r
        return
    line = cli.refused(r)
    if case.expect == "kvm":
        assert NO_KVM in line, line
    else:
        assert case.path in line, line
        assert NO_KVM not in line, line
