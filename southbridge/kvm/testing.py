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
