"""The local APIC's register map and bit definitions (Intel SDM vol. 3, chapter 10), shared
by the model (devices/lapic.py) and its saved state (devices/lapic_state.py)."""

from __future__ import annotations

from southbridge.core.clock import NS_PER_SEC

DEFAULT_BASE = 0xFEE00000
WINDOW_SIZE = 0x1000

# IA32_APIC_BASE (SDM 10.4.4).
MSR_APIC_BASE = 0x1B
MSR_TSC_DEADLINE = 0x6E0
MSR_X2APIC_FIRST = 0x800
MSR_X2APIC_LAST = 0x8FF
BASE_BSP = 1 << 8
BASE_EXTD = 1 << 10
BASE_EN = 1 << 11

VERSION = 0x00050014  # version 0x14, max LVT entry 5 (six entries)
VERSION_DIRECTED_EOI = 1 << 24

# Register indexes: MMIO offset >> 4, x2APIC MSR - 0x800 (SDM table 10-1 and 10-6).
R_ID = 0x02
R_VERSION = 0x03
R_TPR = 0x08
R_APR = 0x09
R_PPR = 0x0A
R_EOI = 0x0B
R_RRD = 0x0C
R_LDR = 0x0D
R_DFR = 0x0E
R_SVR = 0x0F
R_ISR = 0x10
R_TMR = 0x18
R_IRR = 0x20
R_ESR = 0x28
R_ICR_LO = 0x30
R_ICR_HI = 0x31
R_LVT = 0x32  # 0x32-0x37
R_TIMER_INIT = 0x38
R_TIMER_CUR = 0x39
R_TIMER_DCR = 0x3E
R_SELF_IPI = 0x3F  # x2APIC only

LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR = range(6)
LVT_COUNT = 6
LVT_NAMES = ("timer", "thermal", "perf", "lint0", "lint1", "error")
LVT_MASKED = 1 << 16
LVT_LEVEL = 1 << 15
LVT_REMOTE_IRR = 1 << 14
# Writable bits per entry (SDM figure 10-8): vector, delivery mode, polarity, trigger, mask,
# timer mode; delivery status and remote IRR are read-only.
LVT_WRITABLE = (0x600FF | LVT_MASKED, 0x107FF, 0x107FF, 0x1A7FF, 0x1A7FF, 0x100FF)

TIMER_ONESHOT, TIMER_PERIODIC, TIMER_TSC_DEADLINE = 0, 1, 2

SVR_ENABLE = 1 << 8
SVR_FOCUS_DISABLE = 1 << 9
SVR_SUPPRESS_EOI = 1 << 12

# Error status bits (SDM 10.5.3).
ESR_SEND_ILLEGAL_VECTOR = 1 << 5
ESR_RECV_ILLEGAL_VECTOR = 1 << 6
ESR_ILLEGAL_REGISTER = 1 << 7
ESR_MASK = 0xEF

# KVM's min_timer_period_us default (arch/x86/kvm/x86.c): the shortest periodic interval.
MIN_TIMER_PERIOD_NS = 200_000
# Bound on owed periodic ticks under timer_reinject (one second at the clamped rate).
TIMER_MAX_OWED = NS_PER_SEC // MIN_TIMER_PERIOD_NS

ICR_WRITABLE = 0x000CCFFF  # vector, mode, dest mode, level, trigger, shorthand
ICR_LOGICAL = 1 << 11
ICR_ASSERT = 1 << 14
ICR_LEVEL = 1 << 15

U32 = 0xFFFFFFFF
VEC_MASK_LEGAL = ((1 << 256) - 1) & ~0xFFFF  # vectors 0-15 are never accepted

__all__ = [
    "BASE_BSP",
    "BASE_EN",
    "BASE_EXTD",
    "DEFAULT_BASE",
    "ESR_ILLEGAL_REGISTER",
    "ESR_MASK",
    "ESR_RECV_ILLEGAL_VECTOR",
    "ESR_SEND_ILLEGAL_VECTOR",
    "ICR_ASSERT",
    "ICR_LEVEL",
    "ICR_LOGICAL",
    "ICR_WRITABLE",
    "LVT_COUNT",
    "LVT_ERROR",
    "LVT_LEVEL",
    "LVT_LINT0",
    "LVT_LINT1",
    "LVT_MASKED",
    "LVT_NAMES",
    "LVT_PERF",
    "LVT_REMOTE_IRR",
    "LVT_THERMAL",
    "LVT_TIMER",
    "LVT_WRITABLE",
    "MIN_TIMER_PERIOD_NS",
    "MSR_APIC_BASE",
    "MSR_TSC_DEADLINE",
    "MSR_X2APIC_FIRST",
    "MSR_X2APIC_LAST",
    "R_APR",
    "R_DFR",
    "R_EOI",
    "R_ESR",
    "R_ICR_HI",
    "R_ICR_LO",
    "R_ID",
    "R_IRR",
    "R_ISR",
    "R_LDR",
    "R_LVT",
    "R_PPR",
    "R_RRD",
    "R_SELF_IPI",
    "R_SVR",
    "R_TIMER_CUR",
    "R_TIMER_DCR",
    "R_TIMER_INIT",
    "R_TMR",
    "R_TPR",
    "R_VERSION",
    "SVR_ENABLE",
    "SVR_FOCUS_DISABLE",
    "SVR_SUPPRESS_EOI",
    "TIMER_MAX_OWED",
    "TIMER_ONESHOT",
    "TIMER_PERIODIC",
    "TIMER_TSC_DEADLINE",
    "U32",
    "VEC_MASK_LEGAL",
    "VERSION",
    "VERSION_DIRECTED_EOI",
    "WINDOW_SIZE",
]
