"""Names from the pci.ids database the system ships (pciutils / hwdata), as lspci prints them."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

SEARCH = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")


@dataclass
class PciIds:
    vendors: dict[int, str] = field(default_factory=dict)
    devices: dict[tuple[int, int], str] = field(default_factory=dict)
    classes: dict[int, str] = field(default_factory=dict)  # base class
    subclasses: dict[tuple[int, int], str] = field(default_factory=dict)

    def vendor_name(self, vendor: int) -> str:
        return self.vendors.get(vendor, f"Device {vendor:04x}")

    def device_name(self, vendor: int, device: int) -> str:
        return self.devices.get((vendor, device), f"Device {device:04x}")

    def class_name(self, class_code: int) -> str:
        """lspci's class label: the subclass name, else the class name, else 'Class xxxx'."""
        base, sub = class_code >> 16, (class_code >> 8) & 0xFF
        return (
            self.subclasses.get((base, sub))
            or self.classes.get(base)
            or f"Class {base:02x}{sub:02x}"
        )


def parse_pci_ids(text: str) -> PciIds:
    ids = PciIds()
    vendor: int | None = None
    cls: int | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        try:
            if line.startswith("C "):
                code, _, name = line[2:].partition("  ")
                cls, vendor = int(code, 16), None
                ids.classes[cls] = name.strip()
            elif line.startswith("\t\t"):
                continue  # subsystems and programming interfaces: not needed for -nn
            elif line.startswith("\t"):
                code, _, name = line[1:].partition("  ")
                if cls is not None:
                    ids.subclasses[(cls, int(code, 16))] = name.strip()
                elif vendor is not None:
                    ids.devices[(vendor, int(code, 16))] = name.strip()
            else:
                code, _, name = line.partition("  ")
                vendor, cls = int(code, 16), None
                ids.vendors[vendor] = name.strip()
        except ValueError:
            continue  # a line we do not understand never stops the listing
    return ids


@functools.cache
def system_pci_ids() -> PciIds:
    """The system's database, or an empty one (numeric names) when none is installed."""
    for path in SEARCH:
        try:
            return parse_pci_ids(Path(path).read_text(errors="replace"))
        except OSError:
            continue
    return PciIds()


def lspci_nn_line(
    addr: str, class_code: int, vendor: int, device: int, revision: int, ids: PciIds | None = None
) -> str:
    """One line as `lspci -nn` prints it."""
    ids = ids or system_pci_ids()
    base_sub = class_code >> 8
    # With -nn the numbers follow in brackets, so unknown names shrink to the word "Device".
    vname = ids.vendors.get(vendor)
    dname = ids.devices.get((vendor, device), "Device")
    names = f"{vname} {dname}" if vname else "Device"
    line = (
        f"{addr} {ids.class_name(class_code)} [{base_sub:04x}]: {names} [{vendor:04x}:{device:04x}]"
    )
    if revision:
        line += f" (rev {revision:02x})"
    return line
