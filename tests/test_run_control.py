"""`southbridge run`'s control plane from outside, as a user drives it: the real qemu.qmp
client on `--qmp unix:PATH,server` (stop really parks the vCPUs, quit ends the run with
status 0 and removes the socket) and SIGTERM (the ACPI power button, then a stop after the
grace period for a guest that ignores it: SeaBIOS waiting at "No bootable device")."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from qemu.qmp import QMPClient

from southbridge import cli
from southbridge.kvm.testing import kvm_unavailable_reason
from tests import waiting
from tests.seabios import MISSING, SEABIOS

_reason = kvm_unavailable_reason()
pytestmark = [
    pytest.mark.kvm,
    pytest.mark.skipif(_reason is not None, reason=_reason or ""),
    pytest.mark.skipif(not SEABIOS.is_file(), reason=MISSING),
]
BOUND_S = 60.0  # how long to wait for what must happen (never a rate)


def start(tmp_path: Path, *argv: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "southbridge", "run", "--bios", str(SEABIOS)]
    cmd += ["--serial", "none", "--debugcon", f"file:{tmp_path / 'debugcon.txt'}", *argv]
    return subprocess.Popen(cmd, stderr=subprocess.PIPE)


def wait_for(cond: Any) -> bool:
    return waiting.wait_for(cond, BOUND_S)


def test_qmp_client_stops_continues_and_quits_a_run(tmp_path: Path) -> None:
    sock = tmp_path / "qmp.sock"
    proc = start(tmp_path, "--qmp", f"unix:{sock},server,wait=off", "--timeout", "120")
    try:
        assert wait_for(sock.exists)

        async def drive() -> None:
            qmp = QMPClient("test")
            await qmp.connect(str(sock))
            assert await qmp.execute("query-status") == {"status": "running", "running": True}
            with qmp.listener() as events:
                await qmp.execute("stop")
                assert (await asyncio.wait_for(events.get(), 10))["event"] == "STOP"
                status = await qmp.execute("query-status")
                assert status == {"status": "paused", "running": False}
                await qmp.execute("cont")
                assert (await asyncio.wait_for(events.get(), 10))["event"] == "RESUME"
                cpus: Any = await qmp.execute("query-cpus-fast")
                assert [c["cpu-index"] for c in cpus] == [0]
                await qmp.execute("quit")
            # The run closes the socket after quit's reply, as QEMU does; qemu.qmp then
            # reports the end-of-file it already saw when asked to disconnect.
            with contextlib.suppress(EOFError):
                await qmp.disconnect()

        asyncio.run(drive())
        assert proc.wait(BOUND_S) == 0
        assert not sock.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_presses_the_power_button_then_stops_after_the_grace(tmp_path: Path) -> None:
    log = tmp_path / "debugcon.txt"
    proc = start(tmp_path, "--term-grace", "0.5", "--timeout", "120")
    try:
        # SeaBIOS has its ACPI tables (and the PM function) set up by then.
        assert wait_for(lambda: log.exists() and "No bootable device" in log.read_text())
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(BOUND_S) == 128 + signal.SIGTERM
        assert proc.stderr is not None
        assert proc.stderr.read().decode().strip() == "southbridge: terminated (SIGTERM)"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--qmp", "tcp:localhost:4444"], "only unix:PATH,server is supported"),
        (["--qmp", "unix:/tmp/x.sock"], "southbridge listens: add ,server"),
        (["--term-grace", "nan"], "--term-grace nan: expected 0-3600 seconds"),
    ],
)
def test_bad_control_options_are_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    rc = cli.main(["run", "--serial", "none", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


def test_sigterm_before_the_guest_runs_ends_the_process_at_once() -> None:
    """While the run is still setting up there is no guest to press a button for: SIGTERM
    ends it with 128 + SIGTERM, as a killed process, instead of being swallowed."""
    from southbridge.commands.control import RunControl

    control = RunControl(None, grace_s=0)
    with pytest.raises(SystemExit) as e:
        control._on_sigterm(signal.SIGTERM, None)
    assert e.value.code == 128 + signal.SIGTERM
    control.close()
