"""Local APIC: Intel SDM vol. 3 chapter 10 rules, through the xAPIC window and the MSRs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.clock import ManualClock
from southbridge.core.state import StateError
from southbridge.devices.apicbus import ApicBus
from southbridge.devices.lapic import (
    ESR_ILLEGAL_REGISTER,
    ESR_RECV_ILLEGAL_VECTOR,
    ESR_SEND_ILLEGAL_VECTOR,
    LocalApic,
)
from southbridge.machine.pc import PcConfig, PcMachine
from southbridge.qtest.server import QtestSession
from tests import qtesting

# xAPIC register offsets (SDM table 10-1).
ID, VER, TPR, APR, PPR, EOI, LDR, DFR, SVR = 0x20, 0x30, 0x80, 0x90, 0xA0, 0xB0, 0xD0, 0xE0, 0xF0
ISR, TMR, IRR, ESR, ICR_LO, ICR_HI = 0x100, 0x180, 0x200, 0x280, 0x300, 0x310
LVT_TIMER, LVT_LINT0, LVT_LINT1, LVT_ERROR = 0x320, 0x350, 0x360, 0x370
TIMER_INIT, TIMER_CUR, TIMER_DCR = 0x380, 0x390, 0x3E0
BASE_MSR, TSC_DEADLINE_MSR = 0x1B, 0x6E0


def apics(n: int = 1, **kw: Any) -> tuple[ManualClock, list[LocalApic]]:
    clock = ManualClock()
    bus = ApicBus()
    return clock, [LocalApic(i, clock, bus, bsp=i == 0, **kw) for i in range(n)]


def one(**kw: Any) -> tuple[ManualClock, LocalApic]:
    clock, (a,) = apics(1, **kw)
    return clock, a


def rd(a: LocalApic, off: int) -> int:
    return a.read(off, 4)


def wr(a: LocalApic, off: int, value: int) -> None:
    a.write(off, 4, value)


def enable(a: LocalApic) -> None:
    wr(a, SVR, 0x1FF)


def bit_in(a: LocalApic, base: int, vector: int) -> bool:
    return bool(rd(a, base + 0x10 * (vector // 32)) >> (vector % 32) & 1)


def esr(a: LocalApic) -> int:
    wr(a, ESR, 0)  # SDM 10.5.3: write before read latches the errors
    return rd(a, ESR)


# -- reset state -----------------------------------------------------------------------------
def test_power_up_state() -> None:
    """SDM 10.4.7.1: IRR/ISR/TMR/ICR/LDR/TPR/timer zero, DFR all ones, LVTs masked, SVR 0xFF;
    version 0x50014 as QEMU (max LVT entry 5); BSP LINT0 ExtINT as QEMU's reset."""
    _, (bsp, ap) = apics(2)
    assert rd(ap, ID) == 1 << 24
    assert rd(bsp, VER) == 0x00050014
    assert (rd(bsp, TPR), rd(bsp, PPR), rd(bsp, LDR)) == (0, 0, 0)
    assert rd(bsp, DFR) == 0xFFFFFFFF
    assert rd(bsp, SVR) == 0xFF
    assert rd(ap, LVT_LINT0) == 0x10000
    assert rd(bsp, LVT_LINT0) == 0x700
    for off in (LVT_TIMER, 0x330, 0x340, LVT_LINT1, LVT_ERROR):
        assert rd(bsp, off) == 0x10000
    assert bsp.read_msr(BASE_MSR) == 0xFEE00900  # EN | BSP
    assert ap.read_msr(BASE_MSR) == 0xFEE00800
    assert not bsp.intr.level


def test_sub_dword_and_unaligned_accesses() -> None:
    """SDM 10.4.1: only aligned 32-bit accesses are defined; others read 0 (as QEMU) and
    writes are dropped."""
    _, a = one()
    assert a.read(VER, 1) == 0 and a.read(VER + 4, 4) == 0
    a.write(TPR, 1, 0x50)
    a.write(TPR + 4, 4, 0x50)
    assert rd(a, TPR) == 0


