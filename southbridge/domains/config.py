"""The hypervisor configuration: a TOML file (or the same from command-line options).

    hide = "(02:01.0)(0000:03:00.1)"   # or a list of such strings
    sysfs = "/sys"                     # host inventory: sysfs root ...
    # lspci_dump = "host.txt"          # ... or an lspci -xxx dump
    host_ports = "none"                # none | fake | devport

    [[domain]]
    name = "dom0"
    privileged = true
    memory = 64
    bios = "guest:dom_priv"            # an image path, or guest:NAME for a bundled guest

    [[domain]]
    name = "guest"
    memory = 128
    assign = ["02:01.0"]               # optional: hidden devices otherwise go to the first
                                       # user domain that starts

Every error is one line naming the file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from southbridge.host.hide import HideError, parse_hide
from southbridge.host.pciaddr import PciAddress, PciAddressError
from southbridge.host.userfile import InputFileError, read_text

# A configuration is a few dozen lines; a megabyte is already absurd.
MAX_CONFIG_BYTES = 1 << 20


class ConfigError(ValueError):
    pass


@dataclass
class DomainConfig:
    name: str
    privileged: bool = False
    memory_mb: int = 64
    smp: int = 1
    bios: str | None = None
    kernel: str | None = None
    append: str = ""
    serial: str = "none"
    debugcon: str | None = None
    assign: list[PciAddress] = field(default_factory=list)
    permissive: dict[PciAddress, list[tuple[int, int]]] = field(default_factory=dict)


@dataclass
class HypervisorConfig:
    hide: list[PciAddress] = field(default_factory=list)
    sysfs: str | None = "/sys"
    lspci_dump: str | None = None
    host_ports: str = "none"
    domains: list[DomainConfig] = field(default_factory=list)


_TOP_KEYS = {"hide", "sysfs", "lspci_dump", "host_ports", "domain"}
_DOMAIN_KEYS = {
    "name",
    "privileged",
    "memory",
    "smp",
    "bios",
    "kernel",
    "append",
    "serial",
    "debugcon",
    "assign",
    "permissive",
}


def _typed(where: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {what}, got {value!r}")
    return value


def _addr(where: str, text: Any) -> PciAddress:
    _typed(where, text, str, "a PCI address string")
    try:
        return PciAddress.parse(text)
    except PciAddressError as e:
        raise ConfigError(f"{where}: {e}") from None


def parse_config(data: dict[str, Any], source: str = "config") -> HypervisorConfig:
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown key '{sorted(unknown)[0]}'")
    cfg = HypervisorConfig()
    if "hide" in data:
        raw = data["hide"]
        specs = [raw] if isinstance(raw, str) else raw
        if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
            raise ConfigError(f"{source}: hide: expected a string or a list of strings")
        try:
            cfg.hide = parse_hide(specs)
        except HideError as e:
            raise ConfigError(f"{source}: {e}") from None
    if "lspci_dump" in data:
        cfg.lspci_dump = _typed(f"{source}: lspci_dump", data["lspci_dump"], str, "a path")
        cfg.sysfs = None
    if "sysfs" in data:
        cfg.sysfs = _typed(f"{source}: sysfs", data["sysfs"], str, "a path")
    cfg.host_ports = _typed(
        f"{source}: host_ports", data.get("host_ports", "none"), str, "none, fake or devport"
    )
    if cfg.host_ports not in ("none", "fake", "devport"):
        raise ConfigError(f"{source}: host_ports: expected none, fake or devport")
    domains = data.get("domain", [])
    if not isinstance(domains, list):
        raise ConfigError(f"{source}: domain: use [[domain]] tables")
    names: set[str] = set()
    for i, d in enumerate(domains):
        where = f"{source}: domain[{i}]"
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a table")
        unknown = set(d) - _DOMAIN_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key '{sorted(unknown)[0]}'")
        name = _typed(f"{where}.name", d.get("name", f"dom{i}"), str, "a name")
        if not name or name in names:
            raise ConfigError(f"{where}.name: '{name}' is empty or used twice")
        names.add(name)
        dc = DomainConfig(name=name)
        dc.privileged = _typed(
            f"{where}.privileged", d.get("privileged", False), bool, "true/false"
        )
        dc.memory_mb = _typed(f"{where}.memory", d.get("memory", 64), int, "megabytes")
        if not 2 <= dc.memory_mb <= 3584:
            raise ConfigError(f"{where}.memory: {dc.memory_mb} MB is outside 2-3584")
        dc.smp = _typed(f"{where}.smp", d.get("smp", 1), int, "a CPU count")
        if not 1 <= dc.smp <= 255:
            raise ConfigError(f"{where}.smp: {dc.smp} is outside 1-255")
        for key in ("bios", "kernel", "debugcon"):
            if key in d:
                setattr(dc, key, _typed(f"{where}.{key}", d[key], str, "a string"))
        dc.append = _typed(f"{where}.append", d.get("append", ""), str, "a string")
        dc.serial = _typed(f"{where}.serial", d.get("serial", "none"), str, "a string")
        assign = d.get("assign", [])
        _typed(f"{where}.assign", assign, list, "a list of PCI addresses")
        dc.assign = [_addr(f"{where}.assign", a) for a in assign]
        perm = d.get("permissive", {})
        _typed(f"{where}.permissive", perm, dict, "a table of address = [[offset, size], ...]")
        for key, ranges in perm.items():
            addr = _addr(f"{where}.permissive", key)
            ok = isinstance(ranges, list) and all(
                isinstance(r, list)
                and len(r) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) for x in r)
                and 0 <= r[0] < 4096
                and r[1] in (1, 2, 4)
                for r in ranges
            )
            if not ok:
                raise ConfigError(
                    f"{where}.permissive.{key}: expected [[offset, size], ...] with size 1, 2 or 4"
                )
            dc.permissive[addr] = [(r[0], r[1]) for r in ranges]
        if dc.privileged and dc.assign:
            raise ConfigError(f"{where}.assign: a privileged domain sees every visible device")
        cfg.domains.append(dc)
    if sum(d.privileged for d in cfg.domains) > 1:
        raise ConfigError(f"{source}: more than one privileged domain")
    claimed: dict[PciAddress, str] = {}
    for dc in cfg.domains:
        for a in dc.assign:
            if a in claimed:
                raise ConfigError(f"{source}: {a} is assigned to both {claimed[a]} and {dc.name}")
            if a not in cfg.hide:
                raise ConfigError(f"{source}: {dc.name} is assigned {a}, which is not hidden")
            claimed[a] = dc.name
    return cfg


def load_config(path: str | Path) -> HypervisorConfig:
    try:
        text = read_text(path, "configuration", MAX_CONFIG_BYTES, allow_empty=True)
    except InputFileError as e:
        raise ConfigError(f"cannot read {path}: {e.reason}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        raise ConfigError(f"{path}: arrays or tables nested too deeply") from None
    return parse_config(data, str(path))
