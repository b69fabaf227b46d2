"""QEMU pc-testdev (issue 6 item 7): scratch register, GSI lines, flush port, MMIO window.

Rules cited: QEMU hw/misc/pc-testdev.c: region "pc-testdev-ioport" at 0xE0 (4 bytes, byte
lanes by `addr & 3`), "pc-testdev-flush-page" at 0xE4 (32-bit writes only, reads 0),
"pc-testdev-ioport-byte" at 0xE8 (the same register, byte implementation),
"pc-testdev-irq-line" at 0x2000 (24 byte ports: qemu_set_irq(isa irq N, !!data), reads 0),
"pc-testdev-iomem" at 0xFF000000 (IOMEM_LEN 64 KiB, memcpy semantics).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.irq import GsiRouter
from southbridge.core.mmiobus import MmioBus
from southbridge.core.portbus import PortBus
from southbridge.core.state import StateError
from southbridge.devices import testdev
from southbridge.devices.testdev import PcTestdev
from southbridge.host.chardev import open_debugcon
from southbridge.machine.pc import PcConfig, PcMachine
from southbridge.qtest.server import QtestSession

BASE = testdev.IOMEM_BASE


class Rig:
    def __init__(self, bus: PortBus | None = None) -> None:
        self.gsi = GsiRouter(24)
        self.dev = PcTestdev(self.gsi)
        self.bus = bus if bus is not None else PortBus()
        self.mmio = MmioBus()
        d = self.dev
        self.bus.register(0xE0, 4, d.scratch)
        self.bus.register(0xE4, 4, d.flush)
        self.bus.register(0xE8, 4, d.scratch_byte)
        self.bus.register(0x2000, 24, d.irq)
        self.mmio.register(BASE, len(d.iomem_buf), d.iomem)


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_scratch_register_reads_back_by_byte_lane(rig: Rig) -> None:
    """test_ioport_write/read: an N-byte access at offset k touches bytes k..k+N-1."""
    rig.bus.write(0xE0, 4, 0x12345678)
    assert rig.bus.read(0xE0, 4) == 0x12345678
    assert rig.bus.read(0xE1, 1) == 0x56
    assert rig.bus.read(0xE2, 2) == 0x1234
    rig.bus.write(0xE1, 2, 0xBEEF)
    assert rig.bus.read(0xE0, 4) == 0x12BEEF78
    rig.bus.write(0xE3, 1, 0xAA)
    assert rig.bus.read(0xE0, 4) == 0xAABEEF78


def test_byte_port_aliases_the_same_register(rig: Rig) -> None:
    """0xE8 uses the same read/write functions as 0xE0 with byte-sized implementation."""
    rig.bus.write(0xE8, 4, 0xCAFEF00D)  # split into four byte writes
    assert rig.bus.read(0xE0, 4) == 0xCAFEF00D
    rig.bus.write(0xE0, 2, 0x1122)
    assert rig.bus.read(0xE8, 4) == 0xCAFE1122
    assert rig.bus.read(0xEB, 1) == 0xCA


def test_irq_ports_set_each_gsi_level(rig: Rig) -> None:
    """qemu_set_irq(isa_get_irq(N), !!data): any non-zero value raises, zero lowers; one
    line per GSI, wired-OR with other inputs of that GSI."""
    other = rig.gsi.input(10, "other")
    for n in range(24):
        rig.bus.write(0x2000 + n, 1, 0x80)
        assert rig.gsi.line(n).level
    for n in range(24):
        rig.bus.write(0x2000 + n, 1, 0)
        assert not rig.gsi.line(n).level
    other.raise_()
    rig.bus.write(0x200A, 1, 1)
    rig.bus.write(0x200A, 1, 0)
    assert rig.gsi.line(10).level  # the other input still drives GSI 10
    assert rig.bus.read(0x2000, 1) == 0


def test_irq_word_write_is_two_byte_writes(rig: Rig) -> None:
    """The irq region is valid for byte accesses only: QEMU splits wider ones."""
    rig.bus.write(0x2004, 2, 0x0100)
    assert not rig.gsi.line(4).level and rig.gsi.line(5).level


def test_flush_page_accepts_32bit_writes_and_reads_zero(rig: Rig) -> None:
    rig.bus.write(0xE4, 4, 0x12345ABC)
    assert rig.dev.flushes == 1 and rig.dev.last_flush_page == 0x12345000
    assert rig.bus.read(0xE4, 4) == 0
    assert rig.bus.read(0xE5, 1) == 0
    assert rig.bus.faults == 0


def test_iomem_is_ram_like_at_every_size(rig: Rig) -> None:
    """test_iomem_read/write: memcpy of the access size, little-endian."""
    rig.mmio.write(BASE + 0x10, 8, 0x0102030405060708)
    assert rig.mmio.read(BASE + 0x10, 1) == 0x08
    assert rig.mmio.read(BASE + 0x14, 4) == 0x01020304
    rig.mmio.write(BASE + 0xFFFF, 1, 0x5A)
    assert rig.mmio.read(BASE + 0xFFFF, 1) == 0x5A
    assert rig.mmio.read(BASE + 0xFFFE, 2) == 0x5A00
    assert rig.mmio.read(BASE + 0x10000, 1) == 0xFF  # past the window: unassigned


def test_pc_machine_through_qtest_drives_ioapic_inputs() -> None:
    """Issue 6: 0x2000+N sets GSI N (seen at the IOAPIC inputs and the PIC pins)."""
    m = PcMachine()
    out: list[str] = []
    q = QtestSession(m, out.append)
    for line in (
        "irq_intercept_in ioapic",
        "outb 0x2013 1",
        "outb 0x2005 0xff",
        "outb 0x2013 0",
        "outl 0xe0 0xdeadbeef",
        "inw 0xe2",
        "inb 0xe9",
        "outl 0xe4 0x1000",
        "writel 0xff000100 0x11223344",
        "readw 0xff000102",
    ):
        q.handle(line)
    assert [s.strip() for s in out] == [
        "OK",
        "IRQ raise 19",
        "OK",
        "IRQ raise 5",
        "OK",
        "IRQ lower 19",
        "OK",
        "OK",
        "OK 0xdead",
        "OK 0x00be",
        "OK",
        "OK",
        "OK 0x0000000000001122",
    ]
    assert m.gsi.line(5).level


def test_pc_machine_debugcon_at_e9_leaves_the_byte_alias_out(tmp_path: object) -> None:
    m = PcMachine(PcConfig(debugcon_port=0xE9), debugcon=open_debugcon("file:/dev/null"))
    assert m.ports.find(0xE9) is not None and m.ports.find(0xE9).device is m.debugcon  # type: ignore[union-attr]
    assert m.ports.find(0xE8) is None
    assert m.debugcon_stream is not None
    m.debugcon_stream.close()


def test_save_restore_round_trip_and_validation(rig: Rig) -> None:
    rig.bus.write(0xE0, 4, 0x55AA55AA)
    rig.bus.write(0x2003, 1, 1)
    rig.mmio.write(BASE + 8, 4, 0xFEEDFACE)
    state = rig.dev.save()
    other = Rig()
    other.dev.restore(state)
    assert other.bus.read(0xE0, 4) == 0x55AA55AA
    assert other.gsi.line(3).level
    assert other.mmio.read(BASE + 8, 4) == 0xFEEDFACE
    assert other.dev.save() == state
    for key, value in (
        ("data", 1 << 32),
        ("levels", [True] * 23),
        ("levels", [1] * 24),
        ("iomem", b"\0" * 10),
        ("iomem", "x"),
        ("version", 2),
    ):
        with pytest.raises(StateError):
            other.dev.restore(dict(state, **{key: value}))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("io"),
                st.sampled_from((0xE0, 0xE2, 0xE4, 0xE7, 0xE8, 0xEB, 0x2000, 0x2011, 0x2017)),
                st.sampled_from((1, 2, 4)),
                st.integers(0, 0xFFFFFFFF),
                st.booleans(),
            ),
            st.tuples(
                st.just("mmio"),
                st.integers(0, 0x10007),
                st.sampled_from((1, 2, 4, 8)),
                st.integers(0, (1 << 64) - 1),
                st.booleans(),
            ),
        ),
        max_size=40,
    )
)
def test_any_access_sequence_never_raises_and_state_round_trips(
    ops: list[tuple[str, int, int, int, bool]],
) -> None:
    rig = Rig(bus=PortBus())
    for kind, addr, size, value, is_write in ops:
        value &= (1 << (8 * size)) - 1
        bus = rig.bus if kind == "io" else rig.mmio
        a = addr if kind == "io" else BASE + addr
        if is_write:
            bus.write(a, size, value)
        else:
            assert 0 <= bus.read(a, size) < 1 << (8 * size)
        assert 0 <= rig.dev.data <= 0xFFFFFFFF
        assert [line.level for line in rig.dev.lines] == [rig.gsi.line(n).level for n in range(24)]
    assert rig.bus.faults == 0 and rig.mmio.faults == 0
    other = Rig(bus=PortBus())
    other.dev.restore(rig.dev.save())
    assert other.dev.save() == rig.dev.save()
