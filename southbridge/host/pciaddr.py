"""PCI addresses (domain:bus:device.function) as written by lspci, Xen and sysfs."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ADDR = re.compile(
    r"^(?:(?P<dom>[0-9a-fA-F]{1,4}):)?(?P<bus>[0-9a-fA-F]{1,2}):(?P<dev>[0-9a-fA-F]{1,2})"
    r"\.(?P<fn>[0-9a-fA-F])$"
)


class PciAddressError(ValueError):
    pass


@dataclass(frozen=True, order=True)
class PciAddress:
    domain: int
    bus: int
    device: int
    function: int

    def __post_init__(self) -> None:
        if not 0 <= self.domain <= 0xFFFF:
            raise PciAddressError(f"PCI domain {self.domain:#x} out of range 0-ffff")
        if not 0 <= self.bus <= 0xFF:
            raise PciAddressError(f"PCI bus {self.bus:#x} out of range 0-ff")
        if not 0 <= self.device <= 0x1F:
            raise PciAddressError(f"PCI device {self.device:#x} out of range 0-1f")
        if not 0 <= self.function <= 7:
            raise PciAddressError(f"PCI function {self.function} out of range 0-7")

    @classmethod
    def parse(cls, text: str) -> PciAddress:
        """Parse "02:01.0" or "0000:02:01.0" (hex fields, domain optional)."""
        m = _ADDR.match(text.strip())
        if m is None:
            raise PciAddressError(
                f"malformed PCI address '{text}' (expected [dddd:]bb:dd.f, hexadecimal)"
            )
        return cls(int(m["dom"] or "0", 16), int(m["bus"], 16), int(m["dev"], 16), int(m["fn"], 16))

    @property
    def devfn(self) -> int:
        return (self.device << 3) | self.function

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.device:02x}.{self.function:x}"

    def short(self) -> str:
        """lspci's form: the domain only when it is not 0."""
        s = f"{self.bus:02x}:{self.device:02x}.{self.function:x}"
        return s if self.domain == 0 else f"{self.domain:04x}:{s}"
