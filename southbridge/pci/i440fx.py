"""The i440FX host bridge (82441FX PMC) at 00:00.0: identity, PAM and SMRAM registers.

Per the 82441FX datasheet (290549-001), section 3.2: PAM0-PAM6 (0x59-0x5F) hold read/write
enables for the BIOS and expansion-ROM segments below 1 MiB, and SMRAM (0x72) controls the
0xA0000 SMRAM window with D_LCK locking D_OPEN. The registers are stored and readable here;
the machine gives them effect through `on_pam` / `on_smram` listeners.
"""

from __future__ import annotations

from collections.abc import Callable

from southbridge.pci.config import ConfigSpace
from southbridge.pci.function import PciFunction

VENDOR_INTEL = 0x8086
DEVICE_82441 = 0x1237

PAM0 = 0x59
PAM_COUNT = 7
SMRAM = 0x72
SMRAM_D_OPEN = 1 << 6
SMRAM_D_CLS = 1 << 5
SMRAM_D_LCK = 1 << 4
SMRAM_G_SMRAME = 1 << 3
SMRAM_C_BASE_SEG = 0x2  # 0xA0000, hardwired
SMRAM_WMASK = SMRAM_D_OPEN | SMRAM_D_CLS | SMRAM_D_LCK | SMRAM_G_SMRAME

PamListener = Callable[[int, int], None]  # (PAM register index 0-6, new value)
SmramListener = Callable[[int], None]  # new SMRAM value

# Other 82441FX registers firmware programs (PMCCFG, DETURBO, DBC, AXC, DRAMR, DRAMC, DRAMT,
# DRB0-7, FDHC, MTT, CLT, ERRCMD, TRC): stored so a BIOS reads back its writes, without
# effect on a virtual platform. They start at zero, as QEMU's i440FX presents them.
_PLAIN_REGS = (*range(0x50, 0x59), *range(0x60, 0x69), 0x70, 0x71, 0x90, 0x93)


class I440fx(PciFunction):
    """82441FX PMC: 8086:1237, revision 02, host bridge class 0600."""

    STATE_KIND = "i440fx"

    def __init__(self) -> None:
        super().__init__(VENDOR_INTEL, DEVICE_82441, 0x060000, revision=0x02, name="i440fx")
        cs: ConfigSpace = self.config
        # The host bridge is always a memory/I/O target and bus master: its decode bits
        # read back as set and stay so (datasheet 3.2.3 PCICMD: bits 1 and 2 hardwired).
        cs.set(0x04, 2, 0x0006)
        cs.set_wmask(0x04, 2, 0x0140)  # parity error and SERR# enables only
        cs.set_wmask(0x3C, 1, 0)  # no interrupt line
        cs.set(0x0D, 1, 0x00)
        for off in _PLAIN_REGS:
            cs.set_wmask(off, 1, 0xFF)
        cs.set_w1c(0x91, 1, 0x11)  # ERRSTS: multi-bit / single-bit error flags
        for i in range(PAM_COUNT):
            # PAM0 only has the 0xF0000 segment (high nibble); the others two segments.
            cs.set_wmask(PAM0 + i, 1, 0x30 if i == 0 else 0x33)
        cs.set(SMRAM, 1, SMRAM_C_BASE_SEG)
        cs.set_wmask(SMRAM, 1, SMRAM_WMASK)
        self.on_pam: list[PamListener] = []
        self.on_smram: list[SmramListener] = []

    def pam(self, index: int) -> int:
        return self.config.get(PAM0 + index, 1)

    @property
    def smram(self) -> int:
        return self.config.get(SMRAM, 1)

    @property
    def smram_locked(self) -> bool:
        return bool(self.smram & SMRAM_D_LCK)

    def filter_write(self, offset: int, size: int, value: int) -> int:
        pos = SMRAM - offset
        if not 0 <= pos < size:
            return value
        new = (value >> (8 * pos)) & 0xFF
        old = self.smram
        if old & SMRAM_D_LCK:
            # D_LCK: D_OPEN, G_SMRAME and D_LCK itself are read-only until reset.
            new = (new & SMRAM_D_CLS) | (old & ~SMRAM_D_CLS)
        elif new & SMRAM_D_LCK:
            new &= ~SMRAM_D_OPEN  # setting D_LCK clears D_OPEN
        return (value & ~(0xFF << (8 * pos))) | (new << (8 * pos))

    def on_config_write(self, offset: int, size: int) -> None:
        for i in range(PAM_COUNT):
            if offset <= PAM0 + i < offset + size:
                for listener in self.on_pam:
                    listener(i, self.pam(i))
        if offset <= SMRAM < offset + size:
            for smram_listener in self.on_smram:
                smram_listener(self.smram)

    def reset_device(self) -> None:
        # PAM and SMRAM (D_LCK included) return to defaults: tell the machine.
        for i in range(PAM_COUNT):
            for listener in self.on_pam:
                listener(i, self.pam(i))
        for smram_listener in self.on_smram:
            smram_listener(self.smram)
