"""Hypervisor configuration files and the hidden-device ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from southbridge.domains.assignment import AssignmentError, Assignments
from southbridge.domains.config import ConfigError, load_config, parse_config
from southbridge.host.fakesysfs import FakeBar, FakeDevice, build_fake_sysfs
from southbridge.host.inventory import HostInventory, probe_sysfs
from southbridge.host.pciaddr import PciAddress

A = PciAddress.parse


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "hv.toml"
    p.write_text(text)
    return p


def test_full_config_parses(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            """
hide = "(02:01.0)(0000:03:00.1)"
sysfs = "/tmp/fake"
host_ports = "fake"

[[domain]]
name = "dom0"
privileged = true

[[domain]]
name = "user1"
memory = 128
assign = ["03:00.1"]
permissive = { "03:00.1" = [[0x40, 4]] }

[[domain]]
name = "user2"
""",
        )
    )
    assert cfg.hide == [A("02:01.0"), A("03:00.1")]
    assert cfg.sysfs == "/tmp/fake" and cfg.host_ports == "fake"
    assert [d.name for d in cfg.domains] == ["dom0", "user1", "user2"]
    assert cfg.domains[0].privileged and cfg.domains[1].memory_mb == 128
    assert cfg.domains[1].assign == [A("03:00.1")]
    assert cfg.domains[1].permissive == {A("03:00.1"): [(0x40, 4)]}


@pytest.mark.parametrize(
    "text,msg",
    [
        ('hide = "(02:01.0"', "hide:"),
        ("bogus = 1", "unknown key 'bogus'"),
        ('[[domain]]\nname = "a"\n[[domain]]\nname = "a"', "used twice"),
        ('[[domain]]\nmemory = "lots"', "expected megabytes"),
        ("[[domain]]\nmemory = 1", "outside 2-3584"),
        (
            "[[domain]]\nprivileged = true\n[[domain]]\nprivileged = true",
            "more than one privileged",
        ),
        (
            'hide = "02:01.0"\n[[domain]]\nassign = ["02:01.0"]\n[[domain]]\nassign = ["02:01.0"]',
            "assigned to both",
        ),
        ('[[domain]]\nassign = ["02:01.0"]', "not hidden"),
        ('[[domain]]\nassign = ["02:41.0"]', "out of range"),
        ('host_ports = "serial"', "none, fake or devport"),
        ('[[domain]]\npermissive = { "02:01.0" = [[0x40, 3]] }', "size 1, 2 or 4"),
        ("this is = not toml", "hv.toml"),
    ],
)
def test_bad_configs_give_one_line(tmp_path: Path, text: str, msg: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/hv.toml")


def fake_inventory(tmp_path: Path) -> HostInventory:
    root = build_fake_sysfs(
        tmp_path / "sys",
        [
            FakeDevice("00:00.0", 0x8086, 0x1237, 0x060000),
            FakeDevice("00:03.0", 0x10EC, 0x8139, 0x020000, bars={0: FakeBar("io", 0xC000, 0x100)}),
            FakeDevice("00:04.0", 0x8086, 0x100E, 0x020000, bars={1: FakeBar("io", 0xC100, 0x40)}),
        ],
    )
    return probe_sysfs(root)


def test_hidden_devices_go_to_first_user_domain_unless_reserved(tmp_path: Path) -> None:
    led = Assignments(fake_inventory(tmp_path), [A("00:03.0"), A("00:04.0"), A("07:00.0")])
    assert led.warnings == ["hide: 0000:07:00.0 does not exist on this host; ignored"]
    assert [str(d.addr) for d in led.visible()] == ["0000:00:00.0"]
    led.reserve(A("00:04.0"), "second")
    assert [str(d.addr) for d in led.claim("first")] == ["0000:00:03.0"]
    assert led.claim("third") == []  # everything unreserved is already taken
    assert [str(d.addr) for d in led.claim("second")] == ["0000:00:04.0"]
    assert led.status(A("00:03.0")) == "assigned to first"
    assert led.status(A("00:00.0")) == "visible"
    assert led.release("first") == [A("00:03.0")]
    assert led.status(A("00:03.0")) == "hidden"
    assert [str(d.addr) for d in led.claim("third")] == ["0000:00:03.0"]
    with pytest.raises(AssignmentError):
        led.reserve(A("00:00.0"), "x")


def test_parse_config_defaults() -> None:
    cfg = parse_config({})
    assert cfg.hide == [] and cfg.sysfs == "/sys" and cfg.domains == []
