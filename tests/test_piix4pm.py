"""The PIIX4 PM function (82371AB function 3) in the pc machine: config registers, PM1
blocks, the ACPI PM timer, GPE0, SCI on GSI 9, S3/S5 (ACPI 6.5 4.8, 82371AB datasheet 7.2,
QEMU hw/acpi/piix4.c and core.c as the peer)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.clock import ManualClock
from southbridge.core.state import StateError
from southbridge.machine.pc import PcMachine
from southbridge.pci import piix4pm as pm
from southbridge.qtest.server import QtestSession

BASE = 0x600  # where SeaBIOS puts it (src/fw/pciinit.c, PORT_ACPI_PM_BASE)
DEVFN = (1 << 3) | 3


def cfg_addr(off: int) -> int:
    return 0x80000000 | DEVFN << 8 | off


class M:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.m = PcMachine(clock=self.clock)
        assert self.m.pm is not None
        self.pm = self.m.pm

    def cfg_w(self, off: int, size: int, v: int) -> None:
        self.m.ports.write(0xCF8, 4, cfg_addr(off & ~3))
        self.m.ports.write(0xCFC + (off & 3), size, v)

    def cfg_r(self, off: int, size: int) -> int:
        self.m.ports.write(0xCF8, 4, cfg_addr(off & ~3))
        return self.m.ports.read(0xCFC + (off & 3), size)

    def enable(self) -> None:
        self.cfg_w(pm.PMBA, 4, BASE)
        self.cfg_w(pm.PMREGMISC, 1, 1)

    def inw(self, off: int) -> int:
        return self.m.ports.read(BASE + off, 2)

    def outw(self, off: int, v: int) -> None:
        self.m.ports.write(BASE + off, 2, v)

    @property
    def sci(self) -> bool:
        return self.m.gsi.line(9).level


def test_identity_is_8086_7113_at_00_01_3() -> None:
    """QEMU's pc: PIIX4 PM at 00:01.3, class 0680, revision 3, interrupt pin INTA#."""
    t = M()
    assert t.cfg_r(0, 4) == 0x71138086
    assert t.cfg_r(0x08, 4) >> 8 == 0x068000 and t.cfg_r(0x08, 1) == 3
    assert t.cfg_r(0x3D, 1) == 1


def test_pmba_bit0_reads_one_and_base_is_64_aligned() -> None:
    """82371AB 3.3.2 PMBA: bit 0 hardwired 1, bits 15:6 the base, others read 0."""
    t = M()
    assert t.cfg_r(pm.PMBA, 4) == 1
    t.cfg_w(pm.PMBA, 4, 0xFFFFFFFF)
    assert t.cfg_r(pm.PMBA, 4) == 0xFFC1


def test_block_decodes_only_with_pmiose() -> None:
    """PMREGMISC bit 0 (PMIOSE) gates the PM I/O space; undecoded ports read all-ones."""
    t = M()
    t.cfg_w(pm.PMBA, 4, BASE)
    assert t.m.ports.read(BASE + pm.PM1_CNT, 2) == 0xFFFF
    t.cfg_w(pm.PMREGMISC, 1, 1)
    assert t.m.ports.read(BASE + pm.PM1_CNT, 2) == 0
    t.cfg_w(pm.PMBA, 4, 0xB000)  # moving the base moves the block
    assert t.m.ports.read(BASE + pm.PM1_CNT, 2) == 0xFFFF
    assert t.m.ports.read(0xB000 + pm.PM1_CNT, 2) == 0
    t.cfg_w(pm.PMREGMISC, 1, 0)
    assert t.m.ports.read(0xB000 + pm.PM1_CNT, 2) == 0xFFFF


def test_smbus_reads_as_absent() -> None:
    """The SMBus host controller is not emulated: with SMBBA programmed and enabled its
    ports read all-ones (no controller answers)."""
    t = M()
    t.cfg_w(pm.SMBBA, 4, 0x700)
    t.cfg_w(pm.SMBHSTCFG, 1, 1)
    assert t.m.ports.read(0x700, 1) == 0xFF


def test_pm_timer_runs_at_3_579545_mhz_and_wraps_at_24_bits() -> None:
    """ACPI 4.8.3.3: the PM timer counts at 3.579545 MHz; 24-bit, wraps to 0."""
    t = M()
    t.enable()
    t.clock.set(10**9)
    assert t.m.ports.read(BASE + pm.PM_TMR, 4) == 3_579_545
    t.clock.set(10**9 + 10**6)
    assert t.m.ports.read(BASE + pm.PM_TMR, 4) == 3_579_545 + 3579
    wrap = pm.ticks_ns(1 << 24)
    t.clock.set(wrap - 1)
    assert t.m.ports.read(BASE + pm.PM_TMR, 4) == 0xFFFFFF
    t.clock.set(wrap)
    assert t.m.ports.read(BASE + pm.PM_TMR, 4) == 0


