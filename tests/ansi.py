"""A small VT100 screen for tests that read a BIOS console on a serial port: SeaBIOS's
sercon (and GRUB through it) draws with cursor positioning, re-sending the cursor position
when its lazy output falls behind a real-speed UART, so the byte stream only reads right
once rendered. Handles what sercon emits: ESC c (reset), CSI row;col H, CSI 2J, CSI K,
SGR and mode sets (ignored), CR, LF, BS; lines wider than the screen wrap."""

from __future__ import annotations

import re

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def render(text: str, rows: int = 25, cols: int = 80) -> list[str]:
    screen = [[" "] * cols for _ in range(rows)]
    r = c = 0
    i = 0

    def clear() -> None:
        for line in screen:
            line[:] = [" "] * cols

    while i < len(text):
        ch = text[i]
        if ch == "\x1b":
            if text.startswith("\x1bc", i):
                clear()
                r = c = 0
                i += 2
                continue
            m = _CSI.match(text, i)
            if m is None:
                i += 1
                continue
            args, op = m.group(1), m.group(2)
            nums = [int(x) if x.isdigit() else 0 for x in args.lstrip("?").split(";")]
            if op == "H":
                r = max(0, min(rows - 1, (nums[0] or 1) - 1))
                c = max(0, min(cols - 1, ((nums[1] if len(nums) > 1 else 1) or 1) - 1))
            elif op == "J" and nums[0] == 2:
                clear()
            elif op == "K":
                screen[r][c:] = [" "] * (cols - c)
            i = m.end()
            continue
        if ch == "\r":
            c = 0
        elif ch == "\n":
            r += 1
        elif ch == "\b":
            c = max(0, c - 1)
        elif ch >= " ":
            if c >= cols:
                c, r = 0, r + 1
            if r >= rows:
                screen.pop(0)
                screen.append([" "] * cols)
                r = rows - 1
            screen[r][c] = ch
            c += 1
        if r >= rows:
            screen.pop(0)
            screen.append([" "] * cols)
            r = rows - 1
        i += 1
    return ["".join(line).rstrip() for line in screen]
