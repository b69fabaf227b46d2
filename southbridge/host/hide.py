"""The `hide=` list: host PCI devices kept from the privileged domain for user domains.

Accepts the original boot option form (`hide=02:01.0`), Xen pciback's list form
(`(02:01.0)(0000:03:00.1)`), and commas or spaces between entries; the `hide=` prefix and the
domain are optional. Duplicates are merged, order of first appearance kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from southbridge.host.pciaddr import PciAddress, PciAddressError


class HideError(ValueError):
    """A malformed hide= value; the message is one line naming the bad part."""


_PAREN = re.compile(r"\(([^()]*)\)")


def _entries(spec: str) -> list[str]:
    text = spec.strip()
    if text.startswith("hide="):
        text = text[5:]
    if "(" in text or ")" in text:
        pos = 0
        found: list[str] = []
        for m in _PAREN.finditer(text):
            gap = text[pos : m.start()].strip(" ,")
            if gap:
                raise HideError(f"hide: unexpected '{gap}' outside parentheses in '{spec}'")
            found.append(m.group(1))
            pos = m.end()
        rest = text[pos:].strip(" ,")
        if rest:
            raise HideError(f"hide: unbalanced or stray '{rest}' in '{spec}'")
        return found
    return [e for e in re.split(r"[,\s]+", text) if e]


def parse_hide(specs: str | Iterable[str]) -> list[PciAddress]:
    """Parse one or more hide= values into unique addresses (first appearance order)."""
    if isinstance(specs, str):
        specs = [specs]
    out: list[PciAddress] = []
    for spec in specs:
        for entry in _entries(spec):
            try:
                addr = PciAddress.parse(entry)
            except PciAddressError as e:
                raise HideError(f"hide: {e}") from None
            if addr not in out:
                out.append(addr)
    return out