# -- acceptance, priority, EOI ---------------------------------------------------------------
def test_accept_ack_eoi_moves_irr_to_isr() -> None:
    """SDM 10.8.4: acceptance sets IRR; INTA moves the highest IRR bit to ISR; EOI clears the
    highest ISR bit."""
    _, a = one()
    enable(a)
    assert a.accept(0x41)
    assert a.intr.level and a.highest_pending() == 0x41
    assert bit_in(a, IRR, 0x41)
    assert a.ack() == 0x41
    assert bit_in(a, ISR, 0x41) and not bit_in(a, IRR, 0x41)
    assert not a.intr.level
    assert rd(a, PPR) == 0x40
    wr(a, EOI, 0)
    assert not bit_in(a, ISR, 0x41) and rd(a, PPR) == 0


def test_ppr_and_priority_classes() -> None:
    """SDM 10.8.3.1: PPR = TPR if TPR[7:4] >= ISRV[7:4] else ISRV[7:4]:0; an IRR vector is
    dispatched only if its class is above PPR[7:4]."""
    _, a = one()
    enable(a)
    wr(a, TPR, 0x55)
    assert rd(a, PPR) == 0x55
    a.accept(0x5F)
    assert a.highest_pending() is None  # same class as TPR
    a.accept(0x61)
    assert a.highest_pending() == 0x61
    assert a.ack() == 0x61
    wr(a, TPR, 0x10)
    assert rd(a, PPR) == 0x60  # ISRV class wins
    a.accept(0x65)
    assert a.highest_pending() is None  # same class as the one in service
    a.accept(0x90)
    assert a.highest_pending() == 0x90  # nests above
    assert a.ack() == 0x90
    wr(a, EOI, 0)
    wr(a, EOI, 0)
    assert a.highest_pending() == 0x65


def test_arbitration_priority_register() -> None:
    """SDM 10.6.2.4: APR is TPR when TPR is at or above the IRR and ISR classes, else the
    highest of the three classes with the low nibble 0."""
    _, a = one()
    enable(a)
    wr(a, TPR, 0x35)
    assert rd(a, APR) == 0x35
    a.accept(0x72)
    assert rd(a, APR) == 0x70


def test_ack_when_tpr_masks_returns_spurious_vector() -> None:
    """SDM 10.9: if the TPR masks the interrupt between INTR and INTA, the spurious vector
    is delivered and no ISR bit is set."""
    _, a = one()
    wr(a, SVR, 0x1EF)
    a.accept(0x40)
    wr(a, TPR, 0x40)
    assert a.ack() == 0xEF
    assert rd(a, ISR + 0x20) == 0
    assert bit_in(a, IRR, 0x40)


def test_cr8_mirrors_tpr() -> None:
    """SDM 10.8.6.1: CR8[3:0] is TPR[7:4]."""
    _, a = one()
    a.cr8 = 0x9
    assert rd(a, TPR) == 0x90
    wr(a, TPR, 0x3C)
    assert a.cr8 == 3


def test_level_eoi_broadcasts_and_edge_does_not() -> None:
    """SDM 10.8.5: EOI of a level-triggered vector (TMR set) is broadcast to the IOAPICs."""
    _, a = one()
    seen: list[int] = []
    a.bus.on_eoi(seen.append)
    enable(a)
    a.accept(0x50, level_triggered=True)
    a.accept(0x60)
    assert bit_in(a, TMR, 0x50) and not bit_in(a, TMR, 0x60)
    a.ack()
    wr(a, EOI, 0)
    a.ack()
    wr(a, EOI, 0)
    assert seen == [0x50]


def test_eoi_broadcast_suppression_needs_directed_eoi() -> None:
    """SDM 10.8.5: SVR bit 12 suppresses the broadcast only when version bit 24 says so."""
    _, plain = one()
    wr(plain, SVR, 0x11FF)
    assert rd(plain, SVR) == 0x1FF
    _, a = one(directed_eoi=True)
    assert rd(a, VER) == 0x01050014
    seen: list[int] = []
    a.bus.on_eoi(seen.append)
    wr(a, SVR, 0x11FF)
    a.accept(0x50, level_triggered=True)
    a.ack()
    wr(a, EOI, 0)
    assert seen == []


