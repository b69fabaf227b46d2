"""The qtest protocol server: QEMU's command set and answer formats, FAIL on bad input."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.device import BusDevice
from southbridge.machine.base import Machine
from southbridge.machine.pc import PcMachine
from southbridge.qtest.server import QtestSession, parse_uint
from tests.qtesting import ask


def session(machine: PcMachine | None = None) -> tuple[QtestSession, list[str]]:
    out: list[str] = []
    return QtestSession(machine or PcMachine(), out.append), out


def test_unassigned_ports_all_ones_in_qemu_format() -> None:
    s, out = session()
    assert ask(s, out, "inb 0x1234") == "OK 0x00ff\n"
    assert ask(s, out, "inw 0x1234") == "OK 0xffff\n"
    assert ask(s, out, "inl 0x1234") == "OK 0xffffffff\n"
    assert ask(s, out, "outl 0x1234 0xffffffff") == "OK\n"


def test_memory_commands() -> None:
    s, out = session()
    assert ask(s, out, "writeq 0x1000 0x0102030405060708") == "OK\n"
    assert ask(s, out, "readq 0x1000") == "OK 0x0102030405060708\n"
    assert ask(s, out, "readb 0x1000") == "OK 0x0000000000000008\n"
    assert ask(s, out, "read 0x1000 4") == "OK 0x08070605\n"
    assert ask(s, out, "write 0x2000 3 0xaabbcc") == "OK\n"
    assert ask(s, out, "readl 0x2000") == "OK 0x0000000000ccbbaa\n"
    assert ask(s, out, "memset 0x3000 4 0x5a") == "OK\n"
    assert ask(s, out, "readl 0x3000") == "OK 0x000000005a5a5a5a\n"
    assert ask(s, out, "b64write 0x4000 3 AQID") == "OK\n"
    assert ask(s, out, "b64read 0x4000 3") == "OK AQID\n"
    assert ask(s, out, "readl 0xfeb00000") == "OK 0x00000000ffffffff\n"  # unassigned
    assert ask(s, out, "write 0x2000 3 0") == "ERR invalid argument size\n"


def test_clock_commands_follow_qemu() -> None:
    bare = Machine()  # no devices, so no timer is pending
    out0: list[str] = []
    s0 = QtestSession(bare, out0.append)
    assert ask(s0, out0, "clock_step").startswith("FAIL cannot advance clock")
    s, out = session()
    # The pc machine's PIT runs from power-on (mode 3, count 65536): the next deadline is
    # its first OUT edge, half of 65536 ticks of 1,193,182 Hz.
    assert ask(s, out, "clock_step") == f"OK {32768 * 10**9 // 1193182 + 1}\n"
    s, out = session()
    assert ask(s, out, "clock_step 1000") == "OK 1000\n"
    assert ask(s, out, "clock_set 5000") == "OK 5000\n"
    assert ask(s, out, "clock_set 10") == "FAIL 5000\n"
    m = PcMachine()
    m.clock.timer(lambda: None).arm(777)
    s2, out2 = session(m)
    assert ask(s2, out2, "clock_step") == "OK 777\n"


def test_irq_intercept_reports_changes() -> None:
    m = PcMachine()
    s, out = session(m)
    assert ask(s, out, "irq_intercept_in nosuchdevice") == "FAIL Unknown device\n"
    assert ask(s, out, "irq_intercept_in /machine/ioapic") == "OK\n"
    assert ask(s, out, "irq_intercept_in ioapic") == "FAIL IRQ intercept already enabled\n"

    class Raiser(BusDevice):
        def write(self, offset: int, size: int, value: int) -> None:
            line.set(bool(value))

    line = m.gsi.input(5, "test")
    m.ports.register(0x700, 1, Raiser())
    assert ask(s, out, "outb 0x700 1") == "IRQ raise 5\nOK\n"
    assert ask(s, out, "outb 0x700 1") == "OK\n"
    assert ask(s, out, "outb 0x700 0") == "IRQ lower 5\nOK\n"
    assert ask(s, out, "set_irq_in ioapic unnamed-gpio-in 9 1") == "IRQ raise 9\nOK\n"


def test_malformed_lines_fail_without_crashing() -> None:
    s, out = session()
    for line in (
        "inb",
        "outb 0x10",
        "inb zz",
        "outb 0x10000 1",
        "readq",
        "frobnicate",
        "read 0 0",
        "clock_step x",
        "write 0 1 0xzz",
        "set_irq_in ioapic a 1 1",
    ):
        assert ask(s, out, line).startswith(("FAIL", "ERR")), line
    assert ask(s, out, "") == ""


def test_numbers_parse_like_strtoul() -> None:
    assert parse_uint("0x10") == 16
    assert parse_uint("010") == 8
    assert parse_uint("10") == 10
    assert parse_uint("-1") == (1 << 64) - 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(alphabet="inoutbwlrdeaq_clkstp 0x123456789abcdefgIRQ-", max_size=40), max_size=20
    )
)
def test_random_lines_always_get_one_answer(lines: list[str]) -> None:
    s, out = session()
    for line in lines:
        out.clear()
        s.handle(line)
        if line.split():
            answers = [a for a in out if not a.startswith("IRQ ")]
            assert len(answers) == 1 and answers[0].startswith(("OK", "FAIL", "ERR"))


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "southbridge", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_qtest_over_stdin_answers_all_ones() -> None:
    r = run_cli("qtest", stdin="inb 0x1234\ninw 0x1234\ninl 0x1234\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "OK 0x00ff\nOK 0xffff\nOK 0xffffffff\n"


def test_cli_trace_replays_to_same_answers(tmp_path: Path) -> None:
    trace = tmp_path / "t.qtest"
    script = "outb 0x1234 5\nclock_step 100\ninb 0x1234\nwritel 0x1000 0x99\nreadl 0x1000\n"
    r = run_cli("qtest", "--trace", str(trace), stdin=script)
    assert r.returncode == 0, r.stderr
    text = trace.read_text()
    assert "outb 0x1234 0x5" in text and "clock_set 100" in text and "inb 0x1234" in text
    replay = run_cli("qtest", str(trace))
    assert replay.returncode == 0
    assert replay.stdout.splitlines()[-1] == "OK 0x00ff"


def test_cli_missing_script_is_one_clear_line() -> None:
    r = run_cli("qtest", "/nonexistent/script")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("southbridge: error: cannot read")
    assert "Traceback" not in r.stderr


def test_cli_qtest_unix_socket() -> None:
    path = os.path.join(tempfile.mkdtemp(), "qtest.sock")
    proc = subprocess.Popen([sys.executable, "-m", "southbridge", "qtest", "--socket", path])
    try:
        for _ in range(200):
            if os.path.exists(path):
                break
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(path)
            c.sendall(b"inl 0x1234\nclock_step 10\n")
            data = b""
            c.settimeout(10)
            while data.count(b"\n") < 2:
                data += c.recv(4096)
        assert data == b"OK 0xffffffff\nOK 10\n"
    finally:
        proc.terminate()
        proc.wait(10)


def test_sessions_are_thread_safe_under_machine_lock() -> None:
    m = PcMachine()
    outs: list[list[str]] = [[], []]
    sessions = [QtestSession(m, outs[i].append) for i in range(2)]

    def worker(i: int) -> None:
        for n in range(200):
            sessions[i].handle(f"writel {0x1000 + i * 0x100} {n}")
            sessions[i].handle(f"readl {0x1000 + i * 0x100}")

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert outs[0][-1] == "OK 0x00000000000000c7\n" == outs[1][-1]
