"""i440FX host bridge, PIIX3 PIRQ routing and INTx on the pc machine."""

from __future__ import annotations

import pytest

from southbridge.core.clock import ManualClock
from southbridge.machine.pc import PcMachine
from southbridge.pci.bridge import PciBridge
from southbridge.pci.config import CMD_INTX_DISABLE
from southbridge.pci.demo import DemoDevice
from southbridge.pci.function import PciFunction
from southbridge.pci.i440fx import PAM0, SMRAM
from southbridge.pci.piix3 import INVALID_IRQS, PIRQRC, pirq_of


def machine() -> PcMachine:
    return PcMachine(clock=ManualClock())


def intx_fn(name: str, pin: int = 1) -> PciFunction:
    fn = PciFunction(0x5342, 0x00F2, 0xFF0000, name=name)
    fn.set_interrupt_pin(pin)
    return fn


# -- i440FX -----------------------------------------------------------------------------------
def test_i440fx_identity() -> None:
    m = machine()
    cs = m.i440fx.config
    assert cs.get(0, 4) == 0x12378086 and cs.get(8, 4) == 0x06000002
    assert m.i440fx.address() == "00:00.0" and m.piix3.address() == "00:01.0"


def test_pam_registers_stored_masked_and_reported() -> None:
    """82441FX 3.2.18: PAM0 has only the high nibble (0xF0000 segment); PAM1-6 two
    segments of RE/WE bits (1:0, 5:4); reserved bits read 0."""
    m = machine()
    seen: list[tuple[int, int]] = []
    m.i440fx.on_pam.append(lambda i, v: seen.append((i, v)))
    m.i440fx.config_write(PAM0, 4, 0xFFFFFFFF)  # PAM0-PAM3 (0x59-0x5C)
    assert [m.i440fx.pam(i) for i in range(4)] == [0x30, 0x33, 0x33, 0x33]
    assert seen == [(0, 0x30), (1, 0x33), (2, 0x33), (3, 0x33)]
    m.i440fx.config_write(PAM0 + 6, 1, 0x11)
    assert m.i440fx.pam(6) == 0x11 and seen[-1] == (6, 0x11)


def test_smram_lock() -> None:
    """82441FX 3.2.27: C_BASE_SEG is 010 (0xA0000) read-only; setting D_LCK clears D_OPEN
    and makes D_OPEN, G_SMRAME and D_LCK read-only until reset; D_CLS stays writable."""
    m = machine()
    fx = m.i440fx
    events: list[int] = []
    fx.on_smram.append(events.append)
    assert fx.smram == 0x02
    fx.config_write(SMRAM, 1, 0xFF)
    assert fx.smram == 0x3A  # D_CLS|D_LCK|G_SMRAME|C_BASE_SEG: D_LCK cleared D_OPEN
    assert fx.smram_locked
    fx.config_write(SMRAM, 1, 0x40)  # try to open: refused; D_LCK stays
    assert fx.smram == 0x1A
    fx.config_write(SMRAM, 1, 0x00)
    assert fx.smram == 0x1A
    assert events[-1] == 0x1A


def test_host_bridge_command_bits_fixed() -> None:
    m = machine()
    m.i440fx.config_write(0x04, 2, 0)
    assert m.i440fx.command == 0x0006


# -- PIRQ routing -------------------------------------------------------------------------------
def test_pirq_route_defaults_and_masks() -> None:
    """82371SB 2.2.9: PIRQRC defaults 0x80 (disabled); bits 6:4 reserved, read 0."""
    m = machine()
    for n in range(4):
        assert m.piix3.config.get(PIRQRC + n, 1) == 0x80
        m.piix3.config_write(PIRQRC + n, 1, 0xFF)
        assert m.piix3.config.get(PIRQRC + n, 1) == 0x8F


