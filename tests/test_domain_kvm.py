"""Three domains in one process under KVM (issue 7, quality bar): the privileged domain's
guest lists the simulated host's devices minus the hidden one; the first user domain's guest
finds the hidden device on its bus, moves its I/O BAR, drives its ports (reaching the
simulated device at the host addresses) and takes its interrupt through INTx (twice: EOI
unmasks), through MSI and through MSI-X; a second user domain sees neither the device nor
its ports and cannot reach them. Skipped with the reason where KVM is missing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from southbridge.cli import main
from southbridge.domains.config import DomainConfig, HypervisorConfig
from southbridge.domains.hypervisor import Hypervisor
from southbridge.host.hide import parse_hide
from southbridge.host.pciaddr import PciAddress
from southbridge.host.simulated import build_simulated_host, example_specs
from southbridge.kvm.testing import kvm_unavailable_reason
from southbridge.kvm.vcpu import RunEnd

_reason = kvm_unavailable_reason()
pytestmark = [pytest.mark.kvm, pytest.mark.skipif(_reason is not None, reason=_reason or "")]

NIC = PciAddress.parse("02:00.0")


def exit_status(code: int) -> int:
    return (code << 1) | 1  # isa-debug-exit


def test_three_domains_one_process(tmp_path: Path) -> None:
    sim = build_simulated_host(tmp_path / "sys", example_specs())
    logs = {n: tmp_path / f"{n}.log" for n in ("dom0", "user", "other")}
    cfg = HypervisorConfig(
        hide=parse_hide("hide=02:00.0"),
        domains=[
            DomainConfig(
                "dom0",
                privileged=True,
                memory_mb=8,
                bios="guest:dom_priv",
                debugcon=f"file:{logs['dom0']}",
            ),
            DomainConfig(
                "user", memory_mb=8, bios="guest:dom_user", debugcon=f"file:{logs['user']}"
            ),
            DomainConfig(
                "other", memory_mb=8, bios="guest:dom_other", debugcon=f"file:{logs['other']}"
            ),
        ],
    )
    hv = Hypervisor(cfg, sim=sim)
    start = time.monotonic()
    results = hv.run(timeout=20)
    assert time.monotonic() - start < 20
    assert results == {
        "dom0": RunEnd("exit", exit_status(0x11), "guest requested exit"),
        "user": RunEnd("exit", exit_status(0x12), "guest requested exit"),
        "other": RunEnd("exit", exit_status(0x13), "guest requested exit"),
    }
    # Privileged: host numbering, every simulated function but the hidden one.
    want = [
        f"{d.addr.short()} {d.vendor:04x}:{d.device:04x}" for d in sim.inventory() if d.addr != NIC
    ]
    assert logs["dom0"].read_text().splitlines() == [*want, "end"]
    # First user domain: device at its own slot, BAR moved, ports, INTx twice, MSI.
    assert logs["user"].read_text().splitlines() == [
        "found 00:03",
        "id 813910ec",
        "scratch 5a5aa5a5",
        "intx 1",
        "intx 2",
        "msi 1",
        "msix 1",
    ]
    live = sim.get(NIC)
    assert live is not None and live.io is not None
    # The guest used BAR 0xD000; the device was reached at its host address 0xC000.
    assert ("out", 0xC004, 4, 0x5A5AA5A5) in sim.ports.log
    assert not any(port >= 0xD000 for _, port, _, _ in sim.ports.log)
    assert live.io.doorbells == 4 and live.io.scratch == 0x5A5AA5A5
    # MSI-X: the guest programmed the table in BAR1; the device's own table never saw it.
    assert live.memory[1].data[:0x40] == bytes(0x40)
    assert live.config_writes == []  # BAR, command and MSI writes stayed virtual
    # Second user domain: nothing found, all-ones, and its writes reached nothing.
    assert logs["other"].read_text().splitlines() == [
        "device none",
        "c000 ffffffff",
        "c004 ffffffff",
        "d000 ffffffff",
        "end",
    ]
    assert not any(value == 0x11111111 for _, _, _, value in sim.ports.log)
    # Shutdown released the device and revoked every domain's ports.
    assert hv.assignments.owner == {}
    assert all(d.machine.permissions.count() == 0 for d in hv.domains)


def test_cli_runs_a_config_on_a_fake_sysfs(tmp_path: Path) -> None:
    # `southbridge run --config`: a privileged and a user domain over a sysfs tree (config
    # read-only through the files), the hidden device absent from the privileged view.
    build_simulated_host(tmp_path / "sys", example_specs())
    conf = tmp_path / "hv.toml"
    conf.write_text(
        f'sysfs = "{tmp_path / "sys"}"\n'
        'host_ports = "fake"\n'
        "[[domain]]\n"
        'name = "dom0"\nprivileged = true\nmemory = 8\nbios = "guest:dom_priv"\n'
        f'debugcon = "file:{tmp_path / "dom0.log"}"\n'
        "[[domain]]\n"
        'name = "other"\nmemory = 8\nbios = "guest:dom_other"\n'
        f'debugcon = "file:{tmp_path / "other.log"}"\n'
    )
    assert main(["run", "--config", str(conf), "--hide", "(02:00.0)", "--timeout", "20"]) == (
        exit_status(0x11)
    )
    listed = (tmp_path / "dom0.log").read_text().splitlines()
    assert "02:00.0 10ec:8139" not in listed and "00:1c.0 8086:2448" in listed
    # The second domain is the first user domain here: it owns the device, so it sees it.
    assert (tmp_path / "other.log").read_text().splitlines()[0] == "device seen"
