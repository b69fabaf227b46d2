"""`--no-acpi`, `--no-hpet` and `--machine pc,hpet=off,acpi=off` (issue 10 item 7): QEMU's
spellings (`-no-acpi`, `-machine hpet=off`) select the pc's platform parts for `run` and
`qtest`; bad values are one error line."""

from __future__ import annotations

import argparse

import pytest

from southbridge.commands import machine_opts
from southbridge.errors import UserError
from tests import cli


def parse(*argv: str) -> dict[str, bool]:
    p = argparse.ArgumentParser()
    p.add_argument("-m", "--memory", type=int, default=128)
    machine_opts.add_options(p)
    return machine_opts.switches(p.parse_args(argv))


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        ((), {"acpi": True, "hpet": True}),
        (("--no-hpet",), {"acpi": True, "hpet": False}),
        (("-no-hpet",), {"acpi": True, "hpet": False}),
        (("--no-acpi",), {"acpi": False, "hpet": True}),
        (("-no-acpi", "-m", "64"), {"acpi": False, "hpet": True}),
        (("-machine", "pc,hpet=off"), {"acpi": True, "hpet": False}),
        (("--machine", "hpet=off,acpi=off"), {"acpi": False, "hpet": False}),
        (("--machine", "type=pc,acpi=no"), {"acpi": False, "hpet": True}),
        (("--machine", "hpet=on", "--no-hpet"), {"acpi": True, "hpet": False}),
    ],
)
def test_switches(argv: tuple[str, ...], want: dict[str, bool]) -> None:
    assert parse(*argv) == want


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("q35", "unknown machine type 'q35'"),
        ("pc,hpet=maybe", "must be on or off"),
        ("pc,smm=off", "unknown property 'smm'"),
        ("pc,hpet", "is not KEY=VALUE"),
    ],
)
def test_bad_machine_options_are_refused(spec: str, text: str) -> None:
    with pytest.raises(UserError, match=text):
        parse("--machine", spec)


def test_qtest_without_the_hpet_leaves_its_window_unassigned() -> None:
    script = b"readl 0xfed00000\n"
    on = cli.run("qtest", stdin=script)
    off = cli.run("qtest", "-machine", "pc,hpet=off", stdin=script)
    assert on.stdout == "OK 0x000000008086a201\n", on
    assert off.stdout == "OK 0x00000000ffffffff\n", off
    cli.refused(cli.run("qtest", "--machine", "pc,hpet=2", stdin=script), "hpet='2'")


def test_run_takes_the_switches() -> None:
    """With them the input is fine: the run stops at the missing KVM device, not at them."""
    r = cli.run(
        "run",
        "--serial",
        "none",
        "--kvm-device",
        "/nonexistent/kvm",
        "-no-acpi",
        "--no-hpet",
        "-machine",
        "pc",
        "-m",
        "64",
    )
    cli.refused(r, "/nonexistent/kvm")
    cli.refused(cli.run("run", "--machine", "isapc"), "unknown machine type 'isapc'")