@pytest.mark.parametrize("irq", range(16))
def test_pirq_route_valid_irqs(irq: int) -> None:
    """82371SB 2.2.9: routing values 0-2, 8 and 13 are reserved: the PIRQ reaches no ISA
    IRQ; every other value drives exactly that IRQ, level-triggered, while INTx is held."""
    m = machine()
    pirq = pirq_of(2, 0)
    assert pirq == 1  # slot 2 INTA# lands on PIRQB (QEMU/SeaBIOS swizzle)
    m.piix3.config_write(PIRQRC + pirq, 1, irq)
    before = {n for n in range(16) if m.gsi.line(n).level}  # e.g. the PIT's OUT0
    m.demo.raise_irq(1)
    assert m.gsi.line(16 + pirq).level
    driven = {n for n in range(16) if m.gsi.line(n).level} - before
    if irq in INVALID_IRQS:
        assert m.piix3.route(pirq) is None and driven == set()
    else:
        assert m.piix3.route(pirq) == irq and driven == {irq}
    m.demo.ack_irq(1)
    assert {n for n in range(20) if m.gsi.line(n).level} == before


def test_route_change_moves_a_held_level_and_disable_lowers_it() -> None:
    m = machine()
    pirq = pirq_of(2, 0)
    m.piix3.config_write(PIRQRC + pirq, 1, 10)
    m.demo.raise_irq(1)
    assert m.gsi.line(10).level and m.gsi.line(17).level
    m.piix3.config_write(PIRQRC + pirq, 1, 11)
    assert not m.gsi.line(10).level and m.gsi.line(11).level
    m.piix3.config_write(PIRQRC + pirq, 1, 0x8B)
    assert not m.gsi.line(11).level
    assert m.gsi.line(17).level  # the IOAPIC input does not depend on the route register


def test_intx_swizzle_by_slot_and_pin() -> None:
    """Root bus: PIRQ = (pin + slot - 1) mod 4 (QEMU piix, SeaBIOS pci_slot_get_pirq)."""
    m = machine()
    for slot, pin, pirq in [(3, 0, 2), (3, 1, 3), (4, 0, 3), (5, 0, 0), (5, 3, 3), (6, 2, 3)]:
        fn = intx_fn(f"s{slot}p{pin}", pin + 1)
        devfn = m.pci_bus.add(fn, slot, pin) if (slot << 3 | pin) not in m.pci_bus.functions else 0
        assert devfn == slot << 3 | pin
        fn.set_intx(True)
        assert m.gsi.line(16 + pirq).level, (slot, pin)
        fn.set_intx(False)
        assert not m.gsi.line(16 + pirq).level


def test_intx_swizzle_behind_a_bridge() -> None:
    """PCI-to-PCI Bridge 1.2, 9.1: device d pin p behind a bridge asserts the bridge's pin
    (p + d) mod 4; then the root-bus rule applies at the bridge's slot."""
    m = machine()
    br = PciBridge()
    m.pci_bus.add(br, 6)
    fn = intx_fn("behind", pin=2)  # INTB#
    br.add(fn, 3)
    bridge_pin = (1 + 3) % 4
    pirq = pirq_of(6, bridge_pin)
    fn.set_intx(True)
    assert m.gsi.line(16 + pirq).level
    fn.set_intx(False)
    assert not m.gsi.line(16 + pirq).level


def test_shared_level_interrupts_wired_or() -> None:
    """Two functions on one PIRQ: the line stays high until both deassert."""
    m = machine()
    a, b = intx_fn("a"), intx_fn("b")
    m.pci_bus.add(a, 6)  # (0 + 6 - 1) & 3 = PIRQB
    m.pci_bus.add(b, 10)  # (0 + 10 - 1) & 3 = PIRQB
    m.piix3.config_write(PIRQRC + 1, 1, 11)
    a.set_intx(True)
    b.set_intx(True)
    a.set_intx(False)
    assert m.gsi.line(17).level and m.gsi.line(11).level
    b.set_intx(False)
    assert not m.gsi.line(17).level and not m.gsi.line(11).level


