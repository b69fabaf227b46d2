"""Helpers for tests that run guests under KVM (no pytest import: tests wrap these)."""

from __future__ import annotations

import os
import shutil

from southbridge.kvm.system import DEFAULT_DEVICE, Kvm, KvmError


def kvm_unavailable_reason(device: str = DEFAULT_DEVICE) -> str | None:
    """Why guest-level tests cannot run here, or None when KVM and binutils are usable."""
    if not os.path.exists(device):
        return f"{device} is missing: no KVM on this host"
    try:
        Kvm(device).close()
    except KvmError as e:
        return str(e)
    for tool in ("as", "ld"):
        if shutil.which(tool) is None:
            return f"'{tool}' (binutils) is needed to build the test guests"
    return None


# Where a KVM module is loaded; kvm_pvm runs guest kernel code in an emulator (about 1.5 M
# instructions/s, some instructions missing), so a Linux kernel cannot finish booting.
SYS_MODULE = "/sys/module"
EMULATING_MODULES = ("kvm_pvm",)


def native_kernel_reason(sys_module: str = SYS_MODULE) -> str | None:
    """Why guest kernel-mode code does not run natively here (None: kvm_intel or kvm_amd)."""
    for name in EMULATING_MODULES:
        if os.path.isdir(os.path.join(sys_module, name)):
            return (
                f"{name}: this host's KVM emulates guest kernel-mode code (about 1.5 M "
                f"instructions/s), so a Linux kernel cannot boot to user space here"
            )
    if not any(os.path.isdir(os.path.join(sys_module, m)) for m in ("kvm_intel", "kvm_amd")):
        return "neither kvm_intel nor kvm_amd is loaded: no native guest kernel execution"
    return None
