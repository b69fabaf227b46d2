"""QEMU's QMP wire protocol, without sockets (issue 14 item 5).

A `QmpSession` is fed the bytes a client sent and returns the bytes to send back: the
greeting, then one reply per command, each a JSON object on a CRLF-terminated line as QEMU
writes them. Commands run only after `qmp_capabilities` (capabilities negotiation mode, as
in QEMU's monitor/qmp.c); events reach negotiated sessions. The client is untrusted:
malformed JSON, non-objects, unknown commands and wrong argument types get QMP error
replies (QEMU's error classes and wording), input is bounded, and nothing raises.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

# A command longer than this is not one southbridge has: refused, the buffer dropped.
MAX_INPUT = 1 << 20
QEMU_VERSION = {"major": 9, "minor": 2, "micro": 0}


class QmpError(Exception):
    """A command failed; `cls` is QMP's error class."""

    def __init__(self, desc: str, cls: str = "GenericError") -> None:
        super().__init__(desc)
        self.desc = desc
        self.cls = cls


class Controller(Protocol):
    """What QMP commands act on: the running domain (the runner implements it)."""

    def status(self) -> str:
        """QEMU's RunState name: "running", "paused", "shutdown", ..."""
        ...

    def stop(self) -> None: ...

    def cont(self) -> None: ...

    def system_reset(self) -> None: ...

    def system_powerdown(self) -> None: ...

    def quit(self) -> None: ...

    def cpus(self) -> list[dict[str, Any]]: ...

    def pci(self) -> list[dict[str, Any]]: ...

    def snapshot_save(self, path: str) -> None: ...

    def snapshot_load(self, path: str) -> None: ...


@dataclass(frozen=True)
class _Command:
    run: Callable[[Controller, dict[str, Any]], object]
    args: dict[str, type]  # name -> JSON type; all required


def _no_args(fn: Callable[[Controller], object]) -> _Command:
    return _Command(lambda c, a: fn(c), {})


def _status(c: Controller) -> dict[str, Any]:
    s = c.status()
    return {"status": s, "running": s == "running"}


COMMANDS: dict[str, _Command] = {
    "query-status": _no_args(_status),
    "stop": _no_args(lambda c: c.stop()),
    "cont": _no_args(lambda c: c.cont()),
    "system_reset": _no_args(lambda c: c.system_reset()),
    "system_powerdown": _no_args(lambda c: c.system_powerdown()),
    "quit": _no_args(lambda c: c.quit()),
    "query-cpus-fast": _no_args(lambda c: c.cpus()),
    "query-pci": _no_args(lambda c: c.pci()),
    # QEMU has no whole-VM-to-a-file command outside migration: extensions.
    "x-southbridge-snapshot-save": _Command(lambda c, a: c.snapshot_save(a["file"]), {"file": str}),
    "x-southbridge-snapshot-load": _Command(lambda c, a: c.snapshot_load(a["file"]), {"file": str}),
}
_JSON_TYPE = {str: "string", int: "int", bool: "boolean", dict: "object", list: "array"}


def _line(obj: dict[str, Any]) -> bytes:
    try:
        return json.dumps(obj, separators=(", ", ": ")).encode() + b"\r\n"
    except (ValueError, RecursionError):  # an echoed "id" too large or deep to write
        return _line(_error("QMP input member 'id' cannot be echoed"))


def _error(desc: str, cls: str = "GenericError", ident: object = None) -> dict[str, Any]:
    out: dict[str, Any] = {"error": {"class": cls, "desc": desc}}
    if ident is not None:
        out["id"] = ident
    return out


def event(name: str, data: dict[str, Any] | None = None, now: float | None = None) -> bytes:
    """One QMP event line, timestamped like QEMU's (host wall clock)."""
    t = time.time() if now is None else now
    stamp = {"seconds": int(t), "microseconds": int(t * 1_000_000) % 1_000_000}
    return _line({"event": name, "data": data or {}, "timestamp": stamp})


