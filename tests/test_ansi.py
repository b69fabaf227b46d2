"""The test-side VT100 screen (tests/ansi.py) on sequences SeaBIOS's sercon sends."""

from __future__ import annotations

from tests.ansi import render


def test_cursor_resync_overwrites_the_duplicated_bytes() -> None:
    # Captured from SeaBIOS 1.16 sercon on our 16550: a late flush repeats a byte and then
    # re-sends the cursor position before going on.
    raw = "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBII\x1b[01;06HOS (version 1.16.2)\r\nBooting from ROM.."
    screen = render(raw)
    assert screen[0] == "SeaBIOS (version 1.16.2)"
    assert screen[1] == "Booting from ROM.."


def test_clear_line_wrap_and_scroll() -> None:
    screen = render("abc\x1b[1;2H\x1b[K" + "\r\n" * 30 + "x" * 85, rows=5, cols=80)
    assert screen[-2] == "x" * 80 and screen[-1] == "x" * 5
    assert render("abc\x1b[1;2H\x1b[K")[0] == "a"
