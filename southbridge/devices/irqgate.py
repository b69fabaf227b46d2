"""A switch in an interrupt wire: what the HPET's legacy replacement route does to the PIT's
IRQ0 and the RTC's IRQ8 outputs (they stop reaching the interrupt controllers while the HPET
owns those IRQs, and come back with their current level when it lets go)."""

from __future__ import annotations

from southbridge.core.irq import IrqLine


class IrqGate:
    """The source drives `input`; `out` follows it while the gate is open. Acknowledges of
    `out` reach the source only while open: a closed gate's source never sees its requests
    taken (they never arrived), so a reinjecting timer does not pace on another device's."""

    __slots__ = ("input", "is_open", "out")

    def __init__(self, out: IrqLine, name: str = "") -> None:
        self.out = out
        self.input = IrqLine(name or f"{out.name}-gated")
        self.is_open = True
        self.input.connect(self._follow)
        out.on_ack(self._ack)

    def _follow(self, level: bool) -> None:
        if self.is_open:
            self.out.set(level)

    def _ack(self) -> None:
        if self.is_open:
            self.input.ack()

    def set_open(self, is_open: bool) -> None:
        self.is_open = bool(is_open)
        self.out.set(self.input.level and self.is_open)

    def set_closed(self, closed: bool) -> None:
        """`set_open`'s opposite, for a listener told whether the HPET took the IRQ."""
        self.set_open(not closed)