def test_tmr_sts_sets_when_bit23_toggles_and_clears_on_write_1() -> None:
    """ACPI table 4.16 TMR_STS: set when bit 23 of the timer toggles; write 1 clears."""
    t = M()
    t.enable()
    t.clock.set(pm.ticks_ns(1 << 23) - 1)
    assert not t.inw(pm.PM1_STS) & pm.TMR_STS
    t.clock.set(pm.ticks_ns(1 << 23))
    assert t.inw(pm.PM1_STS) & pm.TMR_STS
    t.outw(pm.PM1_STS, 0)  # writing 0 changes nothing
    assert t.inw(pm.PM1_STS) & pm.TMR_STS
    t.outw(pm.PM1_STS, pm.TMR_STS)
    assert not t.inw(pm.PM1_STS) & pm.TMR_STS


def test_timer_overflow_raises_sci_only_with_tmr_en_and_sci_en() -> None:
    """SCI (ACPI 4.8.2.5) is level: high while an enabled status bit is set and SCI_EN; the
    overflow timer is armed only while TMR_EN asks for it."""
    t = M()
    t.enable()
    assert not t.pm.timer.armed
    t.outw(pm.PM1_EN, pm.TMR_STS)
    assert t.pm.timer.armed and t.pm.timer.deadline == pm.ticks_ns(1 << 23)
    t.clock.set(pm.ticks_ns(1 << 23))
    assert not t.sci  # SCI_EN still clear: the event would be an SMI
    t.m.ports.write(pm.APM_CNT_PORT, 1, pm.ACPI_ENABLE)  # the OS's acpi_enable via SMI_CMD
    assert t.inw(pm.PM1_CNT) & pm.SCI_EN
    assert t.sci
    assert t.m.pic.elcr is not None
    t.outw(pm.PM1_STS, pm.TMR_STS)
    assert not t.sci  # level: drops when software clears the status
    t.clock.set(pm.ticks_ns(2 << 23))
    assert t.sci
    t.m.ports.write(pm.APM_CNT_PORT, 1, pm.ACPI_DISABLE)
    assert not t.sci


def test_sci_reaches_ioapic_pin_9() -> None:
    """SCI is GSI 9: IOAPIC pin 9 sees it (its IRR bit follows the level when unmasked)."""
    t = M()
    t.enable()
    t.m.ports.write(pm.APM_CNT_PORT, 1, pm.ACPI_ENABLE)
    t.outw(pm.PM1_EN, pm.PWRBTN_STS)
    t.pm.press_power_button()
    assert t.m.irq_inputs["ioapic"][9].level
    assert t.m.irq_inputs["i8259"][9].level


def test_power_button_status_and_enable() -> None:
    """ACPI 4.8.2.2.1.1: pressing sets PWRBTN_STS; SCI only with PWRBTN_EN."""
    t = M()
    t.enable()
    t.m.ports.write(pm.APM_CNT_PORT, 1, pm.ACPI_ENABLE)
    t.pm.press_power_button()
    assert t.inw(pm.PM1_STS) & pm.PWRBTN_STS and not t.sci
    t.outw(pm.PM1_EN, pm.PWRBTN_STS)
    assert t.sci
    t.outw(pm.PM1_STS, pm.PWRBTN_STS)
    assert not t.sci and not t.inw(pm.PM1_STS) & pm.PWRBTN_STS


def test_gpe0_status_and_enable() -> None:
    t = M()
    t.enable()
    t.m.ports.write(pm.APM_CNT_PORT, 1, pm.ACPI_ENABLE)
    t.pm.raise_gpe(1)
    assert t.inw(pm.GPE0_STS) == 2 and not t.sci
    t.outw(pm.GPE0_EN, 2)
    assert t.sci and t.inw(pm.GPE0_EN) == 2
    t.outw(pm.GPE0_STS, 2)
    assert not t.sci and t.inw(pm.GPE0_STS) == 0


def test_slp_en_with_s5_powers_off() -> None:
    """SLP_TYP 0 (the DSDT's \\_S5) with SLP_EN: soft-off, the machine asks to power off;
    SLP_EN reads 0 (write-only)."""
    t = M()
    t.enable()
    t.outw(pm.PM1_CNT, pm.SCI_EN | pm.SLP_EN | pm.SLP_TYP_S5 << pm.SLP_TYP_SHIFT)
    assert t.m.run_request is not None and t.m.run_request.kind == "poweroff"
    assert not t.inw(pm.PM1_CNT) & pm.SLP_EN


def test_s3_suspends_and_power_button_wakes_with_reset() -> None:
    """SLP_TYP 1 (\\_S3): suspended, CMOS shutdown status 0xFE so the BIOS resumes through
    the FACS waking vector; the power button wakes it (WAK_STS) by a reset, as QEMU."""
    t = M()
    t.enable()
    t.outw(pm.PM1_CNT, pm.SLP_EN | pm.SLP_TYP_S3 << pm.SLP_TYP_SHIFT)
    assert t.m.suspended and t.m.run_request is None
    assert t.m.rtc.cmos_get(0x0F) == 0xFE
    t.pm.press_power_button()
    assert not t.m.suspended
    assert t.m.run_request is not None and t.m.run_request.kind == "reset"
    t.m.pci_bus.reset()
    assert t.pm.pm1_sts & pm.WAK_STS  # kept across the wake reset (resume well)


