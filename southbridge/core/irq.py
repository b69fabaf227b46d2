"""Interrupt lines and GSI routing.

An `IrqLine` is a wire: a device drives its level, sinks hear every change. Edge-triggered
consumers (PIC pins in edge mode, IOAPIC edge pins) act on the rising transition; level
consumers on the level. A `GsiRouter` owns the platform's global system interrupt lines and
fans each out to every controller wired to it (a PIC pin and an IOAPIC pin on a PC), so
interrupt controllers plug in without devices changing.

Acknowledge notifications run the other way: a controller that takes a request into service
(the 8259's INTA, a local APIC's EOI of a vector an IOAPIC pin sent) calls `GsiRouter.ack`,
and every device input line of that GSI tells its `on_ack` listeners, like KVM's irq ack
notifiers (virt/kvm/eventfd.c, kvm_notify_acked_irq). A timer that reinjects missed ticks
paces them on it, so no edge lands on a request still pending and merges with it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

Sink = Callable[[bool], None]


class IrqLine:
    """A wire with a level; sinks are told about every change of level."""

    __slots__ = ("_acks", "_sinks", "level", "name")

    def __init__(self, name: str = "", sink: Sink | None = None) -> None:
        self.name = name
        self.level = False
        self._sinks: list[Sink] = [] if sink is None else [sink]
        self._acks: list[Callable[[], None]] = []

    def on_ack(self, listener: Callable[[], None]) -> None:
        """Call `listener()` each time an interrupt controller acknowledges this line."""
        self._acks.append(listener)

    def ack(self) -> None:
        """A controller took this line's request into service (INTA, or EOI of its vector)."""
        for fn in list(self._acks):
            fn()

    def connect(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def disconnect(self, sink: Sink) -> None:
        self._sinks.remove(sink)

    def set(self, level: bool) -> None:
        level = bool(level)
        if level == self.level:
            return
        self.level = level
        for sink in self._sinks:
            sink(level)

    def raise_(self) -> None:
        self.set(True)

    def lower(self) -> None:
        self.set(False)

    def pulse(self) -> None:
        """A rising then falling edge (an edge-triggered request that leaves the line low)."""
        self.set(True)
        self.set(False)

    def __repr__(self) -> str:
        return f"IrqLine({self.name!r}, {'high' if self.level else 'low'})"


class EdgeDetector:
    """Turns a level sink into a rising-edge callback: `on_edge()` runs on each 0->1."""

    __slots__ = ("_last", "on_edge")

    def __init__(self, on_edge: Callable[[], None]) -> None:
        self.on_edge = on_edge
        self._last = False

    def __call__(self, level: bool) -> None:
        if level and not self._last:
            self.on_edge()
        self._last = level


class SharedLine:
    """A wired-OR of several sources onto one line (PCI INTx sharing a PIRQ).

    Each source drives its own input; the output is high while any input is high, so one
    device lowering its request never drops another's.
    """

    def __init__(self, out: IrqLine) -> None:
        self.out = out
        self._high: set[object] = set()

    def input(self, source: object) -> Sink:
        def drive(level: bool) -> None:
            if level:
                self._high.add(source)
            else:
                self._high.discard(source)
            self.out.set(bool(self._high))

        return drive


class GsiRouter:
    """The platform's global system interrupts.

    Every GSI is a wired-OR: each device gets its own input line from `input()`, and the GSI's
    output `line(n)` is high while any input is high (ISA IRQ sharing with a PCI PIRQ, several
    INTx on one PIRQ). Interrupt controllers `connect` to the output, so one GSI fans out to a
    PIC pin and an IOAPIC pin without devices knowing who listens.
    """

    def __init__(self, count: int = 24) -> None:
        self.lines = [IrqLine(f"gsi{n}") for n in range(count)]
        self._or = [SharedLine(line) for line in self.lines]
        self._inputs: list[list[IrqLine]] = [[] for _ in range(count)]
        for n, line in enumerate(self.lines):
            line.on_ack(partial(self.ack, n))  # acknowledging the output reaches inputs

    def __len__(self) -> int:
        return len(self.lines)

    def _check(self, gsi: int) -> None:
        if not 0 <= gsi < len(self.lines):
            raise ValueError(f"GSI {gsi} out of range 0-{len(self.lines) - 1}")

    def input(self, gsi: int, name: str = "") -> IrqLine:
        """A new line for one device to drive GSI `gsi` (OR-ed with the GSI's other inputs)."""
        self._check(gsi)
        src = IrqLine(name or f"gsi{gsi}-input")
        src.connect(self._or[gsi].input(src))
        self._inputs[gsi].append(src)
        return src

    def ack(self, gsi: int) -> None:
        """A controller acknowledged GSI `gsi`: every device input of it hears `ack()`.
        Out-of-range numbers are ignored (a controller pin no GSI drives)."""
        if 0 <= gsi < len(self.lines):
            for src in self._inputs[gsi]:
                src.ack()

    def line(self, gsi: int) -> IrqLine:
        """The GSI's output line, as interrupt controllers see it."""
        self._check(gsi)
        return self.lines[gsi]

    def connect(self, gsi: int, sink: Sink) -> None:
        """Wire an interrupt controller input (a PIC pin, an IOAPIC pin) to GSI `gsi`."""
        self.line(gsi).connect(sink)


class TickOrder:
    """Reinjecting timers of one machine deliver their owed ticks oldest first.

    A guest that cannot keep up with its timer interrupts (a busy host, a slow handler) owes
    ticks to several timers at once. Each may deliver only while no other owes a tick due
    earlier, so the guest sees one consistent timeline: an RTC update-ended interrupt comes
    after every PIT tick due before it and before every one due after it. A source tells
    `owe` the due instant of its oldest owed tick, or None when it owes nothing or is not
    being serviced (`serviced`: acknowledged at least twice since it was programmed, the
    last time within `STALE_NS`; a lone acknowledge such as ICW1 dropping a request is no
    service), so a timer whose interrupt the guest masks or ignores never stops the others;
    it asks `first` before delivering. When a source's oldest due moves on, the
    others' `retry` runs (each only arms its own timer, so no device re-enters another).
    """

    STALE_NS = 1_000_000_000

    def __init__(self) -> None:
        self._due: dict[int, int] = {}
        self._retry: dict[int, Callable[[], None]] = {}

    def join(self, retry: Callable[[], None]) -> int:
        token = len(self._retry)
        self._retry[token] = retry
        return token

    @classmethod
    def serviced(cls, acks: int, acked_at: int, now: int) -> bool:
        return acks >= 2 and now - acked_at < cls.STALE_NS

    def owe(self, token: int, due: int | None) -> None:
        old = self._due.get(token)
        if due is None:
            self._due.pop(token, None)
        else:
            self._due[token] = due
        if old is not None and (due is None or due > old):
            for other, retry in self._retry.items():
                if other != token:
                    retry()

    def first(self, token: int, due: int) -> bool:
        """Whether the source may deliver a tick due at `due` now."""
        return all(d >= due for t, d in self._due.items() if t != token)
