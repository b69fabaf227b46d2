"""The PIIX4 power-management function (82371AB function 3, 8086:7113) at 00:01.3.

As QEMU's `pc` machine has it beside the PIIX3 (hw/acpi/piix4.c, hw/acpi/core.c), checked
against the 82371AB datasheet (290562-001, 3.3 and 7.2) and ACPI 6.5, 4.8:

* Config 0x40 PMBA: bits 15:6 the base of the 64-port PM I/O block, bit 0 reads 1 (I/O
  space); config 0x80 PMREGMISC bit 0 (PMIOSE) enables its decoding. 0x90 SMBBA and 0xD2
  exist as registers, but the SMBus controller is not emulated: its ports stay undecoded and
  read all-ones (a driver finds no host controller).
* PM I/O block: 0x00 PM1_STS (write 1 to clear), 0x02 PM1_EN, 0x04 PM1_CNT, 0x08 PM_TMR (24
  bits, read-only), 0x0C GPE0_STS (write 1 to clear), 0x0E GPE0_EN; the rest of the block
  (processor control, global and device registers) reads 0 and ignores writes.
* The ACPI PM timer counts at 3.579545 MHz, computed from the clock (ticks = now * 3579545 /
  10^9); TMR_STS is set each time bit 23 toggles. Only the next toggle is armed, and only
  while TMR_EN asks for an SCI.
* SCI: level, high while (PM1_STS & PM1_EN & (TMR|GBL|PWRBTN|RTC)) or (GPE0_STS & GPE0_EN)
  and SCI_EN is set (ACPI 4.8.2.5: with SCI_EN clear, events go to SMI, which this machine
  does not have). The machine puts it on ISA IRQ 9 / GSI 9.
* The APM control port (0xB2, `apm`): the FADT's SMI_CMD. Writing ACPI_ENABLE (0xF1) sets
  SCI_EN and ACPI_DISABLE (0xF0) clears it, as QEMU's piix4 does with its SMI handler.
* PM1_CNT SLP_EN with SLP_TYP 0 enters S5 (the `sleep` callback gets 5: power off) and 1
  enters S3 (callback gets 3: suspend). While suspended the power button, or the RTC alarm
  with RTC_EN set, wakes the machine: WAK_STS and the source's status are set and the
  `wake` callback runs (the machine resets and the firmware resumes through the FACS
  waking vector, as QEMU does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from southbridge.core.clock import Clock
from southbridge.core.device import BusDevice, ones
from southbridge.core.irq import IrqLine
from southbridge.core.state import StateError, get_bool, get_int
from southbridge.pci.bar import Region, next_seq
from southbridge.pci.config import INT_PIN
from southbridge.pci.function import PciFunction
from southbridge.pci.piix3 import VENDOR_INTEL

DEVICE_82371AB_PM = 0x7113
CLASS_BRIDGE_OTHER = 0x068000
REVISION = 0x03

PMBA = 0x40
PMREGMISC = 0x80
SMBBA = 0x90
SMBHSTCFG = 0xD2
PM_IO_SIZE = 64

# PM I/O block offsets.
PM1_STS, PM1_EN, PM1_CNT, PM_TMR, GPE0_STS, GPE0_EN = 0x00, 0x02, 0x04, 0x08, 0x0C, 0x0E
GPE0_LEN = 4

# PM1_STS / PM1_EN bits (ACPI 6.5 tables 4.16 and 4.17).
TMR_STS = 1 << 0
BM_STS = 1 << 4
GBL_STS = 1 << 5
PWRBTN_STS = 1 << 8
RTC_STS = 1 << 10
WAK_STS = 1 << 15
PM1_STS_MASK = TMR_STS | BM_STS | GBL_STS | PWRBTN_STS | RTC_STS | WAK_STS
PM1_EN_MASK = TMR_STS | GBL_STS | PWRBTN_STS | RTC_STS
# PM1_CNT bits (table 4.18).
SCI_EN = 1 << 0
BM_RLD = 1 << 1
GBL_RLS = 1 << 2
SLP_TYP_SHIFT = 10
SLP_TYP_MASK = 7 << SLP_TYP_SHIFT
SLP_EN = 1 << 13
PM1_CNT_MASK = SCI_EN | BM_RLD | SLP_TYP_MASK  # GBL_RLS and SLP_EN are write-only

# SLP_TYP values this machine's DSDT gives (QEMU's: \_S3 = 1, \_S5 = 0).
SLP_TYP_S5 = 0
SLP_TYP_S3 = 1

PM_TIMER_HZ = 3_579_545
TIMER_BITS = 24
TIMER_MSB = 1 << (TIMER_BITS - 1)

APM_CNT_PORT = 0xB2
ACPI_ENABLE = 0xF1
ACPI_DISABLE = 0xF0


def timer_ticks(ns: int) -> int:
    """PM timer ticks since clock 0 (not wrapped)."""
    return ns * PM_TIMER_HZ // 1_000_000_000


def ticks_ns(ticks: int) -> int:
    """The first clock instant at which `ticks` ticks have elapsed."""
    return -(-ticks * 1_000_000_000 // PM_TIMER_HZ)


class _PmIo(BusDevice):
    """The 64-port PM I/O block as the PMBA register places it."""

    io_sizes = frozenset({1, 2, 4})

    def __init__(self, pm: Piix4Pm) -> None:
        self.pm = pm
        self.name = "piix4-pm"

    def read(self, offset: int, size: int) -> int:
        value = 0
        for i in range(size):
            value |= self.pm.read_byte(offset + i) << (8 * i)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        self.pm.write_block(offset, size, value)


class _Apm(BusDevice):
    """APMC (0xB2) and APMS (0xB3): the SMI command port of the FADT."""

    io_sizes = frozenset({1})

    def __init__(self, pm: Piix4Pm) -> None:
        self.pm = pm
        self.name = "apm"
        self.cnt = 0
        self.sts = 0

    def read(self, offset: int, size: int) -> int:
        return self.cnt if offset == 0 else self.sts

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 1:
            self.sts = value & 0xFF
            return
        self.cnt = value & 0xFF
        if self.cnt == ACPI_ENABLE:
            self.pm.set_sci_enable(True)
        elif self.cnt == ACPI_DISABLE:
            self.pm.set_sci_enable(False)


SleepHook = Callable[[int], None]


class Piix4Pm(PciFunction):
    """82371AB function 3: ACPI PM1 event/control blocks, the PM timer, GPE0 and SCI."""

    kind = "piix4-pm"

    def __init__(
        self,
        clock: Clock,
        sci: IrqLine,
        sleep: SleepHook | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(VENDOR_INTEL, DEVICE_82371AB_PM, CLASS_BRIDGE_OTHER, REVISION, name="pm")
        self.clock = clock
        self.sci = sci
        self._sleep = sleep
        self._wake = wake
        cs = self.config
        cs.set(INT_PIN, 1, 1)  # INTA#, as QEMU's piix4_pm_realize (SCI itself is IRQ 9)
        cs.set(PMBA, 4, 0x00000001)
        cs.set_wmask(PMBA, 4, 0x0000FFC0)
        cs.set_wmask(PMREGMISC, 1, 0x01)
        cs.set(SMBBA, 4, 0x00000001)
        cs.set_wmask(SMBBA, 4, 0x0000FFF0)
        cs.set_wmask(SMBHSTCFG, 1, 0x0F)
        self.io = _PmIo(self)
        self.apm = _Apm(self)
        self._owner = object()
        self._seq = next_seq()
        self._decoded: tuple[int, int] | None = None
        self.timer = clock.timer(self._on_timer, "pm-timer")
        self._clear_state()

    def _clear_state(self) -> None:
        self.pm1_sts = 0  # latched bits other than TMR_STS
        self.pm1_en = 0
        self.pm1_cnt = 0
        self.gpe_sts = 0
        self.gpe_en = 0
        self.suspended = False
        # TMR_STS is (timer overflows now) != (overflows when software last cleared it).
        self._tmr_epoch = self._overflows()

    # -- PM timer -----------------------------------------------------------------------
    def _overflows(self) -> int:
        """How many times bit 23 has toggled since clock 0."""
        return timer_ticks(self.clock.now()) >> (TIMER_BITS - 1)

    def timer_value(self) -> int:
        return timer_ticks(self.clock.now()) & (ones(4) >> 8)

    def _arm(self) -> None:
        if self.pm1_en & TMR_STS and not self.status & TMR_STS:
            self.timer.arm(ticks_ns((self._overflows() + 1) << (TIMER_BITS - 1)))
        else:
            self.timer.cancel()

    def _on_timer(self) -> None:
        self.update_sci()

    # -- registers ----------------------------------------------------------------------
    @property
    def status(self) -> int:
        tmr = TMR_STS if self._overflows() != self._tmr_epoch else 0
        return self.pm1_sts | tmr

    def sci_level(self) -> bool:
        if not self.pm1_cnt & SCI_EN:
            return False
        return bool(self.status & self.pm1_en & PM1_EN_MASK) or bool(self.gpe_sts & self.gpe_en)

    def update_sci(self) -> None:
        self.sci.set(self.sci_level())
        self._arm()

    def read_byte(self, off: int) -> int:
        if off < PM1_EN:
            return (self.status >> (8 * off)) & 0xFF
        if off < PM1_CNT:
            return (self.pm1_en >> (8 * (off - PM1_EN))) & 0xFF
        if off < PM1_CNT + 2:
            return (self.pm1_cnt >> (8 * (off - PM1_CNT))) & 0xFF
        if PM_TMR <= off < PM_TMR + 4:
            return (self.timer_value() >> (8 * (off - PM_TMR))) & 0xFF
        if GPE0_STS <= off < GPE0_EN:
            return (self.gpe_sts >> (8 * (off - GPE0_STS))) & 0xFF
        if GPE0_EN <= off < GPE0_EN + 2:
            return (self.gpe_en >> (8 * (off - GPE0_EN))) & 0xFF
        return 0

    def write_block(self, offset: int, size: int, value: int) -> None:
        """One guest write; each register takes the bytes of it that fall on it."""
        regs = ((PM1_STS, 2), (PM1_EN, 2), (PM1_CNT, 2), (GPE0_STS, 2), (GPE0_EN, 2))
        for base, width in regs:
            lo, hi = max(offset, base), min(offset + size, base + width)
            if lo >= hi:
                continue
            bits = 0
            mask = 0
            for a in range(lo, hi):
                bits |= ((value >> (8 * (a - offset))) & 0xFF) << (8 * (a - base))
                mask |= 0xFF << (8 * (a - base))
            self._write_reg(base, bits, mask)
        self.update_sci()

    def _write_reg(self, reg: int, bits: int, mask: int) -> None:
        if reg == PM1_STS:
            if bits & TMR_STS:
                self._tmr_epoch = self._overflows()
            self.pm1_sts &= ~(bits & PM1_STS_MASK)
        elif reg == PM1_EN:
            self.pm1_en = (self.pm1_en & ~mask | bits) & PM1_EN_MASK
        elif reg == PM1_CNT:
            self.pm1_cnt = (self.pm1_cnt & ~mask | bits) & PM1_CNT_MASK
            if bits & SLP_EN:
                self._enter_sleep((bits & SLP_TYP_MASK) >> SLP_TYP_SHIFT)
        elif reg == GPE0_STS:
            self.gpe_sts &= ~bits
        else:
            self.gpe_en = (self.gpe_en & ~mask | bits) & 0xFFFF

    def _enter_sleep(self, typ: int) -> None:
        if typ == SLP_TYP_S5:
            if self._sleep is not None:
                self._sleep(5)
        elif typ == SLP_TYP_S3:
            self.suspended = True
            if self._sleep is not None:
                self._sleep(3)
        else:
            self.log.warning("slp-typ", "pm: SLP_TYP %d is not a sleep state here; ignored", typ)

    def set_sci_enable(self, on: bool) -> None:
        self.pm1_cnt = self.pm1_cnt | SCI_EN if on else self.pm1_cnt & ~SCI_EN
        self.update_sci()

    # -- events from the platform --------------------------------------------------------
    def press_power_button(self) -> None:
        """The power button (ACPI 4.8.2.2.1.1): PWRBTN_STS, an SCI when enabled; it always
        wakes a suspended machine."""
        self.pm1_sts |= PWRBTN_STS
        if self.suspended:
            self._do_wake()
        self.update_sci()

    def rtc_alarm(self, level: bool) -> None:
        """The RTC's interrupt output: its rising edge sets RTC_STS and, with RTC_EN, wakes."""
        if not level:
            return
        self.pm1_sts |= RTC_STS
        if self.suspended and self.pm1_en & RTC_STS:
            self._do_wake()
        self.update_sci()

    def raise_gpe(self, bit: int) -> None:
        if 0 <= bit < 16:
            self.gpe_sts |= 1 << bit
            self.update_sci()

    def _do_wake(self) -> None:
        self.suspended = False
        self.pm1_sts |= WAK_STS
        self.pm1_cnt &= ~SLP_TYP_MASK
        if self._wake is not None:
            self._wake()

    # -- PCI side: PMBA decoding ---------------------------------------------------------
    def pm_base(self) -> int | None:
        """Where the PM I/O block decodes, or None while PMIOSE is clear."""
        if not self.config.get(PMREGMISC, 1) & 1:
            return None
        return self.config.get(PMBA, 4) & 0xFFC0

    def regions(self) -> tuple[list[Region], list[Region]]:
        io, mem = super().regions()
        base = self.pm_base()
        if base is not None:
            if self._decoded != (base, PM_IO_SIZE):
                self._decoded = (base, PM_IO_SIZE)
                self._seq = next_seq()
            io.append(Region(self._owner, base, PM_IO_SIZE, self.io, "piix4-pm", self._seq))
        else:
            self._decoded = None
        return io, mem

    def on_config_write(self, offset: int, size: int) -> None:
        touches = (PMBA, 4), (PMREGMISC, 1)
        if any(offset < r + n and r < offset + size for r, n in touches):
            self.update_mappings()

    # -- state ---------------------------------------------------------------------------
    def reset_device(self) -> None:
        """Power-on reset. A reset that is a wake from S3 keeps the wake status bits (they
        live in the resume well) so the OS sees why it woke."""
        keep = self.pm1_sts & (WAK_STS | PWRBTN_STS | RTC_STS)
        self._clear_state()
        self.pm1_sts = keep
        self._decoded = None
        self.update_sci()

    def save_device(self) -> dict[str, Any]:
        return {
            "pm1_sts": self.pm1_sts,
            "pm1_en": self.pm1_en,
            "pm1_cnt": self.pm1_cnt,
            "gpe_sts": self.gpe_sts,
            "gpe_en": self.gpe_en,
            "tmr_sts": bool(self.status & TMR_STS),
            "suspended": self.suspended,
            "apm_cnt": self.apm.cnt,
            "apm_sts": self.apm.sts,
        }

    def restore_device(self, state: dict[str, Any]) -> None:
        sts = get_int(state, "pm1_sts", 0, 0xFFFF)
        en = get_int(state, "pm1_en", 0, 0xFFFF)
        cnt = get_int(state, "pm1_cnt", 0, 0xFFFF)
        if sts & ~(PM1_STS_MASK & ~TMR_STS) or en & ~PM1_EN_MASK or cnt & ~PM1_CNT_MASK:
            raise StateError("piix4-pm: PM1 register bits the hardware does not have")
        gpe_sts = get_int(state, "gpe_sts", 0, 0xFFFF)
        gpe_en = get_int(state, "gpe_en", 0, 0xFFFF)
        tmr = get_bool(state, "tmr_sts")
        suspended = get_bool(state, "suspended")
        apm_cnt = get_int(state, "apm_cnt", 0, 0xFF)
        apm_sts = get_int(state, "apm_sts", 0, 0xFF)
        self.pm1_sts, self.pm1_en, self.pm1_cnt = sts, en, cnt
        self.gpe_sts, self.gpe_en = gpe_sts, gpe_en
        self.suspended = suspended
        self.apm.cnt, self.apm.sts = apm_cnt, apm_sts
        self._tmr_epoch = self._overflows() - (1 if tmr else 0)
        self._decoded = None
        self.update_sci()