# -- errors ----------------------------------------------------------------------------------
def test_illegal_vectors_and_esr_write_before_read() -> None:
    """SDM 10.5.3: vectors 0-15 set Receive/Send Illegal Vector; ESR shows errors only after
    a write, which also clears them."""
    _, (a, b) = apics(2)
    enable(a)
    enable(b)
    assert not b.accept(5)
    assert rd(b, ESR) == 0  # not latched yet
    assert esr(b) == ESR_RECV_ILLEGAL_VECTOR
    assert esr(b) == 0
    wr(a, ICR_HI, 1 << 24)
    wr(a, ICR_LO, 0x0F)
    assert esr(a) == ESR_SEND_ILLEGAL_VECTOR
    assert b.irr == 0


def test_illegal_register_sets_esr_and_error_lvt_interrupts() -> None:
    """SDM 10.5.3: access to an unimplemented register sets bit 7 (0x2F0: no CMCI entry with
    max LVT 5); an unmasked error LVT raises its vector."""
    _, a = one()
    enable(a)
    wr(a, LVT_ERROR, 0xFE)
    assert rd(a, 0x2F0) == 0
    assert a.highest_pending() == 0xFE
    assert esr(a) == ESR_ILLEGAL_REGISTER


def test_error_lvt_with_illegal_vector_does_not_loop() -> None:
    """An error LVT vector below 16 is itself a Receive Illegal Vector error (SDM 10.5.3)."""
    _, a = one()
    enable(a)
    wr(a, LVT_ERROR, 0x03)
    wr(a, 0x400, 1)
    assert esr(a) == ESR_ILLEGAL_REGISTER | ESR_RECV_ILLEGAL_VECTOR
    assert a.irr == 0


# -- software / hardware disable ------------------------------------------------------------
def test_software_disable_masks_lvts_and_refuses_fixed() -> None:
    """SDM 10.4.7.2: clearing SVR bit 8 masks every LVT and the masks cannot be cleared;
    fixed interrupts are refused but NMI/INIT are still accepted."""
    _, (a, b) = apics(2)
    enable(a)
    wr(b, SVR, 0x0FF)
    assert rd(b, LVT_LINT0) & 0x10000
    wr(b, LVT_TIMER, 0x40)
    assert rd(b, LVT_TIMER) == 0x10040
    wr(a, ICR_HI, 1 << 24)
    wr(a, ICR_LO, 0x40)
    assert b.irr == 0
    wr(a, ICR_LO, 0x400)  # NMI
    assert b.pending_nmi and b.intr.level
    assert b.take_nmi() and not b.pending_nmi


def test_hardware_disable_hides_window_and_resets() -> None:
    """SDM 10.4.3: with IA32_APIC_BASE[11] clear the APIC is absent (the window floats) and
    may return to its power-up state; LINT0 becomes the INTR pin."""
    _, (a, b) = apics(2)
    enable(b)
    wr(b, TPR, 0x20)
    assert b.write_msr(BASE_MSR, 0xFEE00000)
    assert rd(b, VER) == 0xFFFFFFFF
    wr(b, TPR, 0x30)
    assert b.lint0_extint()
    wr(a, ICR_HI, 1 << 24)
    enable(a)
    wr(a, ICR_LO, 0x40)
    assert b.irr == 0
    assert b.write_msr(BASE_MSR, 0xFEE00800)
    assert (rd(b, TPR), rd(b, SVR)) == (0, 0xFF)


# -- IA32_APIC_BASE mode switching ------------------------------------------------------------
def test_apic_base_mode_transitions() -> None:
    """SDM 10.12.5 figure 10-27: xAPIC -> x2APIC allowed; x2APIC -> xAPIC and disabled ->
    x2APIC are illegal (#GP); EXTD without EN is invalid; reserved bits #GP."""
    _, a = one()
    xapic, x2, off = 0xFEE00900, 0xFEE00D00, 0xFEE00100
    assert not a.write_msr(BASE_MSR, 0xFEE00500)  # EXTD without EN
    assert not a.write_msr(BASE_MSR, xapic | 0x1)  # reserved bit 0
    assert not a.write_msr(BASE_MSR, xapic | 1 << 45)  # beyond MAXPHYADDR (40)
    assert a.write_msr(BASE_MSR, x2) and a.x2apic
    assert not a.write_msr(BASE_MSR, xapic)
    assert a.write_msr(BASE_MSR, off) and not a.hw_enabled
    assert not a.write_msr(BASE_MSR, x2)
    assert a.write_msr(BASE_MSR, xapic)
    assert a.read_msr(BASE_MSR) == xapic


