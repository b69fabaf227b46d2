"""A local APIC's saved state: every architectural register plus the model's own (timer
phase, pending INIT/SIPI/NMI/SMI, LINT levels), validated on restore as attacker input:
reserved bits, illegal vectors 0-15 in IRR/ISR/TMR and impossible mode combinations are a
StateError, as QEMU's and KVM's APIC state checks refuse them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from southbridge.core.state import StateError, check_header, get_bool, get_int, header
from southbridge.devices.lapic_regs import (
    BASE_EN,
    BASE_EXTD,
    ESR_MASK,
    ICR_WRITABLE,
    LVT_COUNT,
    LVT_NAMES,
    LVT_TIMER,
    LVT_WRITABLE,
    SVR_SUPPRESS_EOI,
    U32,
)

if TYPE_CHECKING:
    from southbridge.devices.lapic import LocalApic


def save(self: LocalApic) -> dict[str, Any]:
    return {
        **header(self),
        "initial_id": self.initial_id,
        "apic_base": self.apic_base,
        "xapic_id": self.xapic_id,
        "tpr": self.tpr,
        "ldr": self.ldr,
        "dfr": self.dfr,
        "svr": self.svr,
        "irr": self.irr,
        "isr": self.isr,
        "tmr": self.tmr,
        "esr": self.esr,
        "esr_pending": self.esr_pending,
        "icr": self.icr,
        "lvt": list(self.lvt),
        "initial_count": self.initial_count,
        "dcr": self.dcr,
        "timer_elapsed": max(0, self.clock.now() - self.timer_load),
        "tsc_deadline": self.tsc_deadline,
        "lint_level": list(self.lint_level),
        "lint_remote_irr": list(self.lint_remote_irr),
        "pending_nmi": self.pending_nmi,
        "pending_smi": self.pending_smi,
        "pending_init": self.pending_init,
        "extint_level": self.extint_level,
        "sipi_vector": -1 if self.sipi_vector is None else self.sipi_vector,
        "waiting_for_sipi": self.waiting_for_sipi,
    }


def restore(self: LocalApic, state: dict[str, Any]) -> None:
    state = check_header(state, self)
    if get_int(state, "initial_id", 0, U32 - 1) != self.initial_id:
        raise StateError(f"{self.name}: state is for APIC ID {state['initial_id']}")
    f: dict[str, Any] = {}
    f["apic_base"] = base = get_int(state, "apic_base", 0, (1 << 64) - 1)
    if base & (0x2FF | (((1 << 64) - 1) << self.phys_bits)):
        raise StateError(f"{self.name}: IA32_APIC_BASE 0x{base:x} sets reserved bits")
    if base & BASE_EXTD and not base & BASE_EN:
        raise StateError(f"{self.name}: IA32_APIC_BASE in the invalid EXTD-only state")
    for key, hi in (("xapic_id", 0xFF), ("tpr", 0xFF), ("initial_count", U32)):
        f[key] = get_int(state, key, 0, hi)
    f["ldr"] = get_int(state, "ldr", 0, U32)
    f["dfr"] = get_int(state, "dfr", 0, 0xF)
    f["svr"] = get_int(state, "svr", 0, 0x13FF)
    f["dcr"] = get_int(state, "dcr", 0, 0xB)
    f["esr"] = get_int(state, "esr", 0, 0xFF)
    f["esr_pending"] = get_int(state, "esr_pending", 0, 0xFF)
    f["icr"] = get_int(state, "icr", 0, (1 << 64) - 1)
    if f["ldr"] & 0x00FFFFFF or f["dcr"] & 4:
        raise StateError(f"{self.name}: LDR or divide configuration sets reserved bits")
    if f["svr"] & SVR_SUPPRESS_EOI and not self.directed_eoi:
        raise StateError(f"{self.name}: EOI-broadcast suppression is not supported")
    if (f["esr"] | f["esr_pending"]) & ~ESR_MASK:
        raise StateError(f"{self.name}: ESR sets reserved bits")
    if f["icr"] & ~((U32 << 32) | ICR_WRITABLE):
        raise StateError(f"{self.name}: ICR sets reserved bits")
    for key in ("irr", "isr", "tmr"):
        f[key] = get_int(state, key, 0, (1 << 256) - 1)
        if f[key] & 0xFFFF:
            raise StateError(f"{self.name}: {key.upper()} holds an illegal vector 0-15")
    lvt = state.get("lvt")
    if not isinstance(lvt, list) or len(lvt) != LVT_COUNT:
        raise StateError(f"{self.name}: lvt must be a list of {LVT_COUNT} entries")
    for n, entry in enumerate(lvt):
        if not isinstance(entry, int) or isinstance(entry, bool) or entry < 0:
            raise StateError(f"{self.name}: LVT {LVT_NAMES[n]} is not an integer")
        if entry & ~LVT_WRITABLE[n] or (n == LVT_TIMER and (entry >> 17) & 3 == 3):
            raise StateError(f"{self.name}: LVT {LVT_NAMES[n]} sets reserved bits")
    f["lvt"] = list(lvt)
    f["timer_elapsed"] = get_int(state, "timer_elapsed", 0, 1 << 80)
    f["tsc_deadline"] = get_int(state, "tsc_deadline", 0, (1 << 64) - 1)
    for key in ("lint_level", "lint_remote_irr"):
        pair = state.get(key)
        if not isinstance(pair, list) or len(pair) != 2:
            raise StateError(f"{self.name}: {key} must be a pair of booleans")
        f[key] = [get_bool({"v": v}, "v") for v in pair]
    for key in ("pending_nmi", "pending_smi", "pending_init", "extint_level"):
        f[key] = get_bool(state, key)
    f["waiting_for_sipi"] = get_bool(state, "waiting_for_sipi")
    sipi = get_int(state, "sipi_vector", -1, 0xFF)
    if sipi >= 0 and not f["waiting_for_sipi"]:
        raise StateError(f"{self.name}: SIPI pending outside wait-for-SIPI")
    timer_elapsed = f.pop("timer_elapsed")
    for key, value in f.items():
        setattr(self, key, value)
    self.sipi_vector = None if sipi < 0 else sipi
    self.timer_load = self.clock.now() - timer_elapsed
    self._timer_rebase()
    self._timer_update()
    self._relocated()
    self._update()
