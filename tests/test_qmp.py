"""QMP (issue 14 item 5): the real `qemu.qmp` client drives southbridge's socket, and raw
malformed input gets QMP error replies (QEMU's qapi/qmp-spec: greeting, capabilities
negotiation, return/error/event messages)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qemu.qmp import ExecuteError, QMPClient

from southbridge.machine.pc import PcConfig, PcMachine
from southbridge.qmp.control import MachineController
from southbridge.qmp.protocol import QmpSession
from southbridge.qmp.server import QmpOptionError, QmpServer, parse_qmp_option

Served = tuple[QmpServer, MachineController, PcMachine]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    machine = PcMachine(PcConfig(memory_mb=16, smp=2))
    box: list[QmpServer] = []
    ctl = MachineController(machine, lambda name, data: box[0].emit(name, data))
    server = QmpServer(str(tmp_path / "qmp.sock"), ctl)
    box.append(server)
    yield server, ctl, machine
    server.close()
    machine.close()


def test_qemu_qmp_client_drives_the_machine(served: Served, tmp_path: Path) -> None:
    server, ctl, machine = served

    async def session() -> None:
        qmp = QMPClient("test")
        await qmp.connect(server.path)  # greeting + qmp_capabilities, as with QEMU
        assert await qmp.execute("query-status") == {"status": "running", "running": True}
        with qmp.listener() as listener:
            await qmp.execute("stop")
            ev = await asyncio.wait_for(listener.get(), 5)
            assert ev["event"] == "STOP"
            assert await qmp.execute("query-status") == {"status": "paused", "running": False}
            await qmp.execute("cont")
            assert (await asyncio.wait_for(listener.get(), 5))["event"] == "RESUME"
            await qmp.execute("system_reset")
            assert (await asyncio.wait_for(listener.get(), 5))["event"] == "RESET"
            assert machine.run_request is not None and machine.run_request.kind == "reset"
        cpus: Any = await qmp.execute("query-cpus-fast")
        assert [c["cpu-index"] for c in cpus] == [0, 1]
        buses: Any = await qmp.execute("query-pci")
        (bus,) = buses
        ids = {(d["slot"], d["id"]["vendor"], d["id"]["device"]) for d in bus["devices"]}
        assert (0, 0x8086, 0x1237) in ids and (1, 0x8086, 0x7000) in ids  # i440FX, PIIX3
        # The ACPI power button: PM1a PWRBTN_STS (bit 8) set, QEMU's POWERDOWN event.
        assert machine.pm is not None and not machine.pm.status & 0x100
        with qmp.listener() as listener:
            await qmp.execute("system_powerdown")
            assert (await asyncio.wait_for(listener.get(), 5))["event"] == "POWERDOWN"
        assert machine.pm.status & 0x100
        with pytest.raises(ExecuteError) as e:
            await qmp.execute("no-such-command")
        assert e.value.error_class == "CommandNotFound"
        with pytest.raises(ExecuteError) as e:
            await qmp.execute("x-southbridge-snapshot-save", {"file": 5})
        assert "expected: string" in str(e.value)
        snap = str(tmp_path / "vm.snap")
        machine.ports.write(0x80, 1, 0x42)
        await qmp.execute("x-southbridge-snapshot-save", {"file": snap})
        machine.ports.write(0x80, 1, 0x00)
        await qmp.execute("x-southbridge-snapshot-load", {"file": snap})
        assert machine.ports.read(0x80, 1) == 0x42
        with pytest.raises(ExecuteError) as e:
            await qmp.execute("x-southbridge-snapshot-load", {"file": str(tmp_path / "none")})
        assert "cannot read snapshot" in str(e.value)
        with qmp.listener() as listener:
            await qmp.execute("quit")
            assert (await asyncio.wait_for(listener.get(), 5))["event"] == "SHUTDOWN"
        assert ctl.quit_requested.is_set()
        await qmp.disconnect()

    asyncio.run(asyncio.wait_for(session(), 30))


def _raw(path: str, *chunks: bytes) -> list[dict]:  # type: ignore[type-arg]
    """Send raw bytes; return every reply line (greeting first)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        f = s.makefile("rb")
        out = [json.loads(f.readline())]
        for chunk in chunks:
            s.sendall(chunk)
            out.append(json.loads(f.readline()))
        return out


def test_raw_malformed_input_gets_error_replies(served: Served) -> None:
    server, _, _ = served
    replies = _raw(
        server.path,
        b'{"execute": "query-status"}',  # before negotiation
        b'{"execute": "qmp_capabilities", "id": 7}',
        b"{not json\n",
        b"[1, 2]",
        b'{"execute": 5}',
        b'{"arguments": {}}',
        b'{"execute": "stop", "arguments": {"x": 1}}',
        b'{"execute": "stop", "arguments": []}',
        b'{"execute": "nope", "id": "a"}',
        b"[" * 200_000 + b"\n",
        b'{"execute": "query-status", "id": '
        + b"9" * 5000
        + b"}\n",  # bad input resyncs at the next newline
        b'{"execute": "query-status", "id": [1]}',
    )
    assert replies[0]["QMP"]["capabilities"] == []
    assert replies[1]["error"]["class"] == "CommandNotFound"
    assert replies[2] == {"return": {}, "id": 7}
    assert all("error" in r for r in replies[3:10])
    assert replies[9]["id"] == "a" and "has not been found" in replies[9]["error"]["desc"]
    assert "error" in replies[10] and "error" in replies[11]
    assert replies[12] == {"return": {"status": "running", "running": True}, "id": [1]}


_FRAGMENTS = [
    b'{"execute": "qmp_capabilities"}',
    b'{"execute": "query-status", "id": 1}',
    b'{"execute": "stop"}',
    b'{"execute": "cont", "arguments": {"a": [1, {"b": null}]}}',
    b'{"execute": "x-southbridge-snapshot-save", "arguments": {"file": 1}}',
    b"\n",
    b"[[[[[[",
    b'"\\ud800"',
    b"\xff\xfe",
    b"}",
    b"1e999999",
]


def test_qmp_option_parsing(tmp_path: Path) -> None:
    assert parse_qmp_option("unix:/tmp/q.sock,server") == "/tmp/q.sock"
    assert parse_qmp_option("unix:/tmp/q.sock,server=on,wait=off") == "/tmp/q.sock"
    for bad in ("tcp:localhost:4444,server", "unix:,server", "unix:/x", "unix:/x,server,wait=on"):
        with pytest.raises(QmpOptionError):
            parse_qmp_option(bad)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=64), st.sampled_from(_FRAGMENTS)), max_size=12))
def test_any_input_never_raises_and_every_reply_is_one_json_object(chunks: list[bytes]) -> None:
    machine = PcMachine(PcConfig(memory_mb=1), with_ram=False)
    session = QmpSession(MachineController(machine, lambda name, data: None))
    for chunk in chunks:
        out = session.feed(chunk)
        for line in out.split(b"\r\n")[:-1]:
            assert isinstance(json.loads(line), dict)
