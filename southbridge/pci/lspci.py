"""`lspci`-style listings and hex dumps of a PCI bus.

`listing` prints what `lspci -nn` prints; `dump` what `lspci -xxx` (256 bytes) or `lspci
-xxxx` (4096 bytes for PCI Express functions) prints, which the real `lspci -F FILE` reads
back. Names come from the system's pci.ids when there is one, else numbers alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

from southbridge.pci.bus import PciBus
from southbridge.pci.config import CLASS, PCIE_CONFIG_SIZE, PROG_IF, REVISION, SUBCLASS
from southbridge.pci.function import PciFunction

PCI_IDS_PATHS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")


@dataclass
class PciIds:
    vendors: dict[int, str] = field(default_factory=dict)
    devices: dict[tuple[int, int], str] = field(default_factory=dict)
    classes: dict[int, str] = field(default_factory=dict)
    subclasses: dict[tuple[int, int], str] = field(default_factory=dict)
    progifs: dict[tuple[int, int, int], str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> PciIds:
        ids = cls()
        vendor: int | None = None
        klass: int | None = None
        sub: int | None = None
        for raw in text.splitlines():
            if not raw.strip() or raw.startswith("#"):
                continue
            try:
                if raw.startswith("C "):
                    code, _, name = raw[2:].partition("  ")
                    klass, vendor = int(code, 16), None
                    ids.classes[klass] = name.strip()
                elif raw.startswith("\t\t"):
                    if klass is not None and sub is not None:
                        code, _, name = raw[2:].partition("  ")
                        ids.progifs[(klass, sub, int(code, 16))] = name.strip()
                elif raw.startswith("\t"):
                    code, _, name = raw[1:].partition("  ")
                    if vendor is not None:
                        ids.devices[(vendor, int(code, 16))] = name.strip()
                    elif klass is not None:
                        sub = int(code, 16)
                        ids.subclasses[(klass, sub)] = name.strip()
                elif raw[:4].strip() and raw[4:6] == "  ":
                    vendor, klass = int(raw[:4], 16), None
                    ids.vendors[vendor] = raw[6:].strip()
            except ValueError:
                continue  # a line we do not understand; lspci skips those too
        return ids


@lru_cache(maxsize=4)
def load_ids(path: str | None = None) -> PciIds:
    """The system's pci.ids (or `path`); empty when there is none."""
    for p in (path,) if path else PCI_IDS_PATHS:
        if p and os.path.exists(p):
            with open(p, encoding="utf-8", errors="replace") as f:
                return PciIds.parse(f.read())
    return PciIds()


def _class_name(ids: PciIds, klass: int, sub: int) -> str:
    name = ids.subclasses.get((klass, sub)) or ids.classes.get(klass)
    return name or "Class"


def describe(fn: PciFunction, ids: PciIds, numeric: bool = True, verbose: bool = False) -> str:
    """One `lspci -nn` line (without the address) for a function; the programming
    interface shows only in lspci's verbose form (lspci.c show_terse)."""
    cs = fn.config
    klass, sub, progif = cs.get(CLASS, 1), cs.get(SUBCLASS, 1), cs.get(PROG_IF, 1)
    vendor, device, rev = fn.vendor_id, fn.device_id, cs.get(REVISION, 1)
    cname = _class_name(ids, klass, sub)
    vname = ids.vendors.get(vendor)
    dname = ids.devices.get((vendor, device))
    if numeric:
        text = f"{cname} [{klass:02x}{sub:02x}]: "
    else:
        text = f"{cname}: " if cname != "Class" else f"Class {klass:02x}{sub:02x}: "
    if vname and dname:
        text += f"{vname} {dname}"
    elif vname:
        text += f"{vname} Device"
    else:
        text += "Device"
    if numeric:
        text += f" [{vendor:04x}:{device:04x}]"
    elif not dname:
        text += f" {device:04x}"
    if rev:
        text += f" (rev {rev:02x})"
    if progif and verbose:
        pname = ids.progifs.get((klass, sub, progif))
        if pname:
            text += f" (prog-if {progif:02x} [{pname}])"
        else:
            text += f" (prog-if {progif:02x})"
    return text


def _functions(bus: PciBus) -> list[PciFunction]:
    """Functions sorted like lspci: by bus number, then device/function."""
    return sorted(bus.walk(), key=lambda f: (f.bus.number if f.bus else 0, f.devfn))


def listing(bus: PciBus, ids: PciIds | None = None, numeric: bool = True) -> str:
    ids = ids if ids is not None else load_ids()
    return "".join(f"{fn.address()} {describe(fn, ids, numeric)}\n" for fn in _functions(bus))


def hexdump(fn: PciFunction, length: int) -> str:
    """`lspci -x` style lines: "OO: bb bb ...", 16 bytes per line."""
    data = bytes(fn.config_read(o, 1) for o in range(min(length, fn.config.size)))
    return "".join(
        f"{o:02x}: {' '.join(f'{b:02x}' for b in data[o : o + 16])}\n"
        for o in range(0, len(data), 16)
    )


def dump(bus: PciBus, level: int = 3, ids: PciIds | None = None, numeric: bool = True) -> str:
    """`lspci -x` (level 1-2: 64 bytes), `-xxx` (3: 256 bytes) or `-xxxx` (4: whole space)."""
    ids = ids if ids is not None else load_ids()
    out = []
    for fn in _functions(bus):
        length = 64 if level < 3 else 256
        if level >= 4 and fn.config.size == PCIE_CONFIG_SIZE:
            length = PCIE_CONFIG_SIZE
        out.append(f"{fn.address()} {describe(fn, ids, numeric)}\n{hexdump(fn, length)}\n")
    return "".join(out)


def numeric_line(fn: PciFunction) -> str:
    """One `lspci -n` line: class and IDs as numbers only (no prog-if, as lspci)."""
    cs = fn.config
    klass, sub = cs.get(CLASS, 1), cs.get(SUBCLASS, 1)
    text = f"{fn.address()} {klass:02x}{sub:02x}: {fn.vendor_id:04x}:{fn.device_id:04x}"
    if rev := cs.get(REVISION, 1):
        text += f" (rev {rev:02x})"
    return text + "\n"


def render(bus: PciBus, numeric: int = 2, hexlevel: int = 0, ids: PciIds | None = None) -> str:
    """What `lspci` prints with `-n` given `numeric` times and `-x` given `hexlevel` times."""
    if numeric == 1:
        lines = [numeric_line(fn) for fn in _functions(bus)]
        if not hexlevel:
            return "".join(lines)
        return "".join(
            line
            + hexdump(fn, 64 if hexlevel < 3 else 256 if hexlevel < 4 else fn.config.size)
            + "\n"
            for line, fn in zip(lines, _functions(bus), strict=True)
        )
    if hexlevel:
        return dump(bus, hexlevel, ids)
    return listing(bus, ids)
