"""The minimal 8042 keyboard controller (issue 5 item 3, issue 3 item 5's 0xFE reset).

Rules cited: IBM PC AT Technical Reference, "Keyboard controller" (status register bits,
command byte, commands 20h/60h, AAh self-test -> 55h, ABh interface test -> 00h, ADh/AEh,
C0h, D0h/D1h output port with bit 0 system reset and bit 1 gate A20, Fxh pulse output
port), the PS/2 extensions (A7h/A8h/A9h, D2h/D3h/D4h, status bit 5 auxiliary data), and
QEMU hw/input/pckbd.c (power-on state, IRQ1/IRQ12 levels, DDh/DFh A20).
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.irq import IrqLine
from southbridge.core.portbus import PortBus
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.state import StateError
from southbridge.devices import i8042 as i8042_module
from southbridge.devices.i8042 import I8042
from southbridge.machine.pc import PcMachine
from southbridge.qtest.server import QtestSession

DATA, CMD = 0x60, 0x64
OBF, IBF, SYS, A2, UNLOCKED, AUX, TIMEOUT = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40


class Rig:
    def __init__(self, bus: PortBus | None = None) -> None:
        self.requests: list[tuple[str, int]] = []
        self.a20: list[bool] = []
        self.irq1 = IrqLine("irq1")
        self.irq12 = IrqLine("irq12")
        self.kbc = I8042(
            lambda k, s: self.requests.append((k, s)), self.a20.append, self.irq1, self.irq12
        )
        self.bus = bus if bus is not None else PortBus()
        self.bus.register(DATA, 1, self.kbc.data_port)
        self.bus.register(CMD, 1, self.kbc.command_port)

    def cmd(self, value: int) -> None:
        self.bus.write(CMD, 1, value)

    def data(self, value: int) -> None:
        self.bus.write(DATA, 1, value)

    def status(self) -> int:
        return self.bus.read(CMD, 1)

    def read(self) -> int:
        return self.bus.read(DATA, 1)

    def ask(self, command: int) -> int:
        """Issue a command that answers, check OBF, take the byte."""
        self.cmd(command)
        assert self.status() & OBF
        return self.read()


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_power_on_status_and_command_byte(rig: Rig) -> None:
    """Power-on: output buffer empty, IBF never set, not inhibited, SYS clear until the
    self-test; QEMU's command byte 0x03 (keyboard and auxiliary interrupts enabled)."""
    st_ = rig.status()
    assert st_ & (OBF | IBF | SYS | AUX | TIMEOUT) == 0
    assert st_ & UNLOCKED
    assert rig.ask(0x20) == 0x03
    assert rig.a20 == [True]


def test_self_test_answers_55_and_sets_system_flag(rig: Rig) -> None:
    """AT Tech Ref: AAh -> 55h in the output buffer; the system flag is set after it."""
    rig.cmd(0xAA)
    s = rig.status()
    assert s & OBF and s & SYS and s & A2
    assert rig.read() == 0x55
    assert rig.status() & OBF == 0
    assert rig.status() & SYS


def test_interface_tests_answer_zero(rig: Rig) -> None:
    """ABh (keyboard) and A9h (auxiliary) interface tests: 00h = no line stuck."""
    assert rig.ask(0xAB) == 0x00
    assert rig.ask(0xA9) == 0x00


def test_write_command_byte_then_read_it_back_and_sys_follows_bit2(rig: Rig) -> None:
    """60h then a data byte writes the command byte; bit 2 is copied to status SYS."""
    rig.cmd(0x60)
    assert rig.status() & A2
    rig.data(0x47)
    assert rig.status() & A2 == 0  # last write went to the data port
    assert rig.status() & SYS
    assert rig.ask(0x20) == 0x47
    rig.cmd(0x60)
    rig.data(0x43)
    assert rig.status() & SYS == 0


def test_disable_enable_keyboard_and_aux_show_in_command_byte(rig: Rig) -> None:
    """ADh/AEh set/clear command byte bit 4; A7h/A8h bit 5."""
    rig.cmd(0xAD)
    assert rig.ask(0x20) & 0x10
    rig.cmd(0xAE)
    assert rig.ask(0x20) & 0x10 == 0
    rig.cmd(0xA7)
    assert rig.ask(0x20) & 0x20
    rig.cmd(0xA8)
    assert rig.ask(0x20) & 0x20 == 0


