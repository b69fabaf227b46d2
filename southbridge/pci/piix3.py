"""The PIIX3 PCI-to-ISA bridge (82371SB function 0) at 00:01.0, with PIRQ routing.

82371SB datasheet (290550-002), 2.2.9: PIRQRC[A:D] at 0x60-0x63. Bit 7 set disables the
route; bits 3:0 select the ISA IRQ, where 0-2, 8 and 13 are reserved (no route). Bits 6:4
are reserved and read 0. The INTx pins of the root bus's slots are swizzled onto PIRQA-D the
way QEMU's piix and SeaBIOS agree on, PIRQ = (pin + slot - 1) mod 4, so firmware's routing
tables match. Each PIRQ is a wired-OR of every INTx on it (level-triggered, shared) and
drives its IOAPIC GSI 16-19 plus the ISA IRQ its route register selects.
"""

from __future__ import annotations

from collections.abc import Callable

from southbridge.core.irq import IrqLine, SharedLine, Sink
from southbridge.pci.config import HEADER_MULTIFUNCTION, HEADER_TYPE
from southbridge.pci.function import PciFunction

VENDOR_INTEL = 0x8086
DEVICE_82371SB_ISA = 0x7000

PIRQRC = 0x60
ROUTE_DISABLED = 0x80
INVALID_IRQS = frozenset({0, 1, 2, 8, 13})

# (offset, power-on value, writable mask) of other function-0 registers (datasheet 2.2;
# the values QEMU's piix_reset loads).
_PLAIN_REGS = (
    (0x4C, 0x4D, 0xFF),  # IORT
    (0x4E, 0x03, 0xFF),  # XBCS
    (0x4F, 0x00, 0x00),
    (0x69, 0x02, 0xFE),  # TOM
    (0x6A, 0x00, 0xFF),  # MSTAT (16 bits)
    (0x6B, 0x00, 0xFF),
    (0x70, 0x80, 0xEF),  # MBIRQ0
    (0x76, 0x0C, 0x8F),  # MBDMA0
    (0x77, 0x0C, 0x8F),  # MBDMA1
    (0x78, 0x02, 0xFF),  # PCSC (16 bits)
    (0x79, 0x00, 0xFF),
    (0x80, 0x00, 0x7F),  # APICBASE
    (0x82, 0x00, 0x07),  # DLC
    (0xA0, 0x08, 0x1B),  # SMICNTL
    (0xA2, 0x00, 0xFF),  # SMIEN (16 bits)
    (0xA3, 0x00, 0x01),
    (0xA8, 0x0F, 0xFF),  # SEE
    (0xAC, 0x00, 0xFF),  # FTMR
    (0xAE, 0x00, 0xFF),  # CTLTMRL
)

IsaLineFactory = Callable[[int, str], IrqLine]  # (ISA IRQ, name) -> a new input line


def pirq_of(slot: int, pin: int) -> int:
    """PIRQ (0=A) a root-bus slot's pin (0=INTA#) lands on."""
    return (pin + slot - 1) & 3


class Piix3(PciFunction):
    """82371SB function 0: 8086:7000, ISA bridge class 0601, multi-function."""

    STATE_KIND = "piix3"

    def __init__(self) -> None:
        super().__init__(VENDOR_INTEL, DEVICE_82371SB_ISA, 0x060100, name="piix3")
        cs = self.config
        cs.set(0x04, 2, 0x0007)  # I/O, memory and master always on
        cs.set_wmask(0x04, 2, 0x0008)  # special cycle enable
        cs.set(0x06, 2, 0x0200)
        cs.set_wmask(0x0D, 1, 0)
        cs.set_wmask(0x3C, 1, 0)
        cs.set(HEADER_TYPE, 1, HEADER_MULTIFUNCTION)  # IDE, USB are functions 1 and 2
        for off, default, mask in _PLAIN_REGS:
            cs.set(off, 1, default)
            cs.set_wmask(off, 1, mask)
        for n in range(4):
            cs.set(PIRQRC + n, 1, ROUTE_DISABLED)
            cs.set_wmask(PIRQRC + n, 1, 0x8F)
        # Per-PIRQ wired-OR of the INTx inputs; `pirq[n]` is its level.
        self.pirq = [IrqLine(f"pirq{'ABCD'[n]}") for n in range(4)]
        self._or = [SharedLine(line) for line in self.pirq]
        self._isa_factory: IsaLineFactory | None = None
        self._isa_lines: dict[tuple[int, int], IrqLine] = {}
        self._driven: list[int | None] = [None] * 4
        for n in range(4):
            self.pirq[n].connect(self._pirq_sink(n))

    def _pirq_sink(self, n: int) -> Sink:
        def changed(level: bool) -> None:
            self._route(n)

        return changed

    # -- INTx in ------------------------------------------------------------------------
    def intx_input(self, slot: int, pin: int, source: object) -> Sink:
        """The `IntxRouter` of the root bus: `source`'s own input on its PIRQ."""
        return self._or[pirq_of(slot, pin)].input(source)

    # -- PIRQ out -----------------------------------------------------------------------
    def connect_isa(self, factory: IsaLineFactory) -> None:
        """Drive ISA IRQs through lines made by `factory` (one per PIRQ/IRQ pair, so two
        PIRQs routed to one IRQ and an ISA device there share it as a wired-OR)."""
        self._isa_factory = factory
        for n in range(4):
            self._route(n)

    def route(self, n: int) -> int | None:
        """The ISA IRQ PIRQ n is routed to, or None (disabled or a reserved IRQ)."""
        v = self.config.get(PIRQRC + n, 1)
        if v & ROUTE_DISABLED:
            return None
        irq = v & 0x0F
        return None if irq in INVALID_IRQS else irq

    def _route(self, n: int) -> None:
        if self._isa_factory is None:
            return
        want = self.route(n)
        old = self._driven[n]
        if old is not None and old != want:
            self._isa_lines[(n, old)].lower()  # release the old IRQ first
        self._driven[n] = want
        if want is None:
            return
        line = self._isa_lines.get((n, want))
        if line is None:
            line = self._isa_factory(want, f"pirq{'ABCD'[n]}-irq{want}")
            self._isa_lines[(n, want)] = line
        line.set(self.pirq[n].level)

    def on_config_write(self, offset: int, size: int) -> None:
        for n in range(4):
            if offset <= PIRQRC + n < offset + size:
                v = self.config.get(PIRQRC + n, 1)
                if not v & ROUTE_DISABLED and (v & 0x0F) in INVALID_IRQS:
                    self.log.warning(
                        "pirq-reserved",
                        "piix3: PIRQ%s routed to reserved IRQ %d; ignored",
                        "ABCD"[n],
                        v & 0x0F,
                    )
                self._route(n)

    def restore_device(self, state: dict[str, object]) -> None:
        for n in range(4):
            self._route(n)

    def reset_device(self) -> None:
        for n in range(4):
            self._route(n)
