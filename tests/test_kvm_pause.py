"""Pausing a running machine (what QMP `stop`/`cont` do): every vCPU leaves guest mode and
parks, and machine time stops with it (QEMU's vm clock), then both go on from the same
point. The guest counts down OUTs to pc-testdev's scratch port as fast as it can, so
progress shows in the vCPU's exit count and the port's last value."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from southbridge.core.clock import HostClock
from southbridge.kvm import guestbuild
from southbridge.kvm.loader import map_bios
from southbridge.kvm.runend import RunEnd
from southbridge.kvm.session import KvmSession
from southbridge.kvm.testing import kvm_unavailable_reason
from southbridge.machine.pc import PcConfig, PcMachine
from tests import waiting

_reason = kvm_unavailable_reason()
pytestmark = [pytest.mark.kvm, pytest.mark.skipif(_reason is not None, reason=_reason or "")]
BOUND_S = 20.0  # how long the test waits for something that must happen; never a rate


def wait_until(cond: Callable[[], object], bound: float = BOUND_S) -> bool:
    return waiting.wait_for(cond, bound, 0.01)


@pytest.mark.parametrize("cpus", [1, 2])
def test_pause_parks_every_vcpu_and_stops_machine_time(cpus: int) -> None:
    image = bytearray(guestbuild.build("bench_portio").read_bytes())
    image[0:4] = (0xFFFFFFFF).to_bytes(4, "little")  # OUT for a very long time
    m = PcMachine(PcConfig(memory_mb=16, smp=cpus), clock=HostClock())
    map_bios(m, bytes(image))
    clock = m.clock
    assert isinstance(clock, HostClock)
    ends: list[RunEnd] = []
    try:
        with KvmSession(m, cpus=cpus) as session:
            runner = threading.Thread(target=lambda: ends.append(session.run(120)))
            runner.start()
            bsp = session.vcpus[0]
            assert wait_until(lambda: bsp.exits > 1000)
            assert session.pause() and session.paused
            assert all(v.parked.is_set() for v in session.vcpus)
            exits, scratch, now = bsp.exits, m.testdev.scratch.read(0, 4), clock.now()
            threading.Event().wait(0.2)  # a stopped guest does nothing, however long
            assert bsp.exits == exits and m.testdev.scratch.read(0, 4) == scratch
            assert clock.now() == now and clock.stopped
            session.resume()
            assert not session.paused and not clock.stopped
            assert clock.now() >= now
            assert wait_until(lambda: bsp.exits > exits + 1000)
            assert m.testdev.scratch.read(0, 4) != scratch  # the countdown went on
            session.end(RunEnd("exit", 0, "test done"))
            runner.join(BOUND_S)
    finally:
        m.close()
    assert [e.reason for e in ends] == ["exit"]


def test_pause_of_an_ended_run_returns() -> None:
    image = guestbuild.build("halt").read_bytes()
    m = PcMachine(PcConfig(memory_mb=16), clock=HostClock())
    map_bios(m, image)
    try:
        with KvmSession(m) as session:
            session.end(RunEnd("exit", 0, "ended before it ran"))
            session.run(1)
            session.pause(timeout=1)  # no vCPU thread: nothing to wait for
            session.resume()
    finally:
        m.close()
