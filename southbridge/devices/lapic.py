"""A local APIC (Intel SDM vol. 3 chapter 10): xAPIC MMIO window, x2APIC MSRs and timer.

One `LocalApic` per vCPU. The vCPU side (the KVM run loop) uses:

* `intr` — an `IrqLine` that is high while anything is waiting for the CPU: a deliverable
  vector (`highest_pending()`), the PIC through LINT0 in ExtINT mode (`extint_requested()`),
  or an NMI, SMI, INIT or SIPI event. The loop waits on it to wake a halted vCPU.
* `ack()` — the interrupt acknowledge the CPU performs on injection: IRR to ISR; the
  spurious vector when the pending vector was masked by the TPR meanwhile (SDM 10.9). When
  only `extint_requested()` holds, the vector comes from the PIC's own acknowledge instead
  (QEMU serves the APIC's IRR first, then the PIC).
* `take_nmi()`, `take_smi()`, `take_init()` (then `init_reset()`), `take_sipi()`.
* `read_msr` / `write_msr` for IA32_APIC_BASE (0x1B), IA32_TSC_DEADLINE (0x6E0) and the
  x2APIC range 0x800-0x8FF: `read_msr` returns None and `write_msr` False where the CPU
  raises #GP. `cr8` mirrors TPR[7:4].

Choices where the SDM leaves room, with the peer that agrees:

* Version 0x00050014 like QEMU: six LVT entries (timer, thermal, performance, LINT0, LINT1,
  error); there is no CMCI entry, so 0x2F0 is an unimplemented register. With
  `directed_eoi=True` version bit 24 advertises EOI-broadcast suppression (SVR bit 12).
* The timer counts at 1 GHz before the divider (QEMU and KVM use the same bus clock).
* After power-up the BSP's LINT0 is ExtINT and unmasked, as QEMU sets it, so the PIC
  reaches CPU 0 before firmware programs the APIC.
* Interrupt inputs (LINT0/1) are logical "asserted" levels; the polarity bit is stored but
  does not invert them (QEMU, KVM and Xen all do this).
* Software disabled (SVR bit 8 clear, SDM 10.4.7.2): writing SVR masks every LVT and masks
  stay set; fixed and lowest-priority messages are not accepted (Xen); INIT, NMI, SMI and
  SIPI still are; vectors already in IRR are still dispatched.
* Hardware disabled (IA32_APIC_BASE EN clear): the MMIO window is not decoded (reads all
  ones), no message is accepted, LINT0/LINT1 act as the CPU's INTR and NMI pins, and the
  registers return to their power-up state (SDM 10.4.3 allows it; Xen does it).
* A periodic timer tick that finds its vector still pending in IRR changes nothing (one
  IRR bit per vector), so the timer is not re-armed until the CPU acknowledges that vector.
  With `timer_reinject=True` missed periodic ticks are owed instead and each EOI of the
  timer vector delivers the next (acknowledge-paced, like the PIT's "delay" policy).
* Periodic interrupts come at most every `min_timer_period_ns` (200 us, KVM's
  `min_timer_period_us` default, arch/x86/kvm/x86.c), whatever initial count and divider
  ask for: a count of 1 at divide 1 (or an illegal LVT vector that never sets IRR) cannot
  flood the clock with callbacks. The current-count register still reads the programmed
  count exactly; only the interrupt rate is clamped, counted in `clamped_ticks`.

The xAPIC window is registered per vCPU by the run loop (it follows IA32_APIC_BASE through
`relocate_hook`); CPU-less machines register CPU 0's window on the MMIO bus.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from southbridge.core.clock import NS_PER_SEC, Clock
from southbridge.core.device import BusDevice
from southbridge.core.irq import IrqLine
from southbridge.core.ratelog import RateLimitedLog
from southbridge.devices import lapic_state
from southbridge.devices.apicbus import (
    DM_EXTINT,
    DM_FIXED,
    DM_INIT,
    DM_LOWEST,
    DM_NMI,
    DM_REMOTE_READ,
    DM_SIPI,
    DM_SMI,
    SH_SELF,
    X2APIC_BROADCAST,
    XAPIC_BROADCAST,
    ApicBus,
    ApicMessage,
)

# The register map lives in lapic_regs (shared with lapic_state); every name stays importable
# from here, as before the split.
from southbridge.devices.lapic_regs import *  # noqa: F403

logger = logging.getLogger("southbridge.lapic")


def _top(bits: int) -> int | None:
    """The highest vector set in a 256-bit register image, or None."""
    return bits.bit_length() - 1 if bits else None


class LocalApic(BusDevice):
    """One local APIC; also the `BusDevice` of its 4 KiB xAPIC MMIO window."""

    STATE_KIND: ClassVar[str] = "lapic"
    STATE_VERSION: ClassVar[int] = 1

    io_sizes = frozenset({1, 2, 4})

    def __init__(
        self,
        apic_id: int,
        clock: Clock,
        bus: ApicBus | None = None,
        bsp: bool = False,
        tsc_hz: int = NS_PER_SEC,
        phys_bits: int = 40,
        directed_eoi: bool = False,
        log: RateLimitedLog | None = None,
        timer_reinject: bool = False,
        min_timer_period_ns: int = MIN_TIMER_PERIOD_NS,
    ) -> None:
        if not 0 <= apic_id < X2APIC_BROADCAST:
            raise ValueError(f"APIC ID {apic_id} out of range")
        if tsc_hz <= 0:
            raise ValueError("tsc_hz must be positive")
        self.initial_id = apic_id
        self.name = f"lapic{apic_id}"
        self.clock = clock
        self.bus = bus if bus is not None else ApicBus()
        self.bus.attach(self)
        self.tsc_hz = tsc_hz
        self.tsc_offset = 0  # guest TSC at clock time 0; the run loop keeps it in sync
        self.phys_bits = phys_bits
        self.directed_eoi = directed_eoi
        self.log = log if log is not None else RateLimitedLog(logger)
        if min_timer_period_ns < 1:
            raise ValueError("min_timer_period_ns must be positive")
        self.timer_reinject = timer_reinject
        self.min_timer_period_ns = min_timer_period_ns
        self.clamped_ticks = 0  # periodic interrupts delayed to the minimum period
        self._timer_seen = 0  # periodic: periods counted so far since timer_load
        self._timer_owed = 0  # timer_reinject: periodic ticks not delivered yet
        self._timer_awaiting = False  # timer_reinject: a tick awaits its EOI
        self.intr = IrqLine(f"lapic{apic_id}-intr")
        self.relocate_hook: Callable[[LocalApic], None] | None = None
        # Called whenever an NMI, SMI, INIT or SIPI is latched: these must reach the CPU
        # even while `intr` is already high for a maskable interrupt it cannot take (IF=0),
        # so the run loop cannot rely on an edge of `intr` for them.
        self.event_hook: Callable[[], None] | None = None
        self._timer = clock.timer(self._on_timer, f"lapic{apic_id}-timer")
        self.apic_base = DEFAULT_BASE | BASE_EN | (BASE_BSP if bsp else 0)
        self.lint_level = [False, False]
        self._power_up_registers()
        self.waiting_for_sipi = not bsp
        self.reset()

    # -- reset ---------------------------------------------------------------------------
    def _power_up_registers(self) -> None:
        """SDM 10.4.7.1: the register state after power-up (IA32_APIC_BASE untouched)."""
        self.xapic_id = self.initial_id & 0xFF
        self.tpr = 0
        self.ldr = 0
        self.dfr = 0xF  # bits 31:28; flat model
        self.svr = 0xFF
        self.irr = self.isr = self.tmr = 0
        self.esr = self.esr_pending = 0
        self.icr = 0
        self.lvt = [LVT_MASKED] * LVT_COUNT
        self.lint_remote_irr = [False, False]
        self.initial_count = 0
        self.dcr = 0
        self.timer_load = self.clock.now()
        self.tsc_deadline = 0
        self._timer.cancel()
        self._timer_rebase()
        self.pending_nmi = self.pending_smi = self.pending_init = False
        self.extint_level = False  # ExtINT asserted by an IOAPIC pin (virtual wire via IOAPIC)
        self.sipi_vector: int | None = None

    def reset(self) -> None:
        """Power-up/RESET: xAPIC mode at 0xFEE00000; the BSP's LINT0 is ExtINT (see above)."""
        self.apic_base = DEFAULT_BASE | BASE_EN | (self.apic_base & BASE_BSP)
        self._power_up_registers()
        if self.bsp:
            self.lvt[LVT_LINT0] = DM_EXTINT << 8
        self.waiting_for_sipi = not self.bsp
        self._relocated()
        self._update()

    def init_reset(self) -> None:
        """INIT (SDM 10.4.7.3): power-up state except the APIC ID and IA32_APIC_BASE.

        Events that arrived after the INIT (a SIPI sent right behind it, an NMI) are CPU-side
        latches and survive, so the run loop may process INIT and SIPI in either order."""
        keep = (self.xapic_id, self.sipi_vector, self.pending_nmi, self.pending_smi)
        self._power_up_registers()
        self.xapic_id, self.sipi_vector, self.pending_nmi, self.pending_smi = keep
        self.waiting_for_sipi = not self.bsp
        self._update()

    # -- modes ---------------------------------------------------------------------------
    @property
    def bsp(self) -> bool:
        return bool(self.apic_base & BASE_BSP)

    @property
    def hw_enabled(self) -> bool:
        return bool(self.apic_base & BASE_EN)

    @property
    def x2apic(self) -> bool:
        return bool(self.apic_base & BASE_EN and self.apic_base & BASE_EXTD)

    @property
    def sw_enabled(self) -> bool:
        return self.hw_enabled and bool(self.svr & SVR_ENABLE)

    @property
    def focus_checking(self) -> bool:
        return not self.svr & SVR_FOCUS_DISABLE

    @property
    def base_address(self) -> int:
        return self.apic_base & ~0xFFF & ((1 << self.phys_bits) - 1)

    @property
    def mmio_decoded(self) -> bool:
        """Whether the xAPIC window answers (enabled and not in x2APIC mode, SDM 10.12.2)."""
        return self.hw_enabled and not self.x2apic

    @property
    def apic_id(self) -> int:
        """The ID destinations match: the x2APIC ID in x2APIC mode, else the xAPIC ID."""
        return self.initial_id if self.x2apic else self.xapic_id

    @property
    def version(self) -> int:
        return VERSION | (VERSION_DIRECTED_EOI if self.directed_eoi else 0)

    @property
    def x2apic_ldr(self) -> int:
        """SDM 10.12.10.2: cluster ID = x2APIC ID[19:4], bit (ID[3:0]) within the cluster."""
        return ((self.initial_id >> 4) << 16) | (1 << (self.initial_id & 0xF))

    # -- priorities ----------------------------------------------------------------------
    def ppr(self) -> int:
        """Processor priority (SDM 10.8.3.1)."""
        isrv = _top(self.isr) or 0
        if (self.tpr >> 4) >= (isrv >> 4):
            return self.tpr
        return isrv & 0xF0

    def arbitration_priority(self) -> int:
        """Arbitration priority (SDM 10.6.2.4, the APR register)."""
        irrv = _top(self.irr) or 0
        isrv = _top(self.isr) or 0
        if (self.tpr >> 4) >= (irrv >> 4) and (self.tpr >> 4) > (isrv >> 4):
            return self.tpr
        return max(self.tpr & 0xF0, irrv & 0xF0, isrv & 0xF0)

    @property
    def cr8(self) -> int:
        return self.tpr >> 4

    @cr8.setter
    def cr8(self, value: int) -> None:
        self.tpr = (value & 0xF) << 4
        self._update()

    def highest_pending(self) -> int | None:
        """The IRR vector the CPU would be interrupted with, if its class beats the PPR."""
        irrv = _top(self.irr)
        if irrv is None or (irrv >> 4) <= (self.ppr() >> 4):
            return None
        return irrv

    def has_vector(self, vector: int) -> bool:
        return bool((self.irr | self.isr) >> vector & 1)

    # -- the CPU side --------------------------------------------------------------------
    def lint0_extint(self) -> bool:
        """Whether the PIC's INTR is this CPU's interrupt: LINT0 unmasked in ExtINT mode, or
        the APIC hardware-disabled (LINT0 is then the INTR pin itself)."""
        if not self.hw_enabled:
            return True
        lvt = self.lvt[LVT_LINT0]
        return not lvt & LVT_MASKED and (lvt >> 8) & 7 == DM_EXTINT

    def extint_requested(self) -> bool:
        """Whether the CPU should take a vector from the PIC (its INTA cycle) now."""
        return (self.lint0_extint() and self.lint_level[0]) or (
            self.extint_level and self.hw_enabled
        )

    def interrupt_pending(self) -> bool:
        """A maskable interrupt (RFLAGS.IF applies) is waiting: an IRR vector or ExtINT."""
        return self.highest_pending() is not None or self.extint_requested()

    def ack(self) -> int:
        """Interrupt acknowledge: the highest pending vector moves from IRR to ISR."""
        vector = self.highest_pending()
        if vector is None:
            self._update()
            return self.svr & 0xFF  # spurious interrupt: nothing set in service (SDM 10.9)
        bit = 1 << vector
        self.irr &= ~bit
        self.isr |= bit
        if vector == self.lvt[LVT_TIMER] & 0xFF:
            self._timer_update()  # a coalesced periodic tick may count again
        self._update()
        return vector

    def take_nmi(self) -> bool:
        taken, self.pending_nmi = self.pending_nmi, False
        self._update()
        return taken

    def take_smi(self) -> bool:
        taken, self.pending_smi = self.pending_smi, False
        self._update()
        return taken

    def take_init(self) -> bool:
        taken, self.pending_init = self.pending_init, False
        self._update()
        return taken

    def take_sipi(self) -> int | None:
        """The start-up vector of a SIPI received in wait-for-SIPI state, once."""
        vector, self.sipi_vector = self.sipi_vector, None
        if vector is not None:
            self.waiting_for_sipi = False
        self._update()
        return vector

    def _wants_cpu(self) -> bool:
        return (
            self.pending_nmi
            or self.pending_smi
            or self.pending_init
            or self.sipi_vector is not None
            or self.interrupt_pending()
        )

    def _update(self) -> None:
        self.intr.set(self._wants_cpu())
        hook = self.event_hook
        if hook is not None and (
            self.pending_nmi
            or self.pending_smi
            or self.pending_init
            or self.sipi_vector is not None
        ):
            hook()

    # -- message acceptance --------------------------------------------------------------
    def matches_physical(self, dest: int, x2apic_format: bool) -> bool:
        # 0xFF in the 8-bit format reaches x2APIC-mode APICs too (IOAPIC and MSI broadcasts).
        if dest == (X2APIC_BROADCAST if x2apic_format else XAPIC_BROADCAST):
            return True
        return dest == self.apic_id

    def matches_logical(self, dest: int, x2apic_format: bool) -> bool:
        if self.x2apic:
            if dest == X2APIC_BROADCAST or (not x2apic_format and dest == XAPIC_BROADCAST):
                return True
            ldr = self.x2apic_ldr
            return dest >> 16 == ldr >> 16 and bool(dest & ldr & 0xFFFF)
        dest &= 0xFF
        if dest == XAPIC_BROADCAST:
            return True
        ldr = self.ldr >> 24
        if self.dfr == 0xF:  # flat model: 8-bit mask
            return bool(ldr & dest)
        cluster = dest >> 4  # cluster model: cluster 0xF addresses every cluster
        return (cluster == 0xF or cluster == ldr >> 4) and bool(ldr & dest & 0xF)

    def accept(self, vector: int, level_triggered: bool = False) -> bool:
        """Set `vector` in IRR (and TMR for level-triggered); vectors 0-15 are illegal."""
        vector &= 0xFF
        if vector < 16:
            self._error(ESR_RECV_ILLEGAL_VECTOR)
            return False
        bit = 1 << vector
        self.irr |= bit
        self.tmr = (self.tmr | bit) if level_triggered else (self.tmr & ~bit)
        self._update()
        return True

    def receive(self, msg: ApicMessage) -> bool:
        """A message from the APIC bus addressed to this APIC; returns whether accepted."""
        if not self.hw_enabled:
            return False
        dm = msg.delivery_mode
        if dm in (DM_FIXED, DM_LOWEST):
            if not self.svr & SVR_ENABLE:
                self.log.debug(
                    f"{self.name}:swdis", "%s: software disabled, vector dropped", self.name
                )
                return False
            return self.accept(msg.vector, msg.level_triggered)
        if dm == DM_NMI:
            self.pending_nmi = True
        elif dm == DM_SMI:
            self.pending_smi = True
        elif dm == DM_INIT:
            # INIT puts an AP in wait-for-SIPI; a SIPI latched before it is stale.
            self.pending_init = True
            self.sipi_vector = None
            self.waiting_for_sipi = not self.bsp
        elif dm == DM_SIPI:
            # SIPI only means something to a processor waiting for it (SDM 8.4.4.1).
            if not self.waiting_for_sipi or self.sipi_vector is not None:
                return False
            self.sipi_vector = msg.vector & 0xFF
        elif dm == DM_EXTINT:
            self.extint_level = msg.assert_
        else:
            return False
        self._update()
        return True

    # -- errors --------------------------------------------------------------------------
    def _error(self, bits: int) -> None:
        """Latch an error; a newly detected one raises the error LVT (SDM 10.5.3)."""
        new = bits & ~self.esr_pending
        self.esr_pending |= bits
        if new:
            self._lvt_fire(LVT_ERROR)

    # -- local interrupts ----------------------------------------------------------------
    def _lvt_fire(self, n: int, level_triggered: bool = False) -> bool:
        """Deliver local interrupt source `n` through its LVT entry (if unmasked)."""
        lvt = self.lvt[n]
        if lvt & LVT_MASKED or not self.hw_enabled:
            return False
        dm = (lvt >> 8) & 7
        if n in (LVT_TIMER, LVT_ERROR):
            dm = DM_FIXED  # these entries have no delivery mode field
        if dm == DM_FIXED:
            return self.accept(lvt & 0xFF, level_triggered)
        if dm == DM_NMI:
            self.pending_nmi = True
        elif dm == DM_SMI:
            self.pending_smi = True
        elif dm == DM_INIT:
            self.pending_init = True
        elif dm == DM_EXTINT:
            pass  # the PIC's INTR level is polled through extint_requested()
        else:
            self.log.debug(
                f"{self.name}:lvtdm", "%s: LVT %s delivery mode %d", self.name, LVT_NAMES[n], dm
            )
            return False
        self._update()
        return True

    def set_lint0(self, level: bool) -> None:
        """The LINT0 pin (wired to the PIC's INTR on a PC)."""
        self._set_lint(0, bool(level))

    def set_lint1(self, level: bool) -> None:
        """The LINT1 pin (NMI on a PC)."""
        self._set_lint(1, bool(level))

    def _set_lint(self, n: int, level: bool) -> None:
        was = self.lint_level[n]
        self.lint_level[n] = level
        if not self.hw_enabled:
            if n == 1 and level and not was:
                self.pending_nmi = True  # LINT1 is the NMI pin of an APIC-less CPU
            self._update()
            return
        if self._lint_level_mode(n):
            self._lint_service(n)
        elif level and not was:
            self._lvt_fire(LVT_LINT0 + n)
        self._update()

    def _lint_level_mode(self, n: int) -> bool:
        # Only fixed delivery is level-sensitive; LINT1 is always edge (SDM 10.5.1).
        lvt = self.lvt[LVT_LINT0 + n]
        return n == 0 and (lvt >> 8) & 7 == DM_FIXED and bool(lvt & LVT_LEVEL)

    def _lint_service(self, n: int) -> None:
        """A level-triggered LINT delivers while asserted and its remote IRR is clear."""
        if (
            self.lint_level[n]
            and not self.lint_remote_irr[n]
            and self._lvt_fire(LVT_LINT0 + n, True)
        ):
            self.lint_remote_irr[n] = True

    # -- EOI -----------------------------------------------------------------------------
    def eoi(self) -> None:
        """End of interrupt: clear the highest ISR bit; level vectors broadcast an EOI."""
        vector = _top(self.isr)
        if vector is None:
            self._update()
            return
        bit = 1 << vector
        self.isr &= ~bit
        if self.tmr & bit:
            for n in (0, 1):
                if self.lint_remote_irr[n] and self.lvt[LVT_LINT0 + n] & 0xFF == vector:
                    self.lint_remote_irr[n] = False
                    self._lint_service(n)
            if not (self.directed_eoi and self.svr & SVR_SUPPRESS_EOI):
                self.bus.broadcast_eoi(vector)
        self._update()
        self._timer_eoi(vector)
        self.bus.notify_ack(vector)

    # -- timer ---------------------------------------------------------------------------
    def timer_mode(self) -> int:
        return (self.lvt[LVT_TIMER] >> 17) & 3

    def divisor(self) -> int:
        """Divide configuration (SDM figure 10-10): bits 3,1:0 encode 2, 4, ... 128, 1."""
        v = (self.dcr & 3) | ((self.dcr >> 1) & 4)
        return 1 << ((v + 1) & 7)

    def _counting(self) -> bool:
        return self.timer_mode() != TIMER_TSC_DEADLINE and self.initial_count != 0

    def _oneshot_expiry(self) -> int:
        return self.timer_load + self.initial_count * self.divisor()

    def current_count(self) -> int:
        """The current-count register, computed from the clock (never ticked)."""
        if not self._counting():
            return 0
        ticks = max(0, self.clock.now() - self.timer_load) // self.divisor()
        if self.timer_mode() == TIMER_PERIODIC:
            return self.initial_count - ticks % self.initial_count
        return max(0, self.initial_count - ticks)

    def tsc_now(self) -> int:
        return self.tsc_offset + self.clock.now() * self.tsc_hz // NS_PER_SEC

    def _tsc_to_ns(self, tsc: int) -> int:
        delta = tsc - self.tsc_offset
        return -((-delta * NS_PER_SEC) // self.tsc_hz)  # round up: never fire early

    def _timer_deliverable(self) -> bool:
        return self.hw_enabled and not self.lvt[LVT_TIMER] & LVT_MASKED

    def _timer_update(self) -> None:
        """Arm the clock timer for the next instant the timer interrupts, or cancel it."""
        now = self.clock.now()
        mode = self.timer_mode()
        if mode == TIMER_TSC_DEADLINE:
            if self.tsc_deadline and now >= self._tsc_to_ns(self.tsc_deadline):
                # Expired while it could not interrupt (masked): the MSR reads 0 after expiry.
                self.tsc_deadline = 0
            if self.tsc_deadline and self._timer_deliverable():
                self._timer.arm(self._tsc_to_ns(self.tsc_deadline))
            else:
                self._timer.cancel()
            return
        if not self._counting() or not self._timer_deliverable():
            self._timer.cancel()
            return
        if mode == TIMER_PERIODIC:
            vector = self.lvt[LVT_TIMER] & 0xFF
            if not self.timer_reinject and self.irr >> vector & 1:
                self._timer.cancel()  # coalesced: ack() re-arms
                return
            period = self._timer_period()
            self._timer.arm(self.timer_load + (self._period_index(now) + 1) * period)
            return
        expiry = self._oneshot_expiry()
        if now < expiry:
            self._timer.arm(expiry)
        else:
            self._timer.cancel()

    def _on_timer(self) -> None:
        now = self.clock.now()
        mode = self.timer_mode()
        if mode == TIMER_TSC_DEADLINE:
            if not self.tsc_deadline or now < self._tsc_to_ns(self.tsc_deadline):
                self._timer_update()
                return
            self.tsc_deadline = 0
            self._lvt_fire(LVT_TIMER)
        elif self._counting():
            if mode == TIMER_PERIODIC:
                self._periodic_tick(now)
            elif now >= self._oneshot_expiry():
                self._lvt_fire(LVT_TIMER)
            self._timer_update()
        self._update()

    # -- periodic rate clamp and reinjection ---------------------------------------------
    def _timer_period(self) -> int:
        """The periodic interrupt interval: the programmed one, at least the minimum."""
        return max(self.initial_count * self.divisor(), self.min_timer_period_ns)

    def _period_index(self, now: int) -> int:
        return max(0, now - self.timer_load) // self._timer_period()

    def _timer_rebase(self) -> None:
        """The timer was (re)programmed: count periods afresh and forget owed ticks."""
        self._timer_seen = 0
        if self._counting() and self.timer_mode() == TIMER_PERIODIC:
            self._timer_seen = self._period_index(self.clock.now())
        self._timer_owed = 0
        self._timer_awaiting = False

    def _periodic_tick(self, now: int) -> None:
        index = self._period_index(now)
        new = max(0, index - self._timer_seen)
        self._timer_seen = index
        if new and self.initial_count * self.divisor() < self.min_timer_period_ns:
            self.clamped_ticks += new
        if not self.timer_reinject:
            if new:
                self._lvt_fire(LVT_TIMER)
            return
        self._timer_owed = min(TIMER_MAX_OWED, self._timer_owed + new)
        if self._timer_awaiting and self._timer_owed >= TIMER_MAX_OWED:
            # A second owed without an EOI: the tick was lost (masked, vector below 16,
            # APIC disabled): start afresh rather than wait forever.
            self._timer_owed, self._timer_awaiting = 1, False
        self._timer_deliver()

    def _timer_deliver(self) -> None:
        if self._timer_owed and not self._timer_awaiting:
            self._timer_owed -= 1
            self._timer_awaiting = self._lvt_fire(LVT_TIMER)

    def _timer_eoi(self, vector: int) -> None:
        """An EOI of `vector`: under timer_reinject, the timer's next owed tick."""
        if (
            self.timer_reinject
            and vector == self.lvt[LVT_TIMER] & 0xFF
            and self.timer_mode() == TIMER_PERIODIC
        ):
            self._timer_awaiting = False
            self._timer_deliver()
            self._update()

    def write_tsc_deadline(self, value: int) -> None:
        """IA32_TSC_DEADLINE: ignored unless the timer is in TSC-deadline mode; 0 disarms."""
        if self.timer_mode() != TIMER_TSC_DEADLINE:
            return
        self.tsc_deadline = value & ((1 << 64) - 1)
        if self.tsc_deadline and self.clock.now() >= self._tsc_to_ns(self.tsc_deadline):
            # A deadline already passed interrupts at once.
            self.tsc_deadline = 0
            self._timer.cancel()
            self._lvt_fire(LVT_TIMER)
            self._update()
            return
        self._timer_update()

    def read_tsc_deadline(self) -> int:
        if self.timer_mode() != TIMER_TSC_DEADLINE:
            return 0
        if self.tsc_deadline and self.clock.now() >= self._tsc_to_ns(self.tsc_deadline):
            return 0
        return self.tsc_deadline

    def _write_initial_count(self, value: int) -> None:
        if self.timer_mode() == TIMER_TSC_DEADLINE:
            return  # SDM 10.5.4.1: ignored in TSC-deadline mode
        self.initial_count = value & U32
        self.timer_load = self.clock.now()
        self._timer_rebase()
        self._timer_update()

    def _write_dcr(self, value: int) -> None:
        # Keep the current count across a divider change, as KVM does; only the rate changes.
        count = self.current_count() if self._counting() else 0
        self.dcr = value & 0xB
        if self._counting():
            self.timer_load = self.clock.now() - (self.initial_count - count) * self.divisor()
        self._timer_rebase()
        self._timer_update()

    # -- LVT / SVR -----------------------------------------------------------------------
    def _write_lvt(self, n: int, value: int) -> None:
        old = self.lvt[n]
        new = value & LVT_WRITABLE[n]
        if n == LVT_TIMER:
            old_mode, new_mode = (old >> 17) & 3, (new >> 17) & 3
            if new_mode == 3:
                self.log.debug(f"{self.name}:tmode", "%s: reserved timer mode 3", self.name)
                new = (new & ~(3 << 17)) | (old_mode << 17)
                new_mode = old_mode
            if (old_mode == TIMER_TSC_DEADLINE) != (new_mode == TIMER_TSC_DEADLINE):
                # Changing to or from TSC-deadline mode disarms the timer (SDM 10.5.4.1).
                self.initial_count = 0
                self.tsc_deadline = 0
        if not self.svr & SVR_ENABLE:
            new |= LVT_MASKED  # software disabled: masks cannot be cleared (SDM 10.4.7.2)
        self.lvt[n] = new
        if n == LVT_TIMER:
            if (old ^ new) >> 17 & 3:
                self._timer_rebase()  # a mode change restarts the period count
            self._timer_update()
        elif n in (LVT_LINT0, LVT_LINT1):
            if not self._lint_level_mode(n - LVT_LINT0):
                self.lint_remote_irr[n - LVT_LINT0] = False
            else:
                self._lint_service(n - LVT_LINT0)  # unmasking an asserted level line
        self._update()

    def _write_svr(self, value: int) -> None:
        mask = 0x3FF | (SVR_SUPPRESS_EOI if self.directed_eoi else 0)
        self.svr = value & mask
        if not self.svr & SVR_ENABLE:
            for n in range(LVT_COUNT):
                self.lvt[n] |= LVT_MASKED
            self._timer_update()
        self._update()

    def _lvt_read(self, n: int) -> int:
        value = self.lvt[n]
        if n in (LVT_LINT0, LVT_LINT1) and self.lint_remote_irr[n - LVT_LINT0]:
            value |= LVT_REMOTE_IRR
        return value

    # -- IPIs ----------------------------------------------------------------------------
    def _send_ipi(self) -> None:
        icr = self.icr
        vector, dm = icr & 0xFF, (icr >> 8) & 7
        if dm in (DM_REMOTE_READ, DM_EXTINT) or (dm == DM_SIPI and icr & ICR_LEVEL):
            self.log.debug(f"{self.name}:icrdm", "%s: ICR delivery mode %d", self.name, dm)
            return
        if dm in (DM_FIXED, DM_LOWEST) and vector < 16:
            self._error(ESR_SEND_ILLEGAL_VECTOR)
            return
        msg = ApicMessage(
            vector=vector,
            delivery_mode=dm,
            dest=(icr >> 32) if self.x2apic else (icr >> 56) & 0xFF,
            logical=bool(icr & ICR_LOGICAL),
            level_triggered=bool(icr & ICR_LEVEL),
            assert_=bool(icr & ICR_ASSERT),
            shorthand=(icr >> 18) & 3,
            x2apic=self.x2apic,
        )
        if msg.shorthand == SH_SELF and dm != DM_FIXED:
            # Self accepts only fixed delivery (SDM table 10-3).
            self.log.debug(f"{self.name}:self", "%s: self IPI mode %d dropped", self.name, dm)
            return
        self.bus.deliver(msg, source=self)

    # -- register file -------------------------------------------------------------------
    def _read_reg(self, index: int) -> int | None:
        """A register's value, shared by MMIO and MSR access; None if unimplemented."""
        if index == R_ID:
            return self.initial_id if self.x2apic else self.xapic_id << 24
        if index == R_VERSION:
            return self.version
        if index == R_TPR:
            return self.tpr
        if index == R_APR:
            return self.arbitration_priority()
        if index == R_PPR:
            return self.ppr()
        if index in (R_EOI, R_RRD):
            return 0  # EOI is write-only; remote read is not supported
        if index == R_LDR:
            return self.x2apic_ldr if self.x2apic else self.ldr
        if index == R_DFR:
            return (self.dfr << 28) | 0x0FFFFFFF
        if index == R_SVR:
            return self.svr
        if R_ISR <= index < R_ISR + 8:
            return (self.isr >> (32 * (index - R_ISR))) & U32
        if R_TMR <= index < R_TMR + 8:
            return (self.tmr >> (32 * (index - R_TMR))) & U32
        if R_IRR <= index < R_IRR + 8:
            return (self.irr >> (32 * (index - R_IRR))) & U32
        if index == R_ESR:
            return self.esr
        if index == R_ICR_LO:
            return self.icr if self.x2apic else self.icr & U32
        if index == R_ICR_HI:
            return self.icr >> 32
        if R_LVT <= index < R_LVT + LVT_COUNT:
            return self._lvt_read(index - R_LVT)
        if index == R_TIMER_INIT:
            return self.initial_count
        if index == R_TIMER_CUR:
            return self.current_count()
        if index == R_TIMER_DCR:
            return self.dcr
        return None

    def _write_reg(self, index: int, value: int) -> bool:
        """Write a register (xAPIC semantics; MSR checks are done by `write_msr`)."""
        if index == R_ID:
            self.xapic_id = (value >> 24) & 0xFF  # writable in xAPIC mode, like QEMU and KVM
        elif index == R_TPR:
            self.tpr = value & 0xFF
        elif index == R_EOI:
            self.eoi()
        elif index == R_LDR:
            self.ldr = value & 0xFF000000
        elif index == R_DFR:
            self.dfr = (value >> 28) & 0xF
        elif index == R_SVR:
            self._write_svr(value)
        elif index == R_ESR:
            # Write-before-read: the write latches the errors detected since the last one.
            self.esr, self.esr_pending = self.esr_pending, 0
        elif index == R_ICR_LO:
            if self.x2apic:
                self.icr = value & ((U32 << 32) | ICR_WRITABLE)
            else:
                self.icr = (self.icr & (U32 << 32)) | (value & ICR_WRITABLE)
            self._send_ipi()
        elif index == R_ICR_HI:
            self.icr = (self.icr & U32) | ((value & 0xFF000000) << 32)
        elif R_LVT <= index < R_LVT + LVT_COUNT:
            self._write_lvt(index - R_LVT, value)
        elif index == R_TIMER_INIT:
            self._write_initial_count(value)
        elif index == R_TIMER_DCR:
            self._write_dcr(value)
        elif index == R_SELF_IPI and self.x2apic:
            # SELF IPI: a fixed, edge-triggered IPI to this APIC (SDM 10.12.11).
            if value & 0xFF < 16:
                self._error(ESR_SEND_ILLEGAL_VECTOR)
            else:
                self.accept(value & 0xFF)
        elif self._read_reg(index) is None:
            return False
        # Other implemented registers are read-only: the write is ignored.
        self._update()
        return True

    # -- xAPIC MMIO window ---------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if not self.mmio_decoded:
            return (1 << (8 * size)) - 1  # not decoded: the bus floats
        if size != 4 or offset & 0xF:
            return 0  # only aligned 32-bit accesses are defined (SDM 10.4.1); QEMU reads 0
        value = self._read_reg(offset >> 4)
        if value is None:
            self._illegal_register(offset)
            return 0
        return value & U32

    def write(self, offset: int, size: int, value: int) -> None:
        if not self.mmio_decoded:
            return
        if size != 4 or offset & 0xF:
            self.log.debug(
                f"{self.name}:size", "%s: %d-byte write at 0x%x ignored", self.name, size, offset
            )
            return
        if not self._write_reg(offset >> 4, value & U32):
            self._illegal_register(offset)

    def _illegal_register(self, offset: int) -> None:
        self.log.debug(f"{self.name}:reg", "%s: unimplemented register 0x%03x", self.name, offset)
        self._error(ESR_ILLEGAL_REGISTER)
        self._update()

    # -- MSRs ----------------------------------------------------------------------------
    def read_msr(self, index: int) -> int | None:
        """RDMSR of an APIC MSR; None means the CPU raises #GP."""
        if index == MSR_APIC_BASE:
            return self.apic_base
        if index == MSR_TSC_DEADLINE:
            return self.read_tsc_deadline()
        if not MSR_X2APIC_FIRST <= index <= MSR_X2APIC_LAST or not self.x2apic:
            return None
        reg = index - MSR_X2APIC_FIRST
        if reg in (R_APR, R_EOI, R_RRD, R_DFR, R_ICR_HI, R_SELF_IPI):
            return None  # not part of the x2APIC register set, or write-only (table 10-6)
        return self._read_reg(reg)

    def write_msr(self, index: int, value: int) -> bool:
        """WRMSR of an APIC MSR; False means the CPU raises #GP."""
        value &= (1 << 64) - 1
        if index == MSR_APIC_BASE:
            return self._write_apic_base(value)
        if index == MSR_TSC_DEADLINE:
            self.write_tsc_deadline(value)
            return True
        if not MSR_X2APIC_FIRST <= index <= MSR_X2APIC_LAST or not self.x2apic:
            return False
        reg = index - MSR_X2APIC_FIRST
        if reg == R_ICR_LO:
            if value & ~((U32 << 32) | ICR_WRITABLE):
                return False
            return self._write_reg(reg, value)
        if value >> 32:
            return False
        writable = (R_TPR, R_EOI, R_SVR, R_ESR, R_TIMER_INIT, R_TIMER_DCR, R_SELF_IPI)
        if reg not in writable and not R_LVT <= reg < R_LVT + LVT_COUNT:
            return False  # read-only or absent in x2APIC mode
        if (reg in (R_EOI, R_ESR) and value) or (reg == R_SELF_IPI and value & ~0xFF):
            return False  # reserved bits (EOI and ESR take only 0 in x2APIC mode)
        return self._write_reg(reg, value)

    def _write_apic_base(self, value: int) -> bool:
        """IA32_APIC_BASE with the mode-switch rules of SDM 10.12.5 (figure 10-27)."""
        reserved = 0x2FF | (((1 << 64) - 1) << self.phys_bits)
        if value & reserved:
            return False
        en, extd = bool(value & BASE_EN), bool(value & BASE_EXTD)
        if extd and not en:
            return False  # the invalid state
        was_en, was_x2 = self.hw_enabled, self.x2apic
        if was_x2 and en and not extd:
            return False  # x2APIC -> xAPIC only through disabled
        if not was_en and extd:
            return False  # disabled -> x2APIC must pass through xAPIC
        old_base = self.apic_base
        self.apic_base = value
        if was_en and not en:
            self._power_up_registers()
        if extd and not was_x2:
            self.icr = 0  # the x2APIC ICR is one 64-bit register with a 32-bit destination
        if value != old_base:
            self._timer_update()
            self._relocated()
        self._update()
        return True

    def _relocated(self) -> None:
        if self.relocate_hook is not None:
            self.relocate_hook(self)

    # -- state (devices/lapic_state.py) ---------------------------------------------------
    def save(self) -> dict[str, Any]:
        return lapic_state.save(self)

    def restore(self, state: dict[str, Any]) -> None:
        lapic_state.restore(self, state)