def test_apic_base_relocation_hook() -> None:
    """IA32_APIC_BASE[35:12] moves the window; the run loop learns it through the hook."""
    _, a = one()
    moved: list[int] = []
    a.relocate_hook = lambda apic: moved.append(apic.base_address)
    assert a.write_msr(BASE_MSR, 0xFED00900)
    assert moved == [0xFED00000] and a.base_address == 0xFED00000


# -- x2APIC ----------------------------------------------------------------------------------
def test_x2apic_msr_interface() -> None:
    """SDM 10.12.1.2 table 10-6: registers as MSRs 0x800+; 32-bit ID; LDR derived from the ID
    and read-only; no DFR/APR/ICR2; RDMSR of write-only EOI/SELF IPI and writes of RO
    registers #GP; the xAPIC window is not decoded."""
    clock = ManualClock()
    a = LocalApic(0x23, clock, ApicBus(), bsp=True)
    assert a.read_msr(0x802) is None  # xAPIC mode: the MSRs #GP
    assert a.write_msr(BASE_MSR, 0xFEE00D00)
    assert a.read_msr(0x802) == 0x23
    assert a.read_msr(0x80D) == (2 << 16) | (1 << 3)
    assert a.read_msr(0x803) == 0x50014
    for reg in (0x809, 0x80B, 0x80C, 0x80E, 0x831, 0x83F, 0x82F, 0x840):
        assert a.read_msr(reg) is None, hex(reg)
    assert not a.write_msr(0x80D, 0)
    assert not a.write_msr(0x802, 0)
    assert not a.write_msr(0x80B, 1)  # EOI takes only 0
    assert not a.write_msr(0x808, 1 << 32)
    assert rd(a, VER) == 0xFFFFFFFF
    assert a.write_msr(0x80F, 0x1FF)
    assert a.write_msr(0x83F, 0x55)  # SELF IPI
    assert a.highest_pending() == 0x55
    assert a.ack() == 0x55
    assert a.write_msr(0x80B, 0)
    assert a.isr == 0
    assert not a.write_msr(0x83F, 0x155)


def test_x2apic_icr_is_one_64bit_msr_with_32bit_destination() -> None:
    """SDM 10.12.9: the x2APIC ICR is MSR 0x830 with the destination in bits 63:32."""
    clock = ManualClock()
    bus = ApicBus()
    a = LocalApic(0, clock, bus, bsp=True)
    b = LocalApic(300, clock, bus)
    for x in (a, b):
        assert x.write_msr(BASE_MSR, 0xFEE00C00 | (0x100 if x is a else 0))
        assert x.write_msr(0x80F, 0x1FF)
    assert a.write_msr(0x830, (300 << 32) | 0x61)
    assert b.highest_pending() == 0x61
    assert a.read_msr(0x830) == (300 << 32) | 0x61
    assert not a.write_msr(0x830, 1 << 12)  # delivery status is reserved in x2APIC mode


# -- timer -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dcr", "divisor"),
    [(0x0, 2), (0x1, 4), (0x2, 8), (0x3, 16), (0x8, 32), (0x9, 64), (0xA, 128), (0xB, 1)],
)
def test_divide_configuration_encoding(dcr: int, divisor: int) -> None:
    """SDM figure 10-10: DCR bits 3,1:0 select divide by 2, 4, ..., 128, 1."""
    _, a = one()
    wr(a, TIMER_DCR, dcr | 0xF0)
    assert rd(a, TIMER_DCR) == dcr
    assert a.divisor() == divisor


