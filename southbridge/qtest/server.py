"""A server for QEMU's qtest protocol (see QEMU's system/qtest.c for the peer).

Commands arrive one per line; each gets exactly one answer line (`OK ...`, `FAIL ...` or
`ERR ...`), and `IRQ raise N` / `IRQ lower N` lines are sent as intercepted lines change.
Anything malformed gets a FAIL answer: a script can never crash the server.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import TextIO

from southbridge.core.clock import ManualClock
from southbridge.core.irq import IrqLine
from southbridge.machine.base import Machine

logger = logging.getLogger("southbridge.qtest")

U64 = (1 << 64) - 1
I64_MAX = (1 << 63) - 1

# Bounds on what one protocol line may ask for, checked before anything is allocated or
# looped over (issue 15): a bulk access is at most 16 MiB and must end inside the 64-bit
# address space; at most 64 KiB of it may fall outside RAM (those bytes go to the MMIO bus
# 8 bytes per access); a number is at most 66 characters (0x + 64 hex digits is already
# out of range); one clock_step/clock_set fires at most QTEST_MAX_CALLBACKS timer callbacks
# (a guest timer storm then stops time at the last one fired: `ManualClock.set_bounded`).
MAX_BULK = 1 << 24
MAX_BULK_MMIO = 1 << 16
MAX_NUMBER_CHARS = 66
QTEST_MAX_CALLBACKS = 100_000
# A stream's line is read at most this many characters at a time: the longest legal line
# is a `write` of MAX_BULK bytes as hex (2 * MAX_BULK digits) plus its words, so a line
# without a newline costs this much memory, never the whole stream (`serve_stream`).
MAX_LINE = 2 * MAX_BULK + 256


class QtestError(Exception):
    pass


def parse_uint(word: str, limit: int = U64) -> int:
    """strtoul(…, 0) rules: 0x hex, leading-0 octal, decimal; a leading '-' wraps."""
    w = word.strip()
    if len(w) > MAX_NUMBER_CHARS:
        raise QtestError(f"invalid number '{w[:20]}...'")
    neg = w.startswith("-")
    if neg:
        w = w[1:]
    try:
        if w.lower().startswith("0x"):
            v = int(w[2:], 16)
        elif len(w) > 1 and w.startswith("0"):
            v = int(w[1:], 8)
        else:
            v = int(w, 10)
    except ValueError:
        raise QtestError(f"invalid number '{word}'") from None
    if neg:
        v = (-v) & U64
    if v > limit:
        raise QtestError(f"value '{word}' out of range")
    return v


def parse_int(word: str) -> int:
    """qemu_strtoi64 rules: a signed 64-bit number; anything outside int64 is refused."""
    if len(word) > MAX_NUMBER_CHARS:
        raise QtestError(f"invalid number '{word[:20]}...'")
    try:
        v = int(word, 0)
    except ValueError:
        try:
            v = int(word, 10)
        except ValueError:
            raise QtestError(f"invalid number '{word}'") from None
    if not -I64_MAX - 1 <= v <= I64_MAX:
        raise QtestError(f"value '{word}' out of range")
    return v


_SIZES = {"b": 1, "w": 2, "l": 4, "q": 8}


class QtestSession:
    """One qtest conversation over a machine; `send` receives each output line with '\\n'."""

    def __init__(self, machine: Machine, send: Callable[[str], None]) -> None:
        self.machine = machine
        self.send = send
        self._intercepted: str | None = None
        self._irq_levels: dict[int, bool] = {}

    # -- IRQ interception ----------------------------------------------------------------
    def _intercept(self, lines: list[IrqLine]) -> None:
        for n, line in enumerate(lines):
            self._irq_levels[n] = line.level

            def report(level: bool, n: int = n, line: IrqLine = line) -> None:
                if self._irq_levels.get(n) != level:
                    self._irq_levels[n] = level
                    self.send(f"IRQ {'raise' if level else 'lower'} {n}\n")
                    if level:
                        line.ack()  # intercepted: qtest is the controller, taking it at once

            line.connect(report)
            if line.level:
                line.ack()  # a request already raised is taken too

    def _resolve(self, table: dict[str, list[IrqLine]], path: str) -> list[IrqLine] | None:
        if path in table:
            return table[path]
        # QOM-style partial paths: "/machine/i440fx/ioapic" resolves by its last component.
        leaf = path.rstrip("/").rsplit("/", 1)[-1]
        return table.get(leaf)

    # -- commands ------------------------------------------------------------------------
    def handle(self, line: str) -> None:
        words = line.strip().split()
        if not words:
            return
        try:
            with self.machine.lock:
                self.send(self._dispatch(words))
        except QtestError as e:
            self.send(f"FAIL {e}\n")
        except Exception:  # never let a script take the server down, nor show Python
            logger.debug("qtest command failed", exc_info=True)
            self.send("FAIL internal error\n")

    def _bulk(self, addr: int, length: int) -> None:
        """Refuse a bulk access before touching memory (bounds: see MAX_BULK)."""
        if length > MAX_BULK or addr + length > U64 + 1:
            raise QtestError("invalid length")
        in_ram = 0
        for r in self.machine.memory.regions:  # O(regions), whatever the length
            lo, hi = max(addr, r.gpa), min(addr + length, r.end)
            in_ram += max(0, hi - lo)
        if length - in_ram > MAX_BULK_MMIO:
            raise QtestError("invalid length: range outside guest memory")

    def _need(self, words: list[str], n: int) -> None:
        if len(words) < n + 1:
            raise QtestError(f"'{words[0]}' needs {n} argument{'s' if n > 1 else ''}")

    def _dispatch(self, words: list[str]) -> str:
        cmd = words[0]
        m = self.machine
        if cmd in ("outb", "outw", "outl"):
            self._need(words, 2)
            port = parse_uint(words[1], 0xFFFF)
            value = parse_uint(words[2])
            size = _SIZES[cmd[3]]
            m.ports.write(port, size, value & ((1 << (8 * size)) - 1))
            return "OK\n"
        if cmd in ("inb", "inw", "inl"):
            self._need(words, 1)
            port = parse_uint(words[1], 0xFFFF)
            return f"OK 0x{m.ports.read(port, _SIZES[cmd[2]]):04x}\n"
        if cmd in ("writeb", "writew", "writel", "writeq"):
            self._need(words, 2)
            addr = parse_uint(words[1])
            size = _SIZES[cmd[5]]
            m.space.write(addr, size, parse_uint(words[2]))
            return "OK\n"
        if cmd in ("readb", "readw", "readl", "readq"):
            self._need(words, 1)
            addr = parse_uint(words[1])
            return f"OK 0x{m.space.read(addr, _SIZES[cmd[4]]):016x}\n"
        if cmd == "read":
            self._need(words, 2)
            addr, length = parse_uint(words[1]), parse_uint(words[2])
            if length == 0:
                raise QtestError("invalid length")
            self._bulk(addr, length)
            return f"OK 0x{m.space.read_bytes(addr, length).hex()}\n"
        if cmd == "b64read":
            self._need(words, 2)
            addr, length = parse_uint(words[1]), parse_uint(words[2])
            self._bulk(addr, length)
            return f"OK {base64.b64encode(m.space.read_bytes(addr, length)).decode()}\n"
        if cmd == "write":
            self._need(words, 3)
            addr, length = parse_uint(words[1]), parse_uint(words[2])
            hexdata = words[3]
            if len(hexdata) < 3:
                return "ERR invalid argument size\n"
            self._bulk(addr, length)
            digits = hexdata[2:] if hexdata.lower().startswith("0x") else hexdata
            digits = digits[: 2 * length]
            try:
                data = bytes.fromhex(digits[: len(digits) & ~1])
            except ValueError:
                raise QtestError("invalid hex data") from None
            m.space.write_bytes(addr, data.ljust(length, b"\0"))
            return "OK\n"
        if cmd == "b64write":
            self._need(words, 3)
            addr, length = parse_uint(words[1]), parse_uint(words[2])
            if len(words[3]) < 3:
                return "ERR invalid argument size\n"
            self._bulk(addr, length)
            try:
                decoded = base64.b64decode(words[3], validate=False)
            except ValueError:
                raise QtestError("invalid base64 data") from None
            m.space.write_bytes(addr, decoded[:length].ljust(length, b"\0"))
            return "OK\n"
        if cmd == "memset":
            self._need(words, 3)
            addr, length = parse_uint(words[1]), parse_uint(words[2])
            pattern = parse_uint(words[3]) & 0xFF
            self._bulk(addr, length)
            if length:
                m.space.write_bytes(addr, bytes([pattern]) * length)
            return "OK\n"
        if cmd == "endianness":
            return "OK little\n"
        if cmd == "clock_step":
            clock = self._manual()
            old = clock.now()
            if len(words) > 1:
                ns = parse_int(words[1])
                new, _ = clock.set_bounded(min(I64_MAX, old + max(0, ns)), QTEST_MAX_CALLBACKS)
            else:
                pending = clock.next_deadline()
                if pending is None:
                    return (
                        "FAIL cannot advance clock to the next deadline because there is "
                        "no pending deadline\n"
                    )
                new, _ = clock.set_bounded(max(pending, old), QTEST_MAX_CALLBACKS)
            return f"OK {new}\n" if new > old else "FAIL could not advance time\n"
        if cmd == "clock_set":
            self._need(words, 1)
            clock = self._manual()
            ns = parse_int(words[1])
            new, _ = clock.set_bounded(ns, QTEST_MAX_CALLBACKS)
            return f"{'OK' if new == ns else 'FAIL'} {new}\n"
        if cmd in ("irq_intercept_in", "irq_intercept_out"):
            self._need(words, 1)
            table = m.irq_inputs if cmd.endswith("in") else m.irq_outputs
            lines = self._resolve(table, words[1])
            if lines is None:
                return "FAIL Unknown device\n"
            if self._intercepted is not None:
                if self._intercepted != words[1]:
                    return "FAIL IRQ intercept already enabled\n"
                return "OK\n"
            self._intercepted = words[1]
            self._intercept(lines)
            return "OK\n"
        if cmd == "set_irq_in":
            self._need(words, 4)
            lines = self._resolve(m.irq_inputs, words[1])
            if lines is None:
                return "FAIL Unknown device\n"
            if words[2] != "unnamed-gpio-in":
                return f"FAIL Unknown GPIO '{words[2]}'\n"
            n = parse_uint(words[3])
            if n >= len(lines):
                raise QtestError("irq number out of range")
            lines[n].set(parse_int(words[4]) != 0)
            return "OK\n"
        return f"FAIL Unknown command '{cmd}'\n"

    def _manual(self) -> ManualClock:
        clock = self.machine.clock
        if not isinstance(clock, ManualClock):
            raise QtestError("clock is not virtual")
        return clock


def serve_stream(session: QtestSession, stream: TextIO, limit: int = MAX_LINE) -> None:
    """Answer every line of `stream` until it ends. A line longer than `limit` characters
    is answered FAIL and skipped in `limit`-sized pieces (memory stays bounded by it)."""
    while True:
        line = stream.readline(limit)
        if not line:
            return
        if len(line) >= limit and not line.endswith("\n"):
            while True:
                rest = stream.readline(limit)
                if not rest or rest.endswith("\n"):
                    break
            session.send(f"FAIL line longer than {limit} characters\n")
            continue
        session.handle(line)
