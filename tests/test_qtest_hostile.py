"""Hostile qtest lines (issue 15): sizes, addresses and numbers from the protocol are
checked before anything is allocated or looped over, and refused in QEMU's answer form
(`FAIL <reason>`, system/qtest.c), never with Python's exception text."""

from __future__ import annotations

import tracemalloc

import pytest

from southbridge.machine.pc import PcMachine
from southbridge.qtest.server import MAX_BULK, QTEST_MAX_CALLBACKS, QtestSession


def session() -> tuple[QtestSession, list[str], PcMachine]:
    m = PcMachine()
    out: list[str] = []
    return QtestSession(m, out.append), out, m


def ask(s: QtestSession, out: list[str], line: str) -> str:
    out.clear()
    s.handle(line)
    assert len(out) == 1, (line, out)
    return out[0]


def test_lapic_timer_storm_reproducer_is_bounded() -> None:
    """The issue's reproducer: software-enable the APIC, divide 1, periodic LVT with vector
    0 (never sets an IRR bit), initial count 1. One clock_step fires at most the budget of
    callbacks and answers OK with the instant it reached, so the session stays live."""
    s, out, m = session()
    for line in (
        "writel 0xfee000f0 0x1ff",
        "writel 0xfee003e0 0xb",
        "writel 0xfee00320 0x20000",
        "writel 0xfee00380 0x1",
    ):
        assert ask(s, out, line) == "OK\n"
    before = m.clock.fired
    answer = ask(s, out, "clock_step 1000000")
    assert answer.startswith("OK ")
    assert 0 < int(answer.split()[1]) <= 1_000_000
    assert m.clock.fired - before <= QTEST_MAX_CALLBACKS
    assert ask(s, out, "inb 0x80").startswith("OK")  # still answering


@pytest.mark.parametrize(
    "line",
    [
        "read 0x0 0xffffffffffffffff",
        "b64read 0x0 0xffffffffffffffff",
        "write 0x0 0xffffffffffffffff 0x00",
        "b64write 0x0 0xffffffffffffffff AAAA",
        "memset 0x0 0xffffffffffffffff 0",
        f"memset 0x0 {MAX_BULK + 1} 0",
        "read 0xfffffffffffffff0 0x20",  # wraps past 2^64
        "read 0xfe000000 0x1000000",  # 16 MiB of MMIO hole, 8 bytes per bus access
        "read 0x0 -1",  # a negative count wraps like strtoul
        "memset 0x0 -5 0",
    ],
)
def test_huge_or_wrapping_bulk_sizes_are_refused_at_once(line: str) -> None:
    s, out, _ = session()
    tracemalloc.start()
    try:
        answer = ask(s, out, line)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.startswith("FAIL invalid length"), answer
    assert peak < 1 << 20  # nothing of the asked size was allocated


@pytest.mark.parametrize(
    "line",
    [
        "clock_step 18446744073709551616",  # 2^64: outside qemu_strtoi64's range
        "clock_set 99999999999999999999999",
        "outb 0x80 99999999999999999999999999",
        "readb " + "1" * 5000,
        "readb 0x" + "f" * 100_000,
        "set_irq_in ioapic unnamed-gpio-in -1 1",
    ],
)
def test_huge_numbers_are_refused_in_qemu_form(line: str) -> None:
    s, out, _ = session()
    answer = ask(s, out, line)
    assert answer.startswith("FAIL "), answer
    assert "Error" not in answer and "int" not in answer.split(" ", 1)[1][:20]


def test_negative_clock_step_cannot_move_time() -> None:
    s, out, _ = session()
    assert ask(s, out, "clock_step -5") == "FAIL could not advance time\n"


def test_largest_clock_step_stays_in_int64() -> None:
    s, out, _ = session()
    answer = ask(s, out, f"clock_step {(1 << 63) - 1}")
    assert answer.startswith("OK ")
    assert int(answer.split()[1]) <= (1 << 63) - 1


def test_write_pads_short_hex_with_zeros_like_qemu() -> None:
    """system/qtest.c `write`: bytes past the given hex data are written as zero."""
    s, out, _ = session()
    assert ask(s, out, "memset 0x2000 4 0xff") == "OK\n"
    assert ask(s, out, "write 0x2000 4 0x1122") == "OK\n"
    assert ask(s, out, "read 0x2000 4") == "OK 0x11220000\n"
    assert ask(s, out, "write 0x2000 2 0xzz") == "FAIL invalid hex data\n"
