"""How a device asks for the run to end: the kinds of request and the callback's type.

Devices get the callback (the machine's `request`) when they are built; the runner turns
the request into the run's end (`kvm.runend.RunEnd`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeAlias

# exit: isa-debug-exit (with a status); reset: 0xCF9, port 0x92, the i8042 pulse;
# poweroff: the chipset's soft-off.
RequestKind: TypeAlias = Literal["exit", "reset", "poweroff"]
Request: TypeAlias = Callable[[RequestKind, int], None]
