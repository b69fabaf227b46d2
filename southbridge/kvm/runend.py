"""Why a run of a machine under KVM ended, and the exit status it gives the command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from southbridge.core.request import RequestKind

# A device's request (exit, reset, poweroff), or what the runner saw: the guest's triple
# fault, --timeout, a KVM or emulation error, or the user's interrupt (stopped).
RunEndReason: TypeAlias = RequestKind | Literal["triple-fault", "timeout", "error", "stopped"]


@dataclass
class RunEnd:
    """Why a run ended. `status` is the command's exit status (isa-debug-exit convention,
    124 on timeout, 1 on error, 130 when stopped)."""

    reason: RunEndReason
    status: int
    message: str = ""
