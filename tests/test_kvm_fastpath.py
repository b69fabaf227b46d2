"""The vCPU run loop's inline IN/OUT path, without KVM: KVM_RUN is replaced by a function that
fills the kvm_run page with the next exit, as KVM does (linux/kvm.h struct kvm_run: exit_reason
at 8, the io exit at 32: direction, size, port, count, data_offset; the data on the next page).

The loop must answer a single IN/OUT exactly as `dispatch_io` does for the same page (port
bus semantics: all-ones for unassigned ports, sizes split by the bus), and hand string/REP
I/O (count > 1) and misaligned data to `dispatch_io`."""

from __future__ import annotations

import mmap
import struct
import threading
from collections.abc import Callable

import pytest

from southbridge.kvm import abi, vcpu
from southbridge.kvm.apic import VcpuApic
from southbridge.machine.pc import PcConfig, PcMachine

DATA = 0x1000  # KVM_PIO_PAGE_OFFSET * PAGE_SIZE on x86
IO = struct.Struct("<BBHIQ")
Exit = tuple[int, int, int, int, int, bytes]  # direction, size, port, count, offset, data


def _vcpu(machine: PcMachine) -> vcpu.Vcpu:
    v = object.__new__(vcpu.Vcpu)
    v._map = mmap.mmap(-1, 2 * mmap.PAGESIZE)
    v.run_struct = abi.kvm_run.from_buffer(v._map)
    v.fd = -1
    v.stop = threading.Event()
    v.machine = machine
    v.exits = v.injected = v.index = v._cr8 = 0
    apic = object.__new__(VcpuApic)
    apic.lapic = machine.lapics[0]
    apic.intr = apic.lapic.intr
    v.irq = v.apic = apic
    return v


def run_exits(
    monkeypatch: pytest.MonkeyPatch, machine: PcMachine, exits: list[Exit]
) -> list[bytes]:
    """Run the loop over `exits`; returns the data bytes each exit left in the page (what
    KVM copies into the guest's registers or memory for an IN)."""
    v = _vcpu(machine)
    buf = v._map
    seen: list[bytes] = []
    pending: list[Exit] = list(exits)
    last: list[Exit] = []

    def fake_run(fd: int, nr: int, arg: None) -> int:
        if last:
            _, size, _, count, off, _ = last.pop()
            seen.append(bytes(buf[off : off + size * count]))
        if not pending:
            v.stop.set()
            struct.pack_into("<I", buf, abi.kvm_run.exit_reason.offset, abi.KVM_EXIT_INTR)
            return 0
        e = pending.pop(0)
        direction, size, port, count, off, data = e
        struct.pack_into("<I", buf, abi.kvm_run.exit_reason.offset, abi.KVM_EXIT_IO)
        IO.pack_into(buf, vcpu._EXIT_OFF, direction, size, port, count, off)
        buf[off : off + len(data)] = data
        last.append(e)
        return 0

    call: Callable[..., int] = fake_run
    monkeypatch.setattr(vcpu, "_kvm_run_call", call)
    v._loop()
    assert v.exits == len(exits) + 1
    return seen


OUT, IN = abi.KVM_EXIT_IO_OUT, abi.KVM_EXIT_IO_IN


def test_single_out_and_in_of_each_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """pc-testdev scratch (0xE0-0xE3): an OUT of N bytes then an IN reads it back; a byte
    OUT at 0xE1 replaces byte 1 only (QEMU pc-testdev)."""
    m = PcMachine(PcConfig(memory_mb=1), with_ram=False)
    seen = run_exits(
        monkeypatch,
        m,
        [
            (OUT, 4, 0xE0, 1, DATA, b"\x78\x56\x34\x12"),
            (IN, 4, 0xE0, 1, DATA, b"\0" * 4),
            (OUT, 1, 0xE1, 1, DATA, b"\xab"),
            (IN, 2, 0xE0, 1, DATA, b"\0\0"),
            (IN, 1, 0xE3, 1, DATA, b"\0"),
        ],
    )
    assert m.testdev.data == 0x1234AB78
    assert seen[1] == b"\x78\x56\x34\x12"
    assert seen[3] == b"\x78\xab"
    assert seen[4] == b"\x12"


def test_unassigned_port_reads_all_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """PC bus: an IN from a port nothing decodes floats high (all ones) at every size."""
    m = PcMachine(PcConfig(memory_mb=1), with_ram=False)
    seen = run_exits(
        monkeypatch,
        m,
        [(IN, n, 0x7F0, 1, DATA, b"\0" * n) for n in (1, 2, 4)],
    )
    assert seen == [b"\xff", b"\xff\xff", b"\xff\xff\xff\xff"]


def test_rep_and_misaligned_io_match_dispatch_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """REP OUTSB (count 3) and a word OUT at an odd data offset take `dispatch_io`: each
    item is one bus access in order, so the scratch register ends with the last one."""
    m = PcMachine(PcConfig(memory_mb=1), with_ram=False)
    run_exits(
        monkeypatch,
        m,
        [
            (OUT, 1, 0xE0, 3, DATA, b"\x01\x02\x03"),
            (OUT, 2, 0xE2, 1, DATA + 1, b"\xcd\xab"),
        ],
    )
    assert m.testdev.data == 0xABCD0003


def test_fast_path_equals_dispatch_io_on_the_same_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same IN exit through the loop and through `dispatch_io` leaves the same bytes."""
    a = PcMachine(PcConfig(memory_mb=1), with_ram=False)
    b = PcMachine(PcConfig(memory_mb=1), with_ram=False)
    a.testdev.data = b.testdev.data = 0xCAFEF00D
    (loop_seen,) = run_exits(monkeypatch, a, [(IN, 2, 0xE1, 1, DATA, b"\0\0")])
    page = bytearray(2 * mmap.PAGESIZE)
    IO.pack_into(page, vcpu._EXIT_OFF, IN, 2, 0xE1, 1, DATA)
    vcpu.dispatch_io(b, page)
    assert loop_seen == bytes(page[DATA : DATA + 2]) == b"\xf0\xfe"


def test_loop_and_dispatch_io_share_the_one_single_io_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 13 item 5: one function (`vcpu.io_one`) implements a single IN/OUT, whether the
    run loop meets it or `dispatch_io` is handed the page; REP I/O does not use it."""
    calls: list[tuple[int, int, bool]] = []
    real = vcpu.io_one

    def spy(m: object, view: memoryview, index: int, port: int, size: int, out: bool) -> None:
        calls.append((port, size, out))
        real(m, view, index, port, size, out)  # type: ignore[arg-type]

    monkeypatch.setattr(vcpu, "io_one", spy)
    m = PcMachine(PcConfig(memory_mb=1), with_ram=False)
    run_exits(
        monkeypatch,
        m,
        [(OUT, 2, 0xE0, 1, DATA, b"\x34\x12"), (OUT, 1, 0xE0, 2, DATA, b"\x01\x02")],
    )
    assert calls == [(0xE0, 2, True)]
    page = bytearray(2 * mmap.PAGESIZE)
    IO.pack_into(page, vcpu._EXIT_OFF, IN, 4, 0xE0, 1, DATA)
    vcpu.dispatch_io(m, page)
    assert calls[1:] == [(0xE0, 4, False)]
    assert page[DATA : DATA + 4] == m.testdev.data.to_bytes(4, "little")
