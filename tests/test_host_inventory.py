"""Host inventory: sysfs probe on a fake tree (bridge + multi-function), lspci dumps, hide=."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from southbridge.host.fakesysfs import FakeBar, FakeDevice, build_fake_sysfs
from southbridge.host.hide import HideError, parse_hide
from southbridge.host.inventory import InventoryError, parse_lspci_dump, probe_sysfs
from southbridge.host.pciaddr import PciAddress, PciAddressError

A = PciAddress.parse


def fake_host(tmp_path: Path) -> Path:
    return build_fake_sysfs(
        tmp_path / "sys",
        [
            FakeDevice("00:00.0", 0x8086, 0x1237, 0x060000),
            FakeDevice("00:1e.0", 0x8086, 0x244E, 0x060400, bridge=(2, 3)),
            FakeDevice(
                "02:01.0",
                0x10EC,
                0x8139,
                0x020000,
                irq=11,
                driver="8139too",
                bars={0: FakeBar("io", 0xC000, 0x100), 1: FakeBar("mem32", 0xFEB00000, 0x100)},
            ),
            FakeDevice(
                "03:00.0",
                0x8086,
                0x10D3,
                0x020000,
                multifunction=True,
                bars={0: FakeBar("mem64", 0x2_0000_0000, 0x20000, prefetch=True)},
            ),
            FakeDevice("03:00.1", 0x8086, 0x10D3, 0x020000, multifunction=True),
        ],
    )


def test_sysfs_probe_finds_devices_bridges_and_parents(tmp_path: Path) -> None:
    inv = probe_sysfs(fake_host(tmp_path))
    assert [str(d.addr) for d in inv] == [
        "0000:00:00.0",
        "0000:00:1e.0",
        "0000:02:01.0",
        "0000:03:00.0",
        "0000:03:00.1",
    ]
    bridge = inv.get(A("00:1e.0"))
    assert bridge is not None and bridge.is_bridge
    assert (bridge.secondary_bus, bridge.subordinate_bus) == (2, 3)
    nic = inv.get(A("02:01.0"))
    assert nic is not None
    assert (nic.vendor, nic.device, nic.class_code, nic.irq) == (0x10EC, 0x8139, 0x020000, 11)
    assert nic.parent == A("00:1e.0") and nic.driver == "8139too"
    io = nic.io_ranges()
    assert [(r.start, r.size) for r in io] == [(0xC000, 0x100)]
    assert [(r.start, r.size) for r in nic.mem_ranges()] == [(0xFEB00000, 0x100)]
    f1 = inv.get(A("03:00.1"))
    assert f1 is not None and f1.parent == A("00:1e.0")  # bus 3 is under the bridge's range
    big = inv.get(A("03:00.0"))
    assert big is not None
    (bar,) = big.mem_ranges()
    assert bar.is_64bit and bar.prefetchable and bar.start == 0x2_0000_0000
    assert [d.addr.function for d in inv.on_bus(0, 3)] == [0, 1]


def test_sysfs_probe_missing_root_is_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="no PCI devices directory"):
        probe_sysfs(tmp_path / "nothing")


def test_real_sysfs_is_read_only_and_matches_lspci() -> None:
    inv = probe_sysfs("/sys")
    assert len(inv) > 0
    if shutil.which("lspci") is None:
        pytest.skip("lspci (pciutils) not installed")
    out = subprocess.run(["lspci", "-n"], capture_output=True, text=True, check=True).stdout
    expected = set()
    for line in out.splitlines():
        addr, _cls, ids = line.split()[:3]
        expected.add((addr, ids.strip()))
    ours = {(d.addr.short(), f"{d.vendor:04x}:{d.device:04x}") for d in inv}
    assert ours == expected


def test_lspci_dump_round_trip_with_real_lspci(tmp_path: Path) -> None:
    if shutil.which("lspci") is None:
        pytest.skip("lspci (pciutils) not installed")
    dump = subprocess.run(["lspci", "-xxx"], capture_output=True, text=True, check=True).stdout
    inv = parse_lspci_dump(dump)
    real = probe_sysfs("/sys")
    assert {d.addr for d in inv} == {d.addr for d in real}
    for d in inv:
        r = real.get(d.addr)
        assert r is not None and d.config[:64] == r.config[:64]


def test_lspci_dump_errors_are_one_line() -> None:
    with pytest.raises(InventoryError, match="not an lspci -x line"):
        parse_lspci_dump("garbage here\n")
    with pytest.raises(InventoryError, match="config bytes"):
        parse_lspci_dump("00:00.0 Host bridge: x\n00: 86 80 37 12\n")


def test_pci_address_forms_and_ranges() -> None:
    assert A("02:01.0") == PciAddress(0, 2, 1, 0)
    assert A("0000:03:00.1") == PciAddress(0, 3, 0, 1)
    assert str(A("a:1f.7")) == "0000:0a:1f.7"
    for bad in ("02:20.0", "02:01.8", "2:01", "zz:01.0", "12345:00:00.0", ""):
        with pytest.raises(PciAddressError):
            A(bad)


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("hide=02:01.0", ["0000:02:01.0"]),
        ("02:01.0", ["0000:02:01.0"]),
        ("(02:01.0)(0000:03:00.1)", ["0000:02:01.0", "0000:03:00.1"]),
        ("hide=(02:01.0)(03:00.0)", ["0000:02:01.0", "0000:03:00.0"]),
        ("(02:01.0)(0000:02:01.0)(02:01.0)", ["0000:02:01.0"]),
        ("02:01.0,03:00.0 04:00.0", ["0000:02:01.0", "0000:03:00.0", "0000:04:00.0"]),
        ("", []),
    ],
)
def test_hide_forms(spec: str, expected: list[str]) -> None:
    assert [str(a) for a in parse_hide(spec)] == expected


@pytest.mark.parametrize(
    "spec",
    [
        "(02:01.0",
        "(02:01.0)x(03:00.0)",
        "(02:0g.0)",
        "hide=(1:2:3)",
        "02:01.0)",
        "(02:01.0)(02:32.0)",
    ],
)
def test_hide_malformed_gives_one_line_error(spec: str) -> None:
    with pytest.raises(HideError) as e:
        parse_hide(spec)
    assert "\n" not in str(e.value) and str(e.value).startswith("hide:")


def test_hide_merges_across_several_values() -> None:
    assert parse_hide(["02:01.0", "(0000:02:01.0)(03:00.0)"]) == [A("02:01.0"), A("03:00.0")]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run(
        [sys.executable, "-m", "southbridge", *args], capture_output=True, text=True, timeout=60
    )


def test_host_command_lists_fake_tree_with_status_column(tmp_path: Path) -> None:
    root = fake_host(tmp_path)
    cfg = tmp_path / "hv.toml"
    cfg.write_text('hide = "(02:01.0)"\n[[domain]]\nname = "user1"\nassign = ["02:01.0"]\n')
    r = run_cli(
        "host",
        "--sysfs",
        str(root),
        "--config",
        str(cfg),
        "--hide",
        "03:00.1",
        "--hide",
        "(09:00.0)",
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 5
    by_addr = {ln[21:28]: ln[:20].strip() for ln in lines}
    assert by_addr == {
        "00:00.0": "visible",
        "00:1e.0": "visible",
        "02:01.0": "hidden (for user1)",
        "03:00.0": "visible",
        "03:00.1": "hidden",
    }
    assert "[10ec:8139]" in lines[2]
    assert r.stderr.strip() == (
        "southbridge: warning: hide: 0000:09:00.0 does not exist on this host; ignored"
    )


def test_host_command_on_this_machine_matches_lspci_nn() -> None:
    if shutil.which("lspci") is None:
        pytest.skip("lspci (pciutils) not installed")
    r = run_cli("host")
    assert r.returncode == 0, r.stderr
    real = subprocess.run(["lspci", "-nn"], capture_output=True, text=True, check=True).stdout
    assert [ln[21:] for ln in r.stdout.splitlines()] == real.splitlines()
    assert all(ln.startswith("visible ") for ln in r.stdout.splitlines())


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--hide", "(02:01.0"], "hide: unbalanced"),
        (["--sysfs", "/nonexistent"], "no PCI devices directory"),
        (["--lspci-dump", "/nonexistent"], "cannot read"),
        (["--config", "/nonexistent.toml"], "cannot read"),
    ],
)
def test_host_command_bad_input_one_line(args: list[str], msg: str) -> None:
    r = run_cli("host", *args)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and msg in r.stderr and "Traceback" not in r.stderr