class QmpSession:
    """One client connection's protocol state."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.negotiated = False
        self._buf = ""
        self._skipping = False
        self._decoder = json.JSONDecoder()

    def greeting(self) -> bytes:
        version = {"qemu": QEMU_VERSION, "package": "southbridge"}
        return _line({"QMP": {"version": version, "capabilities": []}})

    def feed(self, data: bytes) -> bytes:
        """Consume bytes from the client; return the replies to send."""
        text = data.decode("utf-8", errors="replace")
        if self._skipping:  # after bad input, drop everything up to the next newline
            nl = text.find("\n")
            if nl < 0:
                return b""
            self._skipping, text = False, text[nl + 1 :]
        self._buf += text
        out = bytearray()
        while True:
            text = self._buf.lstrip()
            if not text:
                self._buf = ""
                break
            try:
                msg, end = self._decoder.raw_decode(text)
            except json.JSONDecodeError as e:
                if e.pos >= len(text) and len(text) <= MAX_INPUT:
                    self._buf = text  # incomplete: wait for the rest
                    break
                out += _line(_error(f"JSON parse error, {e.msg}"))
                self._buf = self._resync(text)
                continue
            except (ValueError, RecursionError):  # too deep, or an integer too long to parse
                out += _line(_error("JSON parse error, value too deep or too long"))
                self._buf = self._resync(text)
                continue
            self._buf = text[end:]
            out += _line(self.handle(msg))
        if len(self._buf) > MAX_INPUT:
            self._buf = ""
            self._skipping = True
            out += _line(_error("JSON parse error, input too long"))
        return bytes(out)

    def _resync(self, text: str) -> str:
        """After bad input, continue at the next line (QEMU's lexer also restarts)."""
        nl = text.find("\n")
        if nl < 0:
            self._skipping = True
            return ""
        return text[nl + 1 :]

    def handle(self, msg: object) -> dict[str, Any]:
        """Run one parsed message; returns the reply object."""
        if not isinstance(msg, dict):
            return _error("QMP input must be a JSON object")
        ident = msg.get("id")
        name = msg.get("execute")
        if "execute" not in msg:
            return _error("QMP input lacks member 'execute'", ident=ident)
        if not isinstance(name, str):
            return _error("QMP input member 'execute' must be a string", ident=ident)
        unknown = set(msg) - {"execute", "arguments", "id"}
        if unknown:
            bad = sorted(unknown)[0][:64]
            return _error(f"QMP input member '{bad}' is unexpected", ident=ident)
        args = msg.get("arguments", {})
        if not isinstance(args, dict):
            return _error("QMP input member 'arguments' must be an object", ident=ident)
        if name == "qmp_capabilities":
            if self.negotiated:
                return _error(
                    "Capabilities negotiation is already complete, command ignored",
                    "CommandNotFound",
                    ident,
                )
            enable = args.get("enable", [])
            if set(args) - {"enable"} or not isinstance(enable, list) or enable:
                return _error("Parameter 'enable' is invalid: no capabilities", ident=ident)
            self.negotiated = True
            return self._reply({}, ident)
        if not self.negotiated:
            return _error(
                "Expecting capabilities negotiation with 'qmp_capabilities'",
                "CommandNotFound",
                ident,
            )
        cmd = COMMANDS.get(name)
        if cmd is None:
            return _error(f"The command {name[:64]} has not been found", "CommandNotFound", ident)
        for key in args:
            if key not in cmd.args:
                return _error(f"Parameter '{str(key)[:64]}' is unexpected", ident=ident)
        for key, want in cmd.args.items():
            if key not in args:
                return _error(f"Parameter '{key}' is missing", ident=ident)
            v = args[key]
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                return _error(
                    f"Invalid parameter type for '{key}', expected: {_JSON_TYPE[want]}",
                    ident=ident,
                )
        try:
            result = cmd.run(self.controller, args)
        except QmpError as e:
            return _error(e.desc, e.cls, ident)
        return self._reply({} if result is None else result, ident)

    @staticmethod
    def _reply(value: object, ident: object) -> dict[str, Any]:
        out: dict[str, Any] = {"return": value}
        if ident is not None:
            out["id"] = ident
        return out
