"""Debian's SeaBIOS under KVM for the firmware tests: where it is, and running a session
until its debug console log shows a line (the watcher both SeaBIOS tests need)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from southbridge.kvm.runend import RunEnd
from southbridge.kvm.session import KvmSession

SEABIOS = Path(__file__).resolve().parent.parent / ".cache" / "seabios" / "bios.bin"
MISSING = f"{SEABIOS} is missing: run scripts/setup"
POLL_S = 0.02


def run_until_logged(
    session: KvmSession,
    log: Path,
    marker: bytes,
    timeout: float,
    message: str,
    then: Callable[[], None] | None = None,
) -> tuple[RunEnd, float | None]:
    """Run `session` until `marker` is in the debugcon file `log` (or `timeout` seconds of
    host time); once it is, call `then` while the guest still runs, and stop the run with
    `message` (reason "stopped", status 0). Returns the run's end and the seconds until the
    marker (None if it never came)."""
    start = time.monotonic()
    seen: list[float] = []

    def watch() -> None:
        while time.monotonic() - start < timeout:
            if marker in log.read_bytes():
                seen.append(time.monotonic() - start)
                if then is not None:
                    then()
                session.end(RunEnd("stopped", 0, message))
                return
            time.sleep(POLL_S)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    end = session.run(timeout=timeout)
    watcher.join(5)
    return end, (seen[0] if seen else None)
