"""The APIC bus: interrupt messages from IOAPICs, MSIs and IPIs to the set of local APICs.

A message names its destinations the way the Intel SDM vol. 3 section 10.6.2 describes:
physical (an APIC ID; 0xFF, or 0xFFFFFFFF in x2APIC format, is a broadcast), logical (each
local APIC matches against its LDR in its own flat or cluster model, section 10.6.2.2), or a
shorthand (self, all including self, all excluding self). Lowest-priority messages go to one
APIC of the destination set: the focus processor when focus checking is on and some APIC
already has the vector pending or in service (10.6.2.4), otherwise the APIC with the lowest
arbitration priority, ties broken by the lowest APIC ID so delivery is deterministic.

The bus also carries the EOI messages a local APIC broadcasts for level-triggered vectors;
IOAPICs subscribe with `on_eoi`. Delivery is synchronous: when `deliver` returns, every
addressed APIC has its IRR (or its pending NMI/INIT/SIPI) updated, so the ICR and IOAPIC
delivery-status bits are always "idle".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from southbridge.core.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from southbridge.devices.lapic import LocalApic

logger = logging.getLogger("southbridge.apicbus")

# Delivery modes (SDM 10.6.1, ICR bits 10:8; the same encoding in IOAPIC entries and MSI data).
DM_FIXED = 0
DM_LOWEST = 1
DM_SMI = 2
DM_REMOTE_READ = 3  # reserved on every APIC since the Pentium 4
DM_NMI = 4
DM_INIT = 5
DM_SIPI = 6
DM_EXTINT = 7

# Destination shorthands (ICR bits 19:18).
SH_NONE = 0
SH_SELF = 1
SH_ALL = 2
SH_OTHERS = 3

XAPIC_BROADCAST = 0xFF
X2APIC_BROADCAST = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ApicMessage:
    """One interrupt message on the APIC bus.

    `x2apic` says the destination is in x2APIC format (32 bits, from an x2APIC-mode ICR);
    otherwise it is the 8-bit xAPIC format used by IOAPICs, MSIs and xAPIC ICRs. `assert_`
    is the ICR/MSI level bit: only a level-triggered INIT with it clear differs (the INIT
    level de-assert, SDM 10.6.1), and ExtINT uses it for the PIC's INTR level.
    """

    vector: int
    delivery_mode: int = DM_FIXED
    dest: int = 0
    logical: bool = False
    level_triggered: bool = False
    assert_: bool = True
    shorthand: int = SH_NONE
    x2apic: bool = False


class ApicBus:
    """The local APICs of one machine, and EOI listeners (IOAPICs)."""

    def __init__(self, log: RateLimitedLog | None = None) -> None:
        self.log = log if log is not None else RateLimitedLog(logger)
        self.lapics: list[LocalApic] = []
        self._eoi_listeners: list[Callable[[int], None]] = []
        self._ack_listeners: list[Callable[[int], None]] = []
        self.delivered = 0  # messages accepted by at least one APIC (statistics)

    def attach(self, lapic: LocalApic) -> None:
        if lapic not in self.lapics:
            self.lapics.append(lapic)

    def on_eoi(self, listener: Callable[[int], None]) -> None:
        """Call `listener(vector)` for every EOI message a local APIC broadcasts."""
        self._eoi_listeners.append(listener)

    def broadcast_eoi(self, vector: int) -> None:
        for listener in self._eoi_listeners:
            listener(vector)

    def on_ack(self, listener: Callable[[int], None]) -> None:
        """Call `listener(vector)` for every EOI a local APIC takes, edge vectors included:
        no bus message, only the acknowledge notification that paces reinjected timer
        ticks (KVM's kvm_ioapic_update_eoi notifies ack listeners for edge pins too)."""
        self._ack_listeners.append(listener)

    def notify_ack(self, vector: int) -> None:
        for listener in list(self._ack_listeners):
            listener(vector)

    def by_id(self, apic_id: int) -> LocalApic | None:
        for lapic in self.lapics:
            if lapic.apic_id == apic_id:
                return lapic
        return None

    # -- addressing ----------------------------------------------------------------------
    def destinations(self, msg: ApicMessage, source: LocalApic | None = None) -> list[LocalApic]:
        """The APICs a message addresses (hardware-disabled APICs hear nothing)."""
        live = [a for a in self.lapics if a.hw_enabled]
        sh = msg.shorthand
        if sh == SH_SELF:
            return [source] if source is not None and source.hw_enabled else []
        if sh == SH_ALL:
            return live
        if sh == SH_OTHERS:
            return [a for a in live if a is not source]
        if msg.logical:
            return [a for a in live if a.matches_logical(msg.dest, msg.x2apic)]
        return [a for a in live if a.matches_physical(msg.dest, msg.x2apic)]

    def _lowest_priority(self, targets: list[LocalApic], vector: int) -> LocalApic | None:
        # Only software-enabled APICs accept fixed/lowest-priority interrupts.
        candidates = [a for a in targets if a.sw_enabled]
        if not candidates:
            return None
        for a in candidates:
            # SDM 10.6.2.4: the focus processor (vector already pending or in service) wins
            # when focus checking is enabled (SVR bit 9 clear).
            if a.focus_checking and a.has_vector(vector):
                return a
        return min(candidates, key=lambda a: (a.arbitration_priority(), a.apic_id))

    # -- delivery ------------------------------------------------------------------------
    def deliver(self, msg: ApicMessage, source: LocalApic | None = None) -> list[LocalApic]:
        """Deliver `msg`; returns the APICs that accepted it."""
        if msg.delivery_mode == DM_INIT and msg.level_triggered and not msg.assert_:
            # INIT level de-assert: an arbitration-ID resynchronisation on every APIC; our
            # arbitration uses the APIC IDs, so nothing changes and nothing is delivered.
            return []
        targets = self.destinations(msg, source)
        if msg.delivery_mode == DM_LOWEST and targets:
            chosen = self._lowest_priority(targets, msg.vector)
            targets = [] if chosen is None else [chosen]
        accepted = [a for a in targets if a.receive(msg)]
        if accepted:
            self.delivered += 1
        elif not targets:
            self.log.debug(
                f"nodest:{msg.dest:x}",
                "APIC bus: message vector 0x%02x mode %d to %s 0x%x reached no APIC",
                msg.vector,
                msg.delivery_mode,
                "logical" if msg.logical else "physical",
                msg.dest,
            )
        return accepted