def test_rtc_alarm_wakes_only_with_rtc_en() -> None:
    """ACPI 4.8.2.1: the RTC alarm is a wake source only while RTC_EN is set."""
    t = M()
    t.enable()
    t.outw(pm.PM1_CNT, pm.SLP_EN | pm.SLP_TYP_S3 << pm.SLP_TYP_SHIFT)
    t.pm.rtc_alarm(True)
    assert t.m.suspended and t.pm.pm1_sts & pm.RTC_STS
    t.outw(pm.PM1_STS, pm.RTC_STS)
    t.outw(pm.PM1_EN, pm.RTC_STS)
    t.outw(pm.PM1_CNT, pm.SLP_EN | pm.SLP_TYP_S3 << pm.SLP_TYP_SHIFT)
    t.pm.rtc_alarm(False)
    t.pm.rtc_alarm(True)
    assert not t.m.suspended and t.m.run_request is not None


def test_rtc_interrupt_line_sets_rtc_sts() -> None:
    """The machine feeds the RTC's IRQ8 output to RTC_STS: an update-ended interrupt."""
    t = M()
    t.enable()
    t.m.ports.write(0x70, 1, 0x0B)
    t.m.ports.write(0x71, 1, 0x12)  # UIE, 24-hour
    t.clock.advance(2 * 10**9)
    assert t.inw(pm.PM1_STS) & pm.RTC_STS


def test_no_acpi_machine_has_no_pm_function() -> None:
    """QEMU's -no-acpi pc has no PIIX4 PM function."""
    from southbridge.machine.pc import PcConfig

    m = PcMachine(PcConfig(acpi=False))
    assert m.pm is None
    m.ports.write(0xCF8, 4, cfg_addr(0))
    assert m.ports.read(0xCFC, 4) == 0xFFFFFFFF


def test_over_qtest() -> None:
    """The same through `southbridge qtest`: timer reads follow clock_step."""
    m = PcMachine()
    out: list[str] = []
    q = QtestSession(m, out.append)
    for line in (
        f"outl 0xcf8 {cfg_addr(0x40):#x}",
        f"outl 0xcfc {BASE:#x}",
        f"outl 0xcf8 {cfg_addr(0x80):#x}",
        "outb 0xcfc 0x1",
        "clock_step 1000000000",
    ):
        q.handle(line)
    out.clear()
    q.handle(f"inl {BASE + 8:#x}")
    assert out == [f"OK {3_579_545:#010x}\n"] or int(out[0].split()[1], 16) == 3_579_545


def test_save_restore_round_trip_and_validation() -> None:
    t = M()
    t.enable()
    t.outw(pm.PM1_EN, pm.PWRBTN_STS | pm.TMR_STS)
    t.pm.press_power_button()
    t.clock.set(pm.ticks_ns(1 << 23))
    st_ = t.pm.save()
    u = M()
    u.clock.set(pm.ticks_ns(1 << 23) + 5)
    u.pm.restore(st_)
    assert u.inw(pm.PM1_STS) == t.inw(pm.PM1_STS)
    assert u.inw(pm.PM1_EN) == t.inw(pm.PM1_EN)
    bad: dict[str, Any] = {**st_, "device": {**st_["device"], "pm1_cnt": pm.SLP_EN}}
    with pytest.raises(StateError):
        u.pm.restore(bad)
    bad = {**st_, "device": {**st_["device"], "suspended": 1}}
    with pytest.raises(StateError):
        u.pm.restore(bad)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["io", "cfg", "clock", "btn", "apm"]),
            st.integers(0, 0x3F),
            st.sampled_from([1, 2, 4]),
            st.integers(0, 0xFFFFFFFF),
        ),
        max_size=40,
    )
)
def test_any_register_sequence_never_raises(ops: list[tuple[str, int, int, int]]) -> None:
    """Hostile guest: any access sequence leaves the device consistent (SCI == its rule)."""
    t = M()
    t.enable()
    for kind, off, size, v in ops:
        v &= (1 << (8 * size)) - 1
        if kind == "io":
            t.m.ports.write(BASE + off, size, v)
            t.m.ports.read(BASE + off, size)
        elif kind == "cfg":
            t.cfg_w(0x40 + (off & ~(size - 1)) % 0xC0, size, v)
        elif kind == "clock":
            t.clock.advance(v * 1000)
        elif kind == "btn":
            t.pm.press_power_button()
        else:
            t.m.ports.write(pm.APM_CNT_PORT, 1, v & 0xFF)
        assert t.sci == t.pm.sci_level() or t.m.pm is None
    t.pm.restore(t.pm.save())
