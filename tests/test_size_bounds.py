"""Issue 15, item 4: every size a protocol line or a saved state supplies is checked
against its bound before anything is allocated or looped over."""

from __future__ import annotations

import copy
import io

import pytest

from southbridge.core.state import StateError, get_hex
from southbridge.fuzz.world import build_pc
from southbridge.machine.pc import PcMachine
from southbridge.qtest.server import MAX_BULK, MAX_LINE, QtestSession, serve_stream


def _session() -> tuple[QtestSession, list[str]]:
    out: list[str] = []
    return QtestSession(PcMachine(), out.append), out


def test_a_line_without_a_newline_is_read_with_a_bound() -> None:
    """A stream of one endless line is answered FAIL after `limit` characters, piece by
    piece, and the lines after it are served as usual."""
    session, out = _session()
    stream = io.StringIO("outb 0x80 0x12\n" + "x" * 1000 + "\ninb 0x80\n" + "y" * 300)
    serve_stream(session, stream, limit=64)
    assert out == [
        "OK\n",
        "FAIL line longer than 64 characters\n",
        "OK 0x0012\n",
        "FAIL line longer than 64 characters\n",
    ]


def test_the_longest_legal_line_fits_the_bound() -> None:
    longest = f"write 0x{(1 << 64) - MAX_BULK:x} 0x{MAX_BULK:x} 0x" + "00" * MAX_BULK + "\n"
    assert len(longest) <= MAX_LINE
    assert MAX_LINE < 2 * MAX_BULK + 1024  # and bounds one line's memory near it


def test_a_short_final_line_without_newline_is_served() -> None:
    session, out = _session()
    serve_stream(session, io.StringIO("inb 0x80"), limit=64)
    assert out == ["OK 0x00ff\n"]  # a POST port read: all-ones, as on QEMU


def test_hex_fields_are_measured_before_they_are_decoded() -> None:
    # 'zz' is not hex: the length check answers first, so nothing was decoded.
    with pytest.raises(StateError, match="hex digits"):
        get_hex({"x": "zz" * 100_000}, "x", 4)
    assert get_hex({"x": "0a0b"}, "x", 2) == b"\n\x0b"


def test_pci_config_state_of_the_wrong_size_is_refused_unchanged() -> None:
    m = PcMachine()
    state = m.pci_bus.save()
    bad = copy.deepcopy(state)
    path = next(iter(bad["functions"]))
    bad["functions"][path]["config"] += "00" * 4096
    with pytest.raises(StateError, match="hex digits"):
        m.pci_bus.restore(bad)
    assert m.pci_bus.save() == state


def test_virtio_vectors_beyond_the_msix_table_are_refused() -> None:
    """4.1.5.1.2: a driver writing a vector the table cannot hold reads back NO_VECTOR, so
    a saved one beyond the table is a state no device can be in."""
    m = build_pc()
    try:
        fn = m.virtio[0]
        state = fn.save()
        vectors = fn.msix.vectors if fn.msix is not None else 0
        for where in ("config", "queue"):
            bad = copy.deepcopy(state)
            dev = bad["device"]
            if where == "config":
                dev["msix_config"] = vectors
            else:
                dev["queues"][0]["msix_vector"] = vectors + 5
            with pytest.raises(StateError, match="MSI-X vector"):
                fn.restore(bad)
        assert fn.save() == state
        good = copy.deepcopy(state)
        good["device"]["msix_config"] = vectors - 1
        fn.restore(good)
    finally:
        m.close()