def test_one_shot_timer() -> None:
    """SDM 10.5.4: one-shot counts down from the initial count at bus clock / divisor (1 GHz
    bus clock, as QEMU and KVM), interrupts once at zero and stays at zero."""
    clock, a = one()
    enable(a)
    wr(a, LVT_TIMER, 0x30)
    wr(a, TIMER_DCR, 0x3)  # divide by 16
    wr(a, TIMER_INIT, 1000)
    assert rd(a, TIMER_CUR) == 1000
    clock.advance(8000)
    assert rd(a, TIMER_CUR) == 500
    clock.advance(7999)
    assert a.irr == 0 and rd(a, TIMER_CUR) == 1
    clock.advance(1)
    assert a.highest_pending() == 0x30
    assert rd(a, TIMER_CUR) == 0
    a.ack()
    clock.advance(100_000)
    assert a.irr == 0 and clock.next_deadline() is None


def test_periodic_timer_rate_and_reload() -> None:
    """SDM 10.5.4: periodic mode reloads the initial count and interrupts every period."""
    clock, a = one()
    enable(a)
    wr(a, LVT_TIMER, (1 << 17) | 0x31)
    wr(a, TIMER_DCR, 0x0)  # divide by 2
    wr(a, TIMER_INIT, 500_000)  # period 1 ms
    times = []
    for _ in range(10):
        clock.step_next()
        times.append(clock.now())
        assert a.ack() == 0x31
        wr(a, EOI, 0)
    assert times == [1_000_000 * k for k in range(1, 11)]
    clock.advance(250_000)
    assert rd(a, TIMER_CUR) == 375_000


def test_periodic_tick_coalesces_until_acknowledged() -> None:
    """Ticks while the vector is still in IRR are lost in hardware (one IRR bit); the model
    stops arming the clock until the CPU takes the vector, then resumes on the period grid."""
    clock, a = one()
    enable(a)
    wr(a, LVT_TIMER, (1 << 17) | 0x31)
    wr(a, TIMER_DCR, 0xB)  # divide by 1
    wr(a, TIMER_INIT, 300_000)
    clock.advance(1_000_000)
    assert a.highest_pending() == 0x31
    assert clock.next_deadline() is None
    a.ack()
    assert clock.next_deadline() == 1_200_000


class LateClock(ManualClock):
    """Fires due timers with now() already at the target, like a host clock running late."""

    def set(self, target: int) -> int:
        self._now = max(self._now, target)
        return super().set(target)


def test_late_periodic_callback_stays_on_the_period_grid() -> None:
    """Lost-tick policy: a callback that runs late delivers one interrupt (one IRR bit) and
    the next tick stays on the grid set by the initial-count write, not on the late instant."""
    clock = LateClock()
    a = LocalApic(0, clock, ApicBus(), bsp=True)
    enable(a)
    wr(a, LVT_TIMER, (1 << 17) | 0x31)
    wr(a, TIMER_DCR, 0xB)
    wr(a, TIMER_INIT, 1_000_000)
    clock.advance(3_500_000)  # ticks at 1, 2 and 3 ms all late: one interrupt
    assert a.ack() == 0x31
    assert a.irr == 0
    assert clock.next_deadline() == 4_000_000
    assert rd(a, TIMER_CUR) == 500_000


def test_masked_timer_counts_without_interrupts() -> None:
    """SDM 10.5.1: the mask inhibits the interrupt, not the count."""
    clock, a = one()
    enable(a)
    wr(a, LVT_TIMER, 0x10030)
    wr(a, TIMER_DCR, 0xB)
    wr(a, TIMER_INIT, 100)
    clock.advance(40)
    assert rd(a, TIMER_CUR) == 60
    clock.advance(100)
    assert a.irr == 0
    wr(a, LVT_TIMER, 0x30)  # already expired: unmasking delivers nothing
    assert a.irr == 0


def test_divide_change_keeps_current_count() -> None:
    """Changing DCR while counting changes the rate, not the count (KVM's behaviour)."""
    clock, a = one()
    enable(a)
    wr(a, LVT_TIMER, 0x30)
    wr(a, TIMER_DCR, 0xB)
    wr(a, TIMER_INIT, 1000)
    clock.advance(400)
    wr(a, TIMER_DCR, 0x0)  # divide by 2
    assert rd(a, TIMER_CUR) == 600
    clock.advance(1199)
    assert a.irr == 0
    clock.advance(1)
    assert a.highest_pending() == 0x30


