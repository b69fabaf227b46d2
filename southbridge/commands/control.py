"""The control plane of `southbridge run`: the QMP socket (`--qmp unix:PATH,server`),
SIGTERM, and SIGUSR1 saving `--snapshot FILE`, all outliving the guest's reboots (each boot
builds a new machine and session; `attach` points them at the current ones).

SIGTERM presses the ACPI power button like QEMU's system_powerdown (an ACPI guest shuts
down cleanly, the run ending with status 0); a guest that ignores it, or a machine without
ACPI, is stopped after `grace_s` seconds with status 143 (128 + SIGTERM), as a process
killed by it would report.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

from southbridge.errors import UserError

if TYPE_CHECKING:
    from southbridge.kvm.session import KvmSession
    from southbridge.machine.pc import PcMachine
    from southbridge.qmp.control import MachineController
    from southbridge.qmp.server import QmpServer

GRACE_S = 10.0


class RunControl:
    def __init__(
        self, qmp: str | None, grace_s: float = GRACE_S, snapshot: str | None = None
    ) -> None:
        self.snapshot_path = snapshot
        self._qmp_path: str | None = None
        if qmp is not None:
            from southbridge.qmp.server import QmpOptionError, parse_qmp_option

            try:
                self._qmp_path = parse_qmp_option(qmp)
            except QmpOptionError as e:
                raise UserError(str(e)) from None
        self.grace_s = grace_s
        self.server: QmpServer | None = None
        self.controller: MachineController | None = None
        self._machine: PcMachine | None = None
        self._session: KvmSession | None = None
        self._lock = threading.Lock()
        self._grace: threading.Timer | None = None
        self.terminated = False
        self._old_handler: object = None
        self._old_usr1: object = None

    def start(self) -> None:
        """Install the SIGTERM handler, and SIGUSR1's with --snapshot (main thread only)."""
        if threading.current_thread() is threading.main_thread():
            self._old_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
            if self.snapshot_path is not None:
                self._old_usr1 = signal.signal(signal.SIGUSR1, self._on_sigusr1)

    def _on_sigusr1(self, signum: int, frame: FrameType | None) -> None:
        # Off the signal handler: saving pauses the vCPUs and writes the whole of RAM.
        threading.Thread(target=self.save_snapshot, name="snapshot", daemon=True).start()

    def save_snapshot(self) -> None:
        """Write --snapshot FILE from the running session; one line either way."""
        from southbridge.kvm.snapshotfile import SnapshotError, machine_config

        with self._lock:
            machine, session = self._machine, self._session
        path = self.snapshot_path
        if machine is None or session is None or path is None:
            return
        try:
            size = session.save_snapshot(path, machine_config(machine.config))
        except SnapshotError as e:
            print(f"southbridge: snapshot: {e}", file=sys.stderr)
            return
        print(f"southbridge: snapshot saved to {path} ({size} bytes)", file=sys.stderr)

    def attach(self, machine: PcMachine) -> None:
        """A new boot's machine: open the QMP socket on the first, retarget it after."""
        with self._lock:
            self._machine, self._session = machine, None
        if self._qmp_path is None:
            return
        from southbridge.qmp.control import MachineController
        from southbridge.qmp.server import QmpOptionError, QmpServer

        if self.controller is None:
            self.controller = MachineController(machine, self._emit)
            try:
                self.server = QmpServer(self._qmp_path, self.controller)
            except QmpOptionError as e:
                raise UserError(str(e)) from None
        else:
            self.controller.machine = machine
            self.controller.running = True

    def attach_session(self, session: KvmSession) -> None:
        with self._lock:
            self._session = session
        if self.controller is not None:
            self.controller.runner = session

    def detach(self, reason: str) -> None:
        """The boot ended: no more stop/cont on its session; tell QMP clients why."""
        with self._lock:
            self._session = None
        if self.controller is not None:
            self.controller.runner = None
        if reason == "poweroff":
            self._emit("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})
        elif reason in ("reset", "triple-fault"):
            self._emit("RESET", {"guest": True, "reason": "guest-reset"})

    def _emit(self, name: str, data: dict[str, object] | None) -> None:
        if self.server is not None:
            self.server.emit(name, data)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.terminated = True
        with self._lock:
            machine, session = self._machine, self._session
        if session is None:
            # Still setting up (or between boots): no guest to ask, so stop here, with
            # the set-up's own clean-up unwinding (a blocked open or read included).
            print("southbridge: terminated (SIGTERM)", file=sys.stderr)
            raise SystemExit(128 + signal.SIGTERM)
        pm = machine.pm if machine is not None else None
        if machine is not None and pm is not None:
            with machine.lock:
                pm.press_power_button()
            self._emit("POWERDOWN", None)
        if self._grace is None:
            self._grace = threading.Timer(self.grace_s, self._stop_now)
            self._grace.daemon = True
            self._grace.start()
        if pm is None:
            self._stop_now()

    def _stop_now(self) -> None:
        from southbridge.kvm.runend import RunEnd

        with self._lock:
            session = self._session
        if session is not None:
            session.end(RunEnd("stopped", 128 + signal.SIGTERM, "terminated (SIGTERM)"))

    def close(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
        if self.server is not None:
            self.server.close()
            self.server = None
        if self._old_handler is not None:
            signal.signal(signal.SIGTERM, self._old_handler)  # type: ignore[arg-type]
            self._old_handler = None
        if self._old_usr1 is not None:
            signal.signal(signal.SIGUSR1, self._old_usr1)  # type: ignore[arg-type]
            self._old_usr1 = None