def test_output_port_read_write_a20_and_obf_bits(rig: Rig) -> None:
    """D0h reads the output port (bit 1 A20, bit 0 reset high, bits 4/5 the buffer state
    before the answer is placed, as QEMU queues s->outport); D1h writes it and drives A20."""
    assert rig.ask(0xD0) == 0xCF  # QEMU's power-on output port, buffer empty
    rig.cmd(0xD2)
    rig.data(0x11)
    assert rig.ask(0xD0) == 0xDF  # a keyboard byte was waiting: bit 4 (IRQ1 pin) set
    rig.cmd(0xD1)
    rig.data(0xCD)  # A20 off, reset line stays high
    assert rig.a20[-1] is False
    assert rig.ask(0xD0) & 0x03 == 0x01
    rig.cmd(0xDF)
    assert rig.a20[-1] is True and rig.ask(0xD0) & 0x02
    rig.cmd(0xDD)
    assert rig.a20[-1] is False and rig.ask(0xD0) & 0x02 == 0
    assert rig.requests == []


def test_output_port_bit0_low_resets_the_cpu(rig: Rig) -> None:
    """Output port bit 0 is the system reset line, active low."""
    rig.cmd(0xD1)
    rig.data(0xDE)
    assert rig.requests == [("reset", 0)]


@pytest.mark.parametrize("command", [0xFE, 0xF0, 0xFC, 0xF6])
def test_pulse_with_bit0_clear_resets(rig: Rig, command: int) -> None:
    """Fxh pulses output port bits 3-0 where the command bit is 0; bit 0 is reset."""
    rig.cmd(command)
    assert rig.requests == [("reset", 0)]


@pytest.mark.parametrize("command", [0xFF, 0xF1, 0xFD])
def test_pulse_with_bit0_set_does_not_reset(rig: Rig, command: int) -> None:
    rig.cmd(command)
    assert rig.requests == []


def test_no_keyboard_byte_to_keyboard_times_out_with_fe(rig: Rig) -> None:
    """No keyboard attached: a byte sent to it is answered by the controller with FEh and
    the time-out bit (status bit 6), which Linux maps to SERIO_TIMEOUT; reading clears it."""
    rig.cmd(0xAD)
    rig.data(0xFF)  # keyboard reset command
    s = rig.status()
    assert s & OBF and s & TIMEOUT and not s & AUX
    assert rig.read() == 0xFE
    assert rig.status() & (OBF | TIMEOUT) == 0
    assert rig.ask(0x20) & 0x10 == 0  # writing to the keyboard re-enabled its interface


def test_no_mouse_byte_to_aux_times_out_with_fe_as_aux_data(rig: Rig) -> None:
    rig.cmd(0xD4)
    rig.data(0xF2)
    s = rig.status()
    assert s & OBF and s & AUX and s & TIMEOUT
    assert rig.irq12.level and not rig.irq1.level
    assert rig.read() == 0xFE
    assert not rig.irq12.level


def test_write_output_buffer_commands_loop_back(rig: Rig) -> None:
    """D2h/D3h put the next data byte in the output buffer as keyboard/auxiliary data (Linux
    i8042_check_aux uses D3h loopback)."""
    rig.cmd(0xD2)
    rig.data(0x5A)
    assert rig.status() & (OBF | AUX) == OBF and rig.irq1.level
    assert rig.read() == 0x5A and not rig.irq1.level
    rig.cmd(0xD3)
    rig.data(0xA5)
    assert rig.status() & (OBF | AUX) == OBF | AUX and rig.irq12.level
    assert rig.read() == 0xA5


def test_irq1_follows_obf_only_while_enabled(rig: Rig) -> None:
    """pckbd.c: IRQ1 while a non-aux byte waits and command byte bit 0 is set and the
    keyboard interface is enabled."""
    rig.cmd(0x60)
    rig.data(0x00)  # interrupts off
    rig.cmd(0xAA)
    assert not rig.irq1.level
    rig.read()
    rig.cmd(0x60)
    rig.data(0x01)
    rig.cmd(0xAA)
    assert rig.irq1.level
    rig.cmd(0xAD)
    assert not rig.irq1.level  # disabled interface: no interrupt
    rig.cmd(0xAE)
    assert rig.irq1.level
    rig.read()
    assert not rig.irq1.level


def test_reading_empty_buffer_returns_last_byte(rig: Rig) -> None:
    rig.ask(0xAA)
    assert rig.read() == 0x55
    assert rig.status() & OBF == 0


def test_new_command_cancels_pending_data_command(rig: Rig) -> None:
    """A write to 64h replaces a command still waiting for its data byte."""
    rig.cmd(0xD1)
    rig.cmd(0xAB)
    assert rig.read() == 0x00
    rig.data(0x00)  # goes to the (absent) keyboard, not to the output port
    assert rig.requests == []
    assert rig.read() == 0xFE


def test_unknown_command_is_ignored(rig: Rig) -> None:
    before = rig.kbc.save()
    rig.cmd(0x95)
    after = rig.kbc.save()
    assert after == before  # A2 was already set at power-on