def test_initial_count_zero_stops_timer() -> None:
    """SDM 10.5.4: writing 0 to the initial count stops the timer."""
    clock, a = one()
    enable(a)
    wr(a, LVT_TIMER, 0x30)
    wr(a, TIMER_INIT, 100)
    wr(a, TIMER_INIT, 0)
    clock.advance(10_000)
    assert a.irr == 0 and rd(a, TIMER_CUR) == 0


def test_tsc_deadline_mode() -> None:
    """SDM 10.5.4.1: in TSC-deadline mode IA32_TSC_DEADLINE arms the timer, the interrupt
    comes when the TSC reaches it, the MSR then reads 0; the initial count is ignored."""
    clock, a = one(tsc_hz=2_000_000_000)
    enable(a)
    assert a.write_msr(TSC_DEADLINE_MSR, 5000)
    assert a.read_msr(TSC_DEADLINE_MSR) == 0  # ignored outside TSC-deadline mode
    wr(a, LVT_TIMER, (2 << 17) | 0x40)
    wr(a, TIMER_INIT, 10)
    assert rd(a, TIMER_INIT) == 0 and rd(a, TIMER_CUR) == 0
    assert a.write_msr(TSC_DEADLINE_MSR, 5000)  # 2.5 us at 2 GHz
    assert a.read_msr(TSC_DEADLINE_MSR) == 5000
    clock.advance(2499)
    assert a.irr == 0
    clock.advance(1)
    assert a.highest_pending() == 0x40
    assert a.read_msr(TSC_DEADLINE_MSR) == 0
    a.ack()
    wr(a, EOI, 0)
    a.write_tsc_deadline(a.tsc_now() - 1)  # already passed: interrupts at once
    assert a.highest_pending() == 0x40
    a.ack()
    a.write_tsc_deadline(a.tsc_now() + 100)
    a.write_tsc_deadline(0)  # disarms
    clock.advance(1000)
    assert a.irr == 0


def test_leaving_tsc_deadline_mode_disarms() -> None:
    """SDM 10.5.4.1: switching between TSC-deadline and the other modes disarms the timer."""
    clock, a = one()
    enable(a)
    wr(a, LVT_TIMER, 0x40)
    wr(a, TIMER_INIT, 100)
    wr(a, LVT_TIMER, (2 << 17) | 0x40)
    clock.advance(1000)
    assert a.irr == 0
    a.write_tsc_deadline(a.tsc_now() + 500)
    wr(a, LVT_TIMER, 0x40)
    clock.advance(1000)
    assert a.irr == 0 and rd(a, TIMER_INIT) == 0


# -- LINT pins -------------------------------------------------------------------------------
def test_lint0_extint_passes_pic_intr() -> None:
    """LINT0 in ExtINT mode: the PIC's INTR is the interrupt (SDM 10.5.1); masked, it is not."""
    _, (bsp, ap) = apics(2)
    bsp.set_lint0(True)
    ap.set_lint0(True)
    assert bsp.lint0_extint() and bsp.extint_requested() and bsp.intr.level
    assert not ap.extint_requested() and not ap.intr.level
    wr(bsp, LVT_LINT0, 0x10700)
    assert not bsp.intr.level


def test_lint1_nmi() -> None:
    """LINT1 programmed NMI turns a rising edge into an NMI request."""
    _, a = one()
    enable(a)
    wr(a, LVT_LINT1, 0x400)
    a.set_lint1(True)
    assert a.pending_nmi and a.intr.level
    assert a.take_nmi()
    a.set_lint1(True)  # no new edge
    assert not a.pending_nmi


def test_lint0_level_fixed_uses_remote_irr() -> None:
    """SDM 10.5.1: a level-triggered fixed LINT0 sets remote IRR when accepted and again
    requests after the EOI while the pin is asserted."""
    _, a = one()
    enable(a)
    wr(a, LVT_LINT0, 0x8000 | 0x52)
    a.set_lint0(True)
    assert rd(a, LVT_LINT0) & (1 << 14)
    assert a.ack() == 0x52
    wr(a, EOI, 0)
    assert a.highest_pending() == 0x52  # still asserted: delivered again
    a.set_lint0(False)
    a.ack()
    wr(a, EOI, 0)
    assert a.irr == 0 and not rd(a, LVT_LINT0) & (1 << 14)


