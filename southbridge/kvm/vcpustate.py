"""A vCPU's state for snapshots: what KVM holds of a CPU (general and special registers,
FPU and XSAVE areas, XCRs, pending events, the MSRs an OS programs), as QEMU's
kvm_arch_get_registers collects it. The local APIC is ours and saved with the machine.

KVM's structures are kept as their bytes (hex), exactly as KVM gives them back; on restore
each must have KVM's size and KVM validates the values (a state it refuses is one
`SnapshotError` line). XSAVE and XCRs are optional: a host without them saves the legacy
FPU area alone, and restores what the file has.
"""

from __future__ import annotations

import ctypes
from typing import Any

from southbridge.kvm import abi
from southbridge.kvm.snapshotfile import SnapshotError
from southbridge.kvm.system import ioctl
from southbridge.kvm.vcpu import Vcpu

# TSC, SYSENTER CS/ESP/EIP, PAT, MISC_ENABLE, STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE,
# TSC_AUX: the MSRs outside the special registers that a guest OS sets up. IA32_APIC_BASE
# is our LAPIC's (saved with it); EFER is in the special registers.
MSRS: tuple[int, ...] = (0x10, 0x174, 0x175, 0x176, 0x277, 0x1A0, 0xC0000081, 0xC0000082)
MSRS += (0xC0000083, 0xC0000084, 0xC0000102, 0xC0000103)
_BLOCKS: dict[str, tuple[type[ctypes.Structure], int, int, bool]] = {
    # name: structure, get ioctl, set ioctl, required
    "regs": (abi.kvm_regs, abi.KVM_GET_REGS, abi.KVM_SET_REGS, True),
    "sregs": (abi.kvm_sregs, abi.KVM_GET_SREGS, abi.KVM_SET_SREGS, True),
    "fpu": (abi.kvm_fpu, abi.KVM_GET_FPU, abi.KVM_SET_FPU, True),
    "xsave": (abi.kvm_xsave, abi.KVM_GET_XSAVE, abi.KVM_SET_XSAVE, False),
    "xcrs": (abi.kvm_xcrs, abi.KVM_GET_XCRS, abi.KVM_SET_XCRS, False),
    "events": (abi.kvm_vcpu_events, abi.KVM_GET_VCPU_EVENTS, abi.KVM_SET_VCPU_EVENTS, True),
}
# The order KVM needs on restore: XCRs before XSAVE (the XSAVE area's features must be
# enabled), MSRs (the TSC) before events, as QEMU's kvm_arch_put_registers orders them.
_RESTORE_ORDER = ("sregs", "regs", "xcrs", "fpu", "xsave", "events")


def _read_msr(fd: int, index: int) -> int | None:
    buf = abi.msrs_type(1)()
    buf.nmsrs = 1
    buf.entries[0].index = index
    try:
        got = ioctl(fd, abi.KVM_GET_MSRS, buf)
    except OSError:
        return None
    return int(buf.entries[0].data) if got == 1 else None


def save(vcpu: Vcpu) -> dict[str, Any]:
    """The vCPU's state (call it with the vCPU out of guest mode: paused or not started)."""
    out: dict[str, Any] = {"index": vcpu.index}
    for name, (struct_type, get, _, required) in _BLOCKS.items():
        block = struct_type()
        try:
            ioctl(vcpu.fd, get, block)
        except OSError as e:
            if required:
                raise SnapshotError(f"vCPU {vcpu.index}: {name} unreadable: {e.strerror}") from e
            continue
        out[name] = bytes(block).hex()
    msrs = {}
    for index in MSRS:
        value = _read_msr(vcpu.fd, index)
        if value is not None:
            msrs[f"0x{index:x}"] = value
    out["msrs"] = msrs
    return out


def _block(state: dict[str, Any], name: str, size: int, where: str) -> bytes | None:
    raw = state.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) != 2 * size:
        raise SnapshotError(f"{where}: {name} is not {size} bytes of hex")
    try:
        return bytes.fromhex(raw)
    except ValueError:
        raise SnapshotError(f"{where}: {name} is not hex") from None


def restore(vcpu: Vcpu, state: object) -> None:
    """Load `state` (from `save`) into the vCPU, validated; KVM refusing it is an error."""
    where = f"vCPU {vcpu.index}"
    if not isinstance(state, dict):
        raise SnapshotError(f"{where}: state is not a mapping")
    unknown = set(state) - {"index", "msrs", *_BLOCKS}
    if unknown:
        raise SnapshotError(f"{where}: unknown keys {sorted(unknown)}")
    if state.get("index") != vcpu.index:
        raise SnapshotError(f"{where}: the state is vCPU {state.get('index')!r}'s")
    msrs = state.get("msrs", {})
    if not isinstance(msrs, dict) or len(msrs) > len(MSRS):
        raise SnapshotError(f"{where}: msrs is not a small mapping")
    entries = []
    for key, value in msrs.items():
        index = int(key, 16) if isinstance(key, str) and key.startswith("0x") else -1
        if index not in MSRS or not isinstance(value, int) or not 0 <= value < 1 << 64:
            raise SnapshotError(f"{where}: bad MSR entry {key!r}")
        entries.append((index, value))
    blocks = {}
    for name, (struct_type, _, _, required) in _BLOCKS.items():
        data = _block(state, name, ctypes.sizeof(struct_type), where)
        if data is None and required:
            raise SnapshotError(f"{where}: {name} is missing")
        if data is not None:
            blocks[name] = struct_type.from_buffer_copy(data)
    for name in _RESTORE_ORDER:
        if name == "events" and entries:
            buf = abi.msrs_type(len(entries))()
            buf.nmsrs = len(entries)
            for i, (index, value) in enumerate(entries):
                buf.entries[i].index, buf.entries[i].data = index, value
            try:
                done = ioctl(vcpu.fd, abi.KVM_SET_MSRS, buf)
            except OSError as e:
                raise SnapshotError(f"{where}: KVM refused the MSRs: {e.strerror}") from None
            if done != len(entries):
                raise SnapshotError(f"{where}: KVM refused MSR {entries[done][0]:#x}")
        if name in blocks:
            try:
                ioctl(vcpu.fd, _BLOCKS[name][2], blocks[name])
            except OSError as e:
                raise SnapshotError(f"{where}: KVM refused {name}: {e.strerror}") from None
