"""virtio-console (virtio 1.2, 5.3) with one port on the UART's chardev backends."""

from __future__ import annotations

import pytest

from southbridge.core.clock import ManualClock
from southbridge.host.chardev import BufferBackend
from southbridge.machine.pc import PcMachine
from southbridge.virtio.console import F_EMERG_WRITE, VirtioConsole
from southbridge.virtio.pci import VirtioPci
from tests.virtio_driver import Driver

SLOT = 4


def _setup(capacity: int | None = None) -> tuple[PcMachine, BufferBackend, Driver]:
    m = PcMachine(clock=ManualClock())
    be = BufferBackend(capacity=capacity)
    dev = VirtioConsole(be)
    be.attach(m.locked(dev.input_ready), m.locked(dev.output_ready))
    m.pci_bus.add(VirtioPci(dev, name="virtio-console"), SLOT)
    d = Driver(m, SLOT)
    assert d.cfg_read(0, 4) == 0x10031AF4
    d.init(F_EMERG_WRITE, nqueues=2)
    return m, be, d


def test_transmit_reaches_the_backend() -> None:
    _, be, d = _setup()
    tx = d.queues[1]
    head, _ = d.add_chain(tx, [b"hello ", b"world"], [])
    d.make_available(tx, head)
    assert bytes(be.output) == b"hello world"
    assert d.used(tx) == [(head, 0)]


def test_transmit_back_pressure_holds_the_chain() -> None:
    _, be, d = _setup(capacity=4)
    tx = d.queues[1]
    head, _ = d.add_chain(tx, [b"0123456789"], [])
    d.make_available(tx, head)
    assert d.used(tx) == []  # not returned while bytes remain: nothing is lost
    be.drain()  # 4 bytes out, 4 more taken
    assert d.used(tx) == [] and bytes(be.output) == b"0123"
    be.drain()  # the last 2 taken: the chain goes back
    assert d.used(tx) == [(head, 0)]
    be.drain()
    assert bytes(be.output) == b"0123456789"


def test_receive_waits_for_guest_buffers() -> None:
    _, be, d = _setup()
    rx = d.queues[0]
    be.feed(b"typed")
    assert be.pending_input() == 5  # no buffers yet: input waits in the backend
    head, ins = d.add_chain(rx, [], [3])
    d.make_available(rx, head)
    assert d.used(rx) == [(head, 3)] and d.mem_read(ins[0], 3) == b"typ"
    head, ins = d.add_chain(rx, [], [8])
    d.make_available(rx, head)
    assert d.used(rx) == [(head, 2)] and d.mem_read(ins[0], 2) == b"ed"
    head, ins = d.add_chain(rx, [], [8])
    d.make_available(rx, head)
    assert d.used(rx) == []
    be.feed(b"!")
    assert d.used(rx) == [(head, 1)] and d.mem_read(ins[0], 1) == b"!"


def test_emergency_write() -> None:
    m, be, d = _setup()
    m.mmio.write(d.devcfg + 8, 4, ord("E"))
    assert bytes(be.output) == b"E"
    assert m.mmio.read(d.devcfg + 4, 4) == 1  # max_nr_ports


def test_save_restore_resends_only_the_unsent_rest() -> None:
    m, be, d = _setup(capacity=4)
    fn = m.pci_bus.function_at(SLOT << 3)
    assert fn is not None
    tx = d.queues[1]
    head, _ = d.add_chain(tx, [b"abcdefgh"], [])
    d.make_available(tx, head)
    saved = fn.save()
    fn.restore(saved)  # the held chain is popped again, skipping the 4 bytes sent
    be.drain()
    be.drain()
    assert bytes(be.output) == b"abcdefgh"
    assert d.used(tx) == [(head, 0)]


@pytest.mark.parametrize(
    "extra",
    [
        ["--device", "virtio-serial,chardev=stdio"],
        ["--debugcon", "stdio"],
        ["--serial", "none", "--debugcon", "stdio", "--device", "virtio-serial,chardev=stdio"],
    ],
)
def test_stdio_backs_one_character_device(
    extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """QEMU refuses stdio for two character devices; so do we, before anything starts."""
    from southbridge import cli

    rc = cli.main(["run", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "stdio is given to" in err[0], err