# -- INIT / SIPI -----------------------------------------------------------------------------
def test_init_sipi_sequence() -> None:
    """SDM 8.4.4.1: INIT puts an AP in wait-for-SIPI; the first SIPI's vector starts it and a
    second SIPI is ignored. INIT keeps the APIC ID (SDM 10.4.7.3)."""
    _, (bsp, ap) = apics(2)
    enable(bsp)
    enable(ap)
    wr(ap, ID, 7 << 24)
    wr(bsp, ICR_HI, 7 << 24)
    wr(bsp, ICR_LO, 0xC500)  # INIT, level assert
    assert ap.take_init()
    ap.init_reset()
    assert rd(ap, ID) == 7 << 24 and rd(ap, SVR) == 0xFF
    wr(bsp, ICR_LO, 0x8500)  # INIT level de-assert: no INIT
    assert not ap.pending_init
    wr(bsp, ICR_LO, 0x69A)  # SIPI vector 0x9A
    wr(bsp, ICR_LO, 0x69B)
    assert ap.intr.level
    assert ap.take_sipi() == 0x9A
    wr(bsp, ICR_LO, 0x69C)
    assert ap.take_sipi() is None


def test_sipi_right_behind_init_survives_init_processing() -> None:
    """Firmware sends INIT then SIPI back to back; the AP must start whichever order the
    vCPU loop handles the two events in (SDM 8.4.4.1 INIT-SIPI-SIPI)."""
    _, (bsp, ap) = apics(2)
    enable(bsp)
    wr(bsp, ICR_LO, (3 << 18) | 0x4500)  # INIT to all excluding self
    wr(bsp, ICR_LO, (3 << 18) | 0x4610)  # SIPI vector 0x10
    assert ap.take_init()
    ap.init_reset()
    assert ap.take_sipi() == 0x10
    assert not bsp.pending_init and bsp.take_sipi() is None


# -- qtest ------------------------------------------------------------------------------------
def test_cpu0_window_through_qtest() -> None:
    """The pc machine decodes CPU 0's xAPIC window at 0xFEE00000 for CPU-less use."""
    m = PcMachine(PcConfig(smp=2))
    out: list[str] = []
    s = QtestSession(m, out.append)

    def ask(line: str) -> str:
        return qtesting.ask(s, out, line)

    assert ask("readl 0xfee00030") == "OK 0x0000000000050014\n"
    assert ask("readl 0xfee00020") == "OK 0x0000000000000000\n"
    assert ask("writel 0xfee00080 0x35") == "OK\n"
    assert ask("readl 0xfee000a0") == "OK 0x0000000000000035\n"
    assert ask("writel 0xfee000f0 0x1ff") == "OK\n"
    assert ask("writel 0xfee00320 0x20030") == "OK\n"
    assert ask("writel 0xfee003e0 0xb") == "OK\n"
    assert ask("writel 0xfee00380 1000") == "OK\n"
    assert ask("clock_step 400") == "OK 400\n"
    assert ask("readl 0xfee00390") == "OK 0x0000000000000258\n"
    assert len(m.lapics) == 2 and m.lapics[1].apic_id == 1