def test_two_pirqs_on_one_irq_share_it() -> None:
    m = machine()
    a, b = intx_fn("a"), intx_fn("b")
    m.pci_bus.add(a, 5)  # PIRQA
    m.pci_bus.add(b, 7)  # PIRQC
    m.piix3.config_write(PIRQRC, 4, 0x800B800B)  # A and C on IRQ 11
    a.set_intx(True)
    b.set_intx(True)
    a.set_intx(False)
    assert m.gsi.line(11).level
    b.set_intx(False)
    assert not m.gsi.line(11).level


def test_interrupt_disable_masks_the_pin_not_the_status() -> None:
    """PCI 3.0, 6.2.2: Interrupt Disable stops INTx assertion; status bit 3 still shows it."""
    m = machine()
    fn = intx_fn("x")
    m.pci_bus.add(fn, 5)
    fn.set_intx(True)
    assert m.gsi.line(16).level
    fn.config_write(0x04, 2, CMD_INTX_DISABLE)
    assert not m.gsi.line(16).level
    assert fn.config.get(0x06, 2) & 0x8
    fn.config_write(0x04, 2, 0)
    assert m.gsi.line(16).level


def test_bus_state_round_trip_keeps_routing() -> None:
    m = machine()
    m.piix3.config_write(PIRQRC + 1, 1, 10)
    m.demo.raise_irq(1)
    state = m.pci_bus.save()
    m2 = machine()
    m2.pci_bus.restore(state)
    assert m2.pci_bus.save() == state
    assert m2.gsi.line(10).level and m2.gsi.line(17).level


def test_demo_device_at_slot_2_on_pc() -> None:
    m = machine()
    assert isinstance(m.demo, DemoDevice) and m.demo.address() == "00:02.0"


def test_platform_reset_returns_power_on_state() -> None:
    """RST#: configuration registers return to their defaults, decoding and interrupts off;
    i440FX PAM/SMRAM (D_LCK too) reset and are reported to the machine."""
    m = machine()
    power_on = {fn.name: bytes(fn.config.data) for fn in m.pci_bus.walk()}
    pams: list[tuple[int, int]] = []
    m.i440fx.on_pam.append(lambda i, v: pams.append((i, v)))
    m.i440fx.config_write(PAM0, 1, 0x30)
    m.i440fx.config_write(SMRAM, 1, 0x10)
    m.piix3.config_write(PIRQRC + 1, 1, 10)
    m.demo.config_write(0x10, 4, 0xFEBF0000)
    m.demo.config_write(0x04, 2, 0x7)
    m.demo.raise_irq(1)
    assert m.gsi.line(10).level and m.pci_bus.mapped()
    m.pci_bus.reset()
    m.pci_host.reset()
    assert {fn.name: bytes(fn.config.data) for fn in m.pci_bus.walk()} == power_on
    assert not m.gsi.line(10).level and not m.gsi.line(17).level
    assert m.pci_bus.mapped() == {} and m.demo.int_status == 0
    assert pams[-7:] == [(i, 0) for i in range(7)] and not m.i440fx.smram_locked


def test_secondary_bus_reset_resets_only_the_functions_below() -> None:
    """PCI-to-PCI Bridge 1.2, 3.2.5.18: Secondary Bus Reset forces RST# on the secondary."""
    m = machine()
    br = PciBridge()
    m.pci_bus.add(br, 6)
    below = DemoDevice(name="below")
    br.add(below, 0)
    below.config_write(0x3C, 1, 9)
    m.demo.config_write(0x3C, 1, 9)
    br.config_write(0x18, 4, 0x010100)
    br.config_write(0x3E, 2, 0x40)
    assert below.config.get(0x3C, 1) == 0 and m.demo.config.get(0x3C, 1) == 9
    assert br.secondary_bus == 1  # the bridge itself keeps its configuration
