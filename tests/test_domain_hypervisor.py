"""The hypervisor without KVM (issue 7, item 3): domains built in order, hidden devices
claimed by the first user domain unless reserved, the privileged view installed, ports
isolated between domains that share one host backend, shutdown revoking and releasing; and
`southbridge run --config/--hide` bad input as one error line."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.cli import main
from southbridge.commands.domains import config_from_args
from southbridge.core.clock import ManualClock
from southbridge.domains.config import DomainConfig, HypervisorConfig, parse_config
from southbridge.domains.hypervisor import Hypervisor
from southbridge.host.hide import parse_hide
from southbridge.host.pciaddr import PciAddress
from southbridge.host.simulated import SimulatedHost, build_simulated_host, example_specs
from tests.pcicfg import cfg_read

NIC = PciAddress.parse("02:00.0")
FN1 = PciAddress.parse("00:03.1")


def make(tmp: Path, hide: str, domains: list[DomainConfig]) -> tuple[SimulatedHost, Hypervisor]:
    sim = build_simulated_host(tmp / "sys", example_specs())
    cfg = HypervisorConfig(hide=parse_hide(hide), domains=domains)
    return sim, Hypervisor(cfg, sim=sim, clock_factory=ManualClock)


def domain_cfg_read(hv: Hypervisor, name: str, a: PciAddress, off: int = 0) -> int:
    return cfg_read(hv.domain(name).machine, a, off)


def test_first_user_domain_claims_hidden_devices(tmp_path: Path) -> None:
    _sim, hv = make(
        tmp_path,
        "(02:00.0)(00:03.1)",
        [DomainConfig("dom0", privileged=True), DomainConfig("u1"), DomainConfig("u2")],
    )
    hv.build()
    assert [d.addr for d in (a.dev for a in hv.domain("u1").assigned)] == [NIC, FN1]  # hide order
    assert hv.domain("u2").assigned == []
    assert hv.assignments.status(NIC) == "assigned to u1"
    # dom0: host numbering, hidden devices absent.
    assert domain_cfg_read(hv, "dom0", PciAddress.parse("00:03.0")) == 0x00051B36
    assert domain_cfg_read(hv, "dom0", NIC) == 0xFFFFFFFF
    assert domain_cfg_read(hv, "dom0", FN1) == 0xFFFFFFFF
    # u1: its devices on its own bus; u2: nothing of them.
    assert domain_cfg_read(hv, "u1", PciAddress(0, 0, 3, 0)) == 0x813910EC
    assert domain_cfg_read(hv, "u1", PciAddress(0, 0, 4, 0)) == 0x00061B36
    for slot in range(32):
        assert domain_cfg_read(hv, "u2", PciAddress(0, 0, slot, 0)) not in (0x813910EC, 0x00061B36)
    hv.shutdown()


def test_reserved_device_goes_to_the_named_domain(tmp_path: Path) -> None:
    _sim, hv = make(
        tmp_path,
        "02:00.0",
        [DomainConfig("u1"), DomainConfig("u2", assign=[NIC])],
    )
    hv.build()
    assert hv.domain("u1").assigned == []
    assert [a.dev.addr for a in hv.domain("u2").assigned] == [NIC]
    hv.shutdown()


def test_ports_isolated_between_domains_sharing_a_backend(tmp_path: Path) -> None:
    sim, hv = make(
        tmp_path,
        "02:00.0",
        [DomainConfig("dom0", privileged=True), DomainConfig("u1"), DomainConfig("u2")],
    )
    hv.build()
    u1, u2, d0 = (hv.domain(n).machine for n in ("u1", "u2", "dom0"))
    assert u1.ports.read(0xC000, 4) == 0x813910EC  # the enabled-port rule
    assert u2.ports.read(0xC000, 4) == 0xFFFFFFFF
    assert d0.ports.read(0xC000, 4) == 0xFFFFFFFF  # hidden from the privileged domain
    assert d0.ports.read(0xC100, 4) == 0x00051B36  # a visible device's ports are open
    n = len(sim.ports.log)
    u2.ports.write(0xC004, 4, 0x11111111)
    d0.ports.write(0xC004, 4, 0x11111111)
    assert len(sim.ports.log) == n
    hv.shutdown()


def test_shutdown_revokes_and_releases(tmp_path: Path) -> None:
    sim, hv = make(tmp_path, "02:00.0", [DomainConfig("dom0", privileged=True), DomainConfig("u1")])
    hv.build()
    u1 = hv.domain("u1").machine
    live = sim.get(NIC)
    assert live is not None and live.irq.intx_listeners
    hv.shutdown()
    assert hv.assignments.owner == {}
    assert u1.permissions.count() == 0 and hv.domain("dom0").machine.permissions.count() == 0
    assert not live.irq.intx_listeners and not live.irq.msi_listeners
    # Free again: another user domain may claim it.
    assert [d.addr for d in hv.assignments.claim("later")] == [NIC]
    hv.shutdown()  # twice is harmless


def test_missing_hidden_device_is_a_warning(tmp_path: Path) -> None:
    _sim, hv = make(tmp_path, "(02:00.0)(07:00.0)", [DomainConfig("u1")])
    assert hv.warnings == ["hide: 0000:07:00.0 does not exist on this host; ignored"]


def args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = dict(
        config=None,
        hide=None,
        bios=None,
        memory=16,
        serial="none",
        debugcon=None,
        timeout=None,
        kvm_device=None,
    )
    base.update(kw)
    return argparse.Namespace(**base)


def test_hide_alone_runs_one_privileged_domain() -> None:
    cfg = config_from_args(args(hide=["02:00.0", "(02:00.0)(03:00.1)"], bios="x.bin"))
    assert [str(a) for a in cfg.hide] == ["0000:02:00.0", "0000:03:00.1"]
    [dom] = cfg.domains
    assert dom.privileged and dom.bios == "x.bin" and dom.memory_mb == 16


def test_config_and_hide_merge(tmp_path: Path) -> None:
    f = tmp_path / "hv.toml"
    f.write_text('hide = "02:00.0"\n[[domain]]\nname = "u"\n')
    cfg = config_from_args(args(config=str(f), hide=["00:03.1", "02:00.0"]))
    assert [a.short() for a in cfg.hide] == ["02:00.0", "00:03.1"]
    assert parse_config({"domain": [{"name": "u"}]}).domains[0].name == "u"


@pytest.mark.parametrize(
    ("argv", "content", "expect"),
    [
        (["--hide", "02:1.0x"], None, "hide: malformed PCI address '02:1.0x'"),
        (["--hide", "(02:00.0"], None, "hide: unbalanced or stray '(02:00.0'"),
        (["--config", "{dir}/none.toml"], None, "cannot read"),
        (["--config", "{f}"], "hide = [1]\n", "hide: expected a string or a list of strings"),
        (["--config", "{f}"], "[[domain]]\nnme = 1\n", "unknown key 'nme'"),
        (["--config", "{f}"], "x = \n", "hv.toml: "),
        (["--config", "{f}"], 'host_ports = "fake"\n', "no [[domain]] tables"),
        (["--config", "{f}"], 'sysfs = "{dir}/nosys"\n[[domain]]\n', "no PCI devices directory"),
        (["--config", "{f}", "--timeout", "0"], "[[domain]]\n", "--timeout 0"),
    ],
)
def test_bad_input_is_one_error_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    content: str | None,
    expect: str,
) -> None:
    f = tmp_path / "hv.toml"
    if content is not None:
        f.write_text(content.replace("{dir}", str(tmp_path)))
    argv = [a.replace("{f}", str(f)).replace("{dir}", str(tmp_path)) for a in argv]
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("southbridge: error: ")
    assert expect in err


OPS = st.lists(
    st.tuples(
        st.sampled_from(["dom0", "u1", "u2"]),
        st.sampled_from(["in", "out", "cfgr", "cfgw"]),
        st.integers(0, 0xFFFF),
        st.sampled_from([1, 2, 4]),
        st.integers(0, 2**32 - 1),
    ),
    max_size=60,
)


@settings(max_examples=30, deadline=None)
@given(OPS, st.lists(st.integers(0xC000, 0xC0FF), max_size=8))
def test_any_port_or_config_access_keeps_domains_apart(
    ops: list[tuple[str, str, int, int, int]], hot: list[int]
) -> None:
    # Only u1 owns the NIC: nothing dom0 or u2 does reaches it, whatever they access, and no
    # domain's config write ever reaches any host function. Some accesses aim at the NIC's
    # host ports on purpose (`hot`).
    with tempfile.TemporaryDirectory() as d:
        sim, hv = make(
            Path(d),
            "02:00.0",
            [DomainConfig("dom0", privileged=True), DomainConfig("u1"), DomainConfig("u2")],
        )
        hv.build()
        nic = sim.get(NIC)
        assert nic is not None and nic.io is not None
        ops = (
            ops + [("u2", "out", p, 4, 0x11) for p in hot] + [("dom0", "in", p, 1, 0) for p in hot]
        )
        for name, kind, addr, size, value in ops:
            m = hv.domain(name).machine
            value &= (1 << 8 * size) - 1
            before = len(sim.ports.log)
            if kind == "in":
                m.ports.read(addr, size)
            elif kind == "out":
                m.ports.write(addr, size, value)
            else:
                a = PciAddress(0, addr >> 8 & 3, addr >> 3 & 31, addr & 7)
                m.ports.write(0xCF8, 4, 0x80000000 | a.bus << 16 | a.devfn << 8 | value & 0xFC)
                if kind == "cfgr":
                    m.ports.read(0xCFC + (value & 3 & -size), size)
                else:
                    m.ports.write(0xCFC + (value & 3 & -size), size, value >> 8)
            touched = {p for _, p, _, _ in sim.ports.log[before:]}
            if name != "u1":
                assert not touched & set(range(0xC000, 0xC100))
        assert all(not dev.config_writes for dev in sim.devices.values())
        hv.shutdown()
        assert all(dm.machine.permissions.count() == 0 for dm in hv.domains)


def test_unassignable_device_is_one_clear_error(tmp_path: Path) -> None:
    # Only type 0 functions can be given to a user domain (a bridge brings a whole bus).
    from southbridge.domains.hypervisor import HypervisorError

    sim, hv = make(tmp_path, "(02:00.0)(00:1c.0)", [DomainConfig("u1")])
    with pytest.raises(HypervisorError, match=r"u1: cannot assign 0000:00:1c\.0: .*type 0"):
        hv.build()
    assert hv.assignments.owner == {}  # nothing half-claimed ...
    live = sim.get(NIC)
    assert live is not None and not live.irq.intx_listeners  # ... or half-attached
    hv.shutdown()