def test_input_port_and_test_inputs(rig: Rig) -> None:
    assert rig.ask(0xC0) == 0x80  # QEMU: keyboard not inhibited
    assert rig.ask(0xE0) == 0x03
    rig.cmd(0xAD)
    assert rig.ask(0xE0) == 0x02


def test_pc_machine_via_qtest_selftest_a20_and_fe_reset() -> None:
    """Issue 3 item 5: reset via the keyboard controller's 0xFE command on 0x64."""
    m = PcMachine()
    out: list[str] = []
    q = QtestSession(m, out.append)
    q.handle("irq_intercept_in ioapic")
    for line in ("outb 0x64 0xaa", "inb 0x64", "inb 0x60", "inb 0x64", "outb 0x64 0xfe"):
        q.handle(line)
    text = [s.strip() for s in out]
    # Self-test answer raises IRQ1 (command byte bit 0 set at power-on); status shows
    # OBF|SYS|A2|unlocked; reading the data port lowers IRQ1 and clears OBF.
    assert text == [
        "OK",
        "IRQ raise 1",
        "OK",
        "OK 0x001d",
        "IRQ lower 1",
        "OK 0x0055",
        "OK 0x001c",
        "OK",
    ]
    assert m.run_request is not None and m.run_request.kind == "reset"


def test_save_restore_round_trip_and_validation(rig: Rig) -> None:
    rig.cmd(0xD4)
    rig.data(0x00)
    rig.cmd(0x60)
    state = rig.kbc.save()
    other = Rig()
    other.kbc.restore(state)
    assert other.kbc.save() == state
    assert other.irq12.level
    assert other.status() == rig.status()
    other.data(0x61)
    assert other.ask(0x20) == 0x61
    for key, value in (
        ("mode", 256),
        ("ram", [0] * 30),
        ("ram", [256] + [0] * 30),
        ("write_cmd", 0xAA),
        ("source", 4),
        ("timeout", 1),
        ("obuf", -1),
        ("version", 2),
        ("kind", "pic"),
    ):
        bad = dict(state)
        bad[key] = value
        with pytest.raises(StateError):
            other.kbc.restore(bad)
    bad = dict(state, source=0, timeout=True)
    with pytest.raises(StateError):
        other.kbc.restore(bad)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from((DATA, CMD)), st.integers(0, 0xFF), st.booleans()), max_size=60
    )
)
def test_any_byte_sequence_never_raises_and_invariants_hold(
    ops: list[tuple[int, int, bool]],
) -> None:
    rig = Rig(bus=PortBus())
    for port, value, is_write in ops:
        if is_write:
            rig.bus.write(port, 1, value)
        else:
            rig.bus.read(port, 1)
        s = rig.status()
        assert s & IBF == 0  # input consumed at once
        assert not (s & AUX and not s & OBF)  # aux data only with a full buffer
        assert not (s & TIMEOUT and not s & OBF)  # time-out belongs to a buffered byte
        assert not (rig.irq1.level and rig.irq12.level)  # one byte, one source
        assert not ((rig.irq1.level or rig.irq12.level) and not s & OBF)
        assert rig.kbc.a20 == rig.a20[-1]
    assert rig.bus.faults == 0
    assert all(r == ("reset", 0) for r in rig.requests)
    other = Rig(bus=PortBus())
    other.kbc.restore(rig.kbc.save())
    assert other.kbc.save() == rig.kbc.save()
    assert (other.irq1.level, other.irq12.level) == (rig.irq1.level, rig.irq12.level)


def test_controller_ram_reads_and_writes(rig: Rig) -> None:
    """AT Tech Ref: 20h-3Fh read controller RAM byte N (byte 0 is the command byte),
    60h-7Fh write it with the next data byte."""
    assert rig.ask(0x21) == 0x00
    rig.cmd(0x61)
    rig.data(0x99)
    rig.cmd(0x7F)
    rig.data(0x42)
    assert rig.status() & OBF == 0  # consumed by the controller, not sent to a keyboard
    assert rig.ask(0x21) == 0x99
    assert rig.ask(0x3F) == 0x42
    assert rig.ask(0x20) == 0x03  # command byte untouched
    other = Rig()
    other.kbc.restore(rig.kbc.save())
    assert other.ask(0x21) == 0x99


def test_unknown_command_flood_is_rate_limited_in_the_log(
    rig: Rig, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HACKING: guest-triggered oddities are logged rate-limited, never flooding the host."""
    # A fresh budget: the Hypothesis tests in this process may have spent this key's window.
    fresh = RateLimitedLog(logging.getLogger("southbridge.i8042"))
    monkeypatch.setattr(i8042_module, "_log", fresh)
    with caplog.at_level("WARNING", logger="southbridge.i8042"):
        for _ in range(500):
            rig.cmd(0x96)
    records = [r for r in caplog.records if r.name == "southbridge.i8042"]
    assert 1 <= len(records) <= 10
