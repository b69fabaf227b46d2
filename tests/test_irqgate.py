"""IrqGate: the switch the HPET's legacy replacement route puts in the PIT's and the RTC's
interrupt wires (devices/irqgate.py)."""

from __future__ import annotations

from southbridge.core.irq import IrqLine
from southbridge.devices.irqgate import IrqGate


def test_closed_gate_drops_the_output_and_reopening_restores_the_level() -> None:
    out = IrqLine("gsi8")
    gate = IrqGate(out, "rtc")
    gate.input.set(True)
    assert out.level
    gate.set_closed(True)
    assert not out.level
    gate.input.set(False)
    gate.input.set(True)  # edges while closed go nowhere
    assert not out.level
    gate.set_open(True)
    assert out.level  # the source's current level, as QEMU's rtc_irq_level


def test_acknowledges_reach_the_source_only_while_open() -> None:
    out = IrqLine("gsi0")
    gate = IrqGate(out, "pit")
    acks: list[int] = []
    gate.input.on_ack(lambda: acks.append(1))
    out.ack()
    gate.set_closed(True)
    out.ack()  # another device's request on the GSI was taken, not the PIT's
    assert acks == [1]
