"""Debug and reset ports, QEMU-compatible (issue 3 item 5, issue 6 item 7): debugcon,
POST code port 0x80, isa-debug-exit, port 0x92 and the PIIX reset control register 0xCF9.

Rules cited: QEMU hw/char/debugcon.c (byte output, readback 0xE9), hw/misc/debugexit.c
(exit status (V << 1) | 1 for any write), hw/i386/port92.c and the PIIX3 datasheet "Port 92h"
(ALT_A20_GATE, ALT_RST# 0->1 fast reset), the PIIX3 datasheet "Reset Control Register
(CF9h)" and QEMU hw/isa/piix.c rcr_write (RCPU starts a reset, SRST hard/soft, only SRST
latched).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.clock import ManualClock
from southbridge.core.portbus import PortBus
from southbridge.core.state import StateError
from southbridge.devices.debugexit import DebugExit
from southbridge.devices.debugport import DebugCon
from southbridge.devices.postcode import PostCodePort
from southbridge.devices.reset import Port92, ResetControl
from southbridge.host.chardev import open_debugcon
from southbridge.machine.pc import PcConfig, PcMachine
from southbridge.qtest.server import QtestSession


class Requests:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, kind: str, status: int) -> None:
        self.calls.append((kind, status))


def qtest(machine: PcMachine, *commands: str) -> list[str]:
    out: list[str] = []
    session = QtestSession(machine, out.append)
    for c in commands:
        session.handle(c)
    return [line.strip() for line in out]


# -- debugcon --------------------------------------------------------------------------
def test_debugcon_bytes_reach_the_output_in_order_and_reads_return_e9() -> None:
    """debugcon.c: each byte written goes to the chardev; a read returns the readback 0xE9."""
    out = bytearray()
    bus = PortBus()
    bus.register(0x402, 1, DebugCon(out.extend))
    for ch in b"Hello\n":
        bus.write(0x402, 1, ch)
    assert bytes(out) == b"Hello\n"
    assert bus.read(0x402, 1) == 0xE9


def test_debugcon_wide_write_sends_only_its_first_byte() -> None:
    """debugcon.c implements byte accesses on a 1-port region: an OUTW sends its low byte;
    the high byte falls on the next (unassigned) port, as in QEMU."""
    out = bytearray()
    bus = PortBus()
    bus.register(0xE9, 1, DebugCon(out.extend))
    bus.write(0xE9, 2, 0x4241)
    assert bytes(out) == b"A"
    assert bus.read(0xE9, 2) == 0xFFE9  # port 0xEA unassigned reads all-ones


def test_debugcon_output_error_drops_bytes_without_raising() -> None:
    def broken(data: bytes) -> None:
        raise OSError("closed")

    dev = DebugCon(broken)
    dev.write(0, 1, 0x41)
    dev.write(0, 1, 0x42)  # output dropped; the guest keeps running
    assert dev.bytes_written == 2


def test_open_debugcon_file_and_stdio_and_bad_specs(tmp_path: Path) -> None:
    path = tmp_path / "log"
    stream = open_debugcon(f"file:{path}")
    stream.write(b"x")
    assert path.read_bytes() == b"x"  # unbuffered: visible at once
    stream.close()
    s2 = open_debugcon("stdio")
    s2.close()  # closing the console's sink leaves stdout itself open
    assert not sys.stdout.closed
    for bad in ("", "file:", "tcp:1", "stdio:x", "file:a\0b"):
        with pytest.raises(ValueError):
            open_debugcon(bad)
    with pytest.raises(OSError):
        open_debugcon(f"file:{tmp_path}/missing/dir/log")


def test_pc_debugcon_via_qtest_at_default_and_e9(tmp_path: Path) -> None:
    """Issue 5: --debugcon file:PATH at port 0x402; 0xE9 configurable (Bochs port)."""
    for port in (0x402, 0xE9):
        path = tmp_path / f"dc{port:x}"
        m = PcMachine(PcConfig(debugcon_port=port), debugcon=open_debugcon(f"file:{path}"))
        r = qtest(m, f"outb 0x{port:x} 0x4f", f"outb 0x{port:x} 0x4b", f"inb 0x{port:x}")
        assert r == ["OK", "OK", "OK 0x00e9"]
        assert path.read_bytes() == b"OK"
        assert m.debugcon_stream is not None
        m.debugcon_stream.close()


def test_pc_without_debugcon_leaves_port_402_unassigned() -> None:
    m = PcMachine()
    assert qtest(m, "inb 0x402") == ["OK 0x00ff"]


# -- POST codes ------------------------------------------------------------------------
def test_post_code_latched_readable_and_traced_with_time() -> None:
    """Port 0x80 latches the last code like a POST card; the hook and history trace all."""
    clock = ManualClock()
    dev = PostCodePort(clock, history_len=3)
    seen: list[int] = []
    dev.on_code(seen.append)
    bus = PortBus()
    bus.register(0x80, 1, dev)
    assert bus.read(0x80, 1) == 0xFF  # nothing written yet: QEMU's port 0x80 value
    for t, code in enumerate((0x10, 0x20, 0x30, 0x40)):
        clock.set(t * 1000)
        bus.write(0x80, 1, code)
    assert bus.read(0x80, 1) == 0x40
    assert seen == [0x10, 0x20, 0x30, 0x40]
    assert list(dev.history) == [(1000, 0x20), (2000, 0x30), (3000, 0x40)]  # bounded
    assert dev.count == 4


def test_post_code_save_restore_and_validation() -> None:
    dev = PostCodePort()
    fresh = PostCodePort()
    fresh.restore(dev.save())
    assert fresh.last is None
    dev.write(0, 1, 0xA5)
    fresh.restore(dev.save())
    assert fresh.read(0, 1) == 0xA5
    for bad in (
        {"kind": "post-code", "version": 1, "last": 256},
        {"kind": "post-code", "version": 1},
        {"kind": "post-code", "version": 2, "last": 1},
        {"kind": "port92", "version": 1, "last": 1},
    ):
        with pytest.raises(StateError):
            fresh.restore(bad)


# -- isa-debug-exit --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "offset", "value", "status"),
    [
        (1, 0, 0, 1),
        (1, 0, 1, 3),
        (2, 0, 0x1234, 0x2469),
        (4, 0, 0x7FFFFFFF, 0xFFFFFFFF),
        (1, 3, 0x10, 0x21),
    ],
)
def test_debug_exit_status_is_value_shifted_left_plus_one(
    size: int, offset: int, value: int, status: int
) -> None:
    """debugexit.c: exit((val << 1) | 1) for a write of any width at any offset."""
    req = Requests()
    bus = PortBus()
    bus.register(0xF4, 4, DebugExit(req))
    bus.write(0xF4 + offset, size, value)
    assert req.calls == [("exit", status)]
    assert bus.read(0xF4, 4) == 0


def test_pc_debug_exit_via_qtest_requests_exit() -> None:
    """Issue 6: a 4-byte isa-debug-exit at 0xF4 (kvm-unit-tests' iosize=0x4)."""
    m = PcMachine()
    assert qtest(m, "outl 0xf4 0x2a") == ["OK"]
    assert m.run_request is not None
    assert (m.run_request.kind, m.run_request.status) == ("exit", 0x55)


# -- port 0x92 -------------------------------------------------------------------------
def test_port92_fast_reset_only_on_rising_edge_of_bit0() -> None:
    """PIIX3 Port 92h: ALT_RST# 0->1 resets; writing 1 while it is 1 does nothing."""
    req = Requests()
    dev = Port92(req)
    dev.write(0, 1, 0x01)
    dev.write(0, 1, 0x01)
    assert req.calls == [("reset", 0)]
    dev.write(0, 1, 0x00)
    dev.write(0, 1, 0x03)
    assert req.calls == [("reset", 0), ("reset", 0)]
    dev.reset()  # QEMU port92_reset clears bit 0 only
    assert dev.read(0, 1) == 0x02
    dev.write(0, 1, 0x03)
    assert len(req.calls) == 3


def test_port92_a20_bit_reads_back_and_drives_a20() -> None:
    req = Requests()
    levels: list[bool] = []
    dev = Port92(req, levels.append)
    assert dev.read(0, 1) == 0x00
    dev.write(0, 1, 0x02)
    dev.write(0, 1, 0xF0)
    assert levels == [True, False]
    assert dev.read(0, 1) == 0xF0
    assert req.calls == []


def test_pc_a20_is_the_or_of_kbc_and_port92() -> None:
    """PIIX3: ALT_A20_GATE is ORed with the keyboard controller's A20GATE output."""
    m = PcMachine()
    assert m.a20_enabled  # i8042 output port powers on with A20 set
    qtest(m, "outb 0x64 0xdd")  # i8042 A20 off; port 92 bit 1 is 0
    assert not m.a20_enabled
    qtest(m, "outb 0x92 0x02")
    assert m.a20_enabled
    qtest(m, "outb 0x64 0xdf", "outb 0x92 0x00")
    assert m.a20_enabled
    qtest(m, "outb 0x64 0xd1", "outb 0x60 0xcd")  # output port: A20 off, reset line high
    assert not m.a20_enabled
    assert m.run_request is None


def test_pc_port92_fast_reset_via_qtest() -> None:
    m = PcMachine()
    assert qtest(m, "inb 0x92", "outb 0x92 0x01", "inb 0x92") == ["OK 0x0000", "OK", "OK 0x0001"]
    assert m.run_request is not None and m.run_request.kind == "reset"


# -- 0xCF9 reset control ---------------------------------------------------------------
def test_rcr_hard_and_soft_reset_and_srst_latch() -> None:
    """PIIX3 RC register: SRST (bit 1) latched and readable; RCPU (bit 2) 0->1 starts a hard
    (SRST=1) or soft (SRST=0) reset; RCPU reads back 0 so the next write starts another."""
    req = Requests()
    rcr = ResetControl(req)
    rcr.write(0, 1, 0x02)
    assert rcr.read(0, 1) == 0x02 and req.calls == []
    rcr.write(0, 1, 0x06)  # Linux reboot=pci: 0x02 then 0x06
    assert req.calls == [("reset", 0)] and rcr.last_reset == "hard"
    assert rcr.read(0, 1) == 0x02
    rcr.write(0, 1, 0x04)
    assert rcr.last_reset == "soft" and len(req.calls) == 2
    rcr.write(0, 1, 0xF9)  # other bits are not latched
    assert rcr.read(0, 1) == 0x00
    rcr.write(0, 1, 0x0E)  # ICH FULL_RST in bit 3 is ignored; RCPU still resets
    assert len(req.calls) == 3 and rcr.last_reset == "hard"


def test_pc_keeps_reset_control_off_the_port_bus() -> None:
    """0xCF9 sits inside the 0xCF8 dword: the PCI address device forwards to it."""
    m = PcMachine()
    assert isinstance(m.reset_control, ResetControl)
    route = m.ports.find(0xCF9)
    assert route is None or route.device is not m.reset_control


# -- state and fuzz --------------------------------------------------------------------
def test_reset_ports_save_restore_validation() -> None:
    p = Port92(Requests())
    p.write(0, 1, 0x82)
    q = Port92(Requests())
    q.restore(p.save())
    assert q.read(0, 1) == 0x82
    r = ResetControl(Requests())
    r.write(0, 1, 0x02)
    r2 = ResetControl(Requests())
    r2.restore(r.save())
    assert r2.read(0, 1) == 0x02
    bad_states: list[tuple[Any, dict[str, Any]]] = [
        (q, {"kind": "port92", "version": 1, "value": 0x100}),
        (q, {"kind": "port92", "version": 1, "value": True}),
        (r2, {"kind": "reset-control", "version": 1, "value": 0x04}),
        (r2, {"kind": "reset-control", "version": 9, "value": 0}),
    ]
    for dev, state in bad_states:
        with pytest.raises(StateError):
            dev.restore(state)
    d = DebugCon()
    d.restore({"kind": "debugcon", "version": 1, "readback": 0x12})
    assert d.read(0, 1) == 0x12
    with pytest.raises(StateError):
        d.restore({"kind": "debugcon", "version": 1, "readback": -1})
    e = DebugExit(Requests())
    e.restore(e.save())


PORTS = (0x80, 0x92, 0x402, 0xF4, 0xF5, 0xF6, 0xF7)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(PORTS),
            st.sampled_from((1, 2, 4)),
            st.integers(0, 0xFFFFFFFF),
            st.booleans(),
        ),
        max_size=40,
    ),
    st.lists(st.integers(0, 0xFF), max_size=10),
)
def test_any_access_sequence_never_raises_and_state_round_trips(
    accesses: list[tuple[int, int, int, bool]], rcr_writes: list[int]
) -> None:
    out = io.BytesIO()
    req = Requests()
    a20: list[bool] = []
    bus = PortBus()
    post = PostCodePort(ManualClock())
    p92 = Port92(req, a20.append)
    exit_dev = DebugExit(req)
    bus.register(0x80, 1, post)
    bus.register(0x92, 1, p92)
    bus.register(0x402, 1, DebugCon(out.write))
    bus.register(0xF4, 4, exit_dev)
    rcr = ResetControl(req)
    written = 0
    for port, size, value, is_write in accesses:
        value &= (1 << (8 * size)) - 1
        if is_write:
            bus.write(port, size, value)
            written += port == 0x402
        else:
            assert 0 <= bus.read(port, size) < 1 << (8 * size)
    for v in rcr_writes:
        rcr.write(0, 1, v)
    assert bus.faults == 0
    assert len(out.getvalue()) == written
    assert all(kind in ("exit", "reset") for kind, _ in req.calls)
    assert all(s & 1 for kind, s in req.calls if kind == "exit")  # always odd
    assert rcr.read(0, 1) & ~0x02 == 0
    for dev, fresh in (
        (post, PostCodePort()),
        (p92, Port92(Requests())),
        (rcr, ResetControl(Requests())),
    ):
        fresh.restore(dev.save())
        assert fresh.save() == dev.save()