# -- state -----------------------------------------------------------------------------------
def test_save_restore_round_trip_with_running_timer() -> None:
    clock, a = one()
    enable(a)
    wr(a, LVT_TIMER, (1 << 17) | 0x31)
    wr(a, TIMER_DCR, 0xB)
    wr(a, TIMER_INIT, 1_000_000)
    clock.advance(700_000)
    a.accept(0x80, level_triggered=True)
    a.ack()
    state = a.save()
    clock2 = ManualClock(5000)
    b = LocalApic(0, clock2, ApicBus(), bsp=True)
    b.restore(state)
    assert b.save() == state
    assert rd(b, TIMER_CUR) == rd(a, TIMER_CUR)
    clock.advance(600_000)
    clock2.advance(600_000)
    assert a.irr == b.irr and a.irr >> 0x31 & 1


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("irr", 1 << 3),
        ("isr", 1 << 300),
        ("apic_base", 0xFEE00400),
        ("apic_base", 0xFEE00001),
        ("lvt", [0x10000] * 5),
        ("lvt", [0x10000 | 3 << 17] + [0x10000] * 5),
        ("lvt", [0x20000000] + [0x10000] * 5),
        ("svr", 0x11FF),
        ("sipi_vector", 0x10),
        ("initial_id", 1),
        ("dcr", 4),
        ("lint_level", [True]),
        ("pending_nmi", 1),
    ],
)
def test_restore_rejects_impossible_states(key: str, value: object) -> None:
    _, a = one()
    state = a.save()
    state[key] = value
    with pytest.raises(StateError):
        a.restore(state)


# -- Hypothesis ------------------------------------------------------------------------------
REG_OFFSETS = [i * 0x10 for i in range(0x40)] + [0x400, 0xFF0, 0x2F4]
MSRS = [BASE_MSR, TSC_DEADLINE_MSR, *range(0x800, 0x840)]

op = st.one_of(
    st.tuples(st.just("w"), st.sampled_from(REG_OFFSETS), st.integers(0, 0xFFFFFFFF)),
    st.tuples(st.just("r"), st.sampled_from(REG_OFFSETS), st.just(0)),
    st.tuples(st.just("msr"), st.sampled_from(MSRS), st.integers(0, (1 << 64) - 1)),
    st.tuples(st.just("base"), st.sampled_from([0xFEE00000, 0xFEE00800, 0xFEE00C00]), st.just(0)),
    st.tuples(st.just("accept"), st.integers(0, 255), st.booleans()),
    st.tuples(st.just("ack"), st.just(0), st.just(0)),
    st.tuples(st.just("lint"), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("tick"), st.integers(0, 5000), st.just(0)),
    st.tuples(st.just("take"), st.just(0), st.just(0)),
)


def check_invariants(a: LocalApic) -> None:
    assert a.irr & 0xFFFF == 0 and a.isr & 0xFFFF == 0  # vectors 0-15 are never accepted
    isrv = a.isr.bit_length() - 1 if a.isr else 0
    ppr = a.tpr if a.tpr >> 4 >= isrv >> 4 else isrv & 0xF0
    assert a.ppr() == ppr
    pending = a.highest_pending()
    assert pending is None or (pending >> 4 > ppr >> 4 and a.irr >> pending & 1)
    assert a.intr.level == (
        pending is not None
        or a.extint_requested()
        or a.pending_nmi
        or a.pending_smi
        or a.pending_init
        or a.sipi_vector is not None
    )
    assert 0 <= a.current_count() <= a.initial_count
    assert a.isr | a.irr | a.tmr < 1 << 256


@settings(max_examples=150, deadline=None)
@given(st.lists(op, max_size=60))
def test_any_access_sequence_keeps_invariants_and_round_trips(ops: list[Any]) -> None:
    clock, (a, b) = apics(2)
    for kind, x, y in ops:
        if kind == "w":
            a.write(x, 4, y)
        elif kind == "r":
            assert 0 <= a.read(x, 4) <= 0xFFFFFFFF
        elif kind == "msr":
            a.write_msr(x, y)
            v = a.read_msr(x)
            assert v is None or 0 <= v < 1 << 64
        elif kind == "base":
            a.write_msr(BASE_MSR, x | 0x100)
        elif kind == "accept":
            a.accept(x, y)
        elif kind == "ack":
            v = a.ack()
            assert 0 <= v <= 255
        elif kind == "lint":
            a._set_lint(x, y)
        elif kind == "tick":
            clock.advance(x)
        else:
            a.take_nmi()
            a.take_init()
            a.take_sipi()
        check_invariants(a)
        check_invariants(b)
    state = a.save()
    c = LocalApic(0, ManualClock(clock.now()), ApicBus(), bsp=True)
    c.restore(state)
    assert c.save() == state
