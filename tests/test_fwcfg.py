"""QEMU fw_cfg (issue 6 item 7), I/O flavour at 0x510/0x511 with DMA at 0x514.

Rules cited: QEMU docs/specs/fw_cfg.rst ("Selector Register", "Data Register", "Signature",
"Revision / feature bitmap", "File Directory", "Guest-side DMA Interface") and QEMU
hw/nvram/fw_cfg.c (selector past the key space selects nothing; the write-channel bit is
ignored for lookup; files sorted by name with keys from 0x20; the combined I/O region).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.core.memory import GuestMemory
from southbridge.core.portbus import PortBus
from southbridge.core.state import StateError
from southbridge.devices import fwcfg
from southbridge.devices.fwcfg import FwCfg
from southbridge.machine.pc import PcConfig, PcMachine
from southbridge.qtest.server import QtestSession

SEL, DATA, DMA_HI, DMA_LO = 0x510, 0x511, 0x514, 0x518


class Rig:
    def __init__(self, dma: bool = True, bus: PortBus | None = None) -> None:
        self.mem = GuestMemory()
        self.ram = self.mem.add(0, 0x10000, "ram")
        self.fw = FwCfg(self.mem, dma=dma)
        self.bus = bus if bus is not None else PortBus()
        self.bus.register(SEL, 2, self.fw.io)
        if self.fw.dma is not None:
            self.bus.register(DMA_HI, 8, self.fw.dma)

    def read_item(self, key: int, n: int) -> bytes:
        self.bus.write(SEL, 2, key)
        return bytes(self.bus.read(DATA, 1) for _ in range(n))

    def dma(self, desc_addr: int, control: int, length: int, address: int) -> int:
        """Write an FWCfgDmaAccess at desc_addr and start it; return the control word."""
        self.ram.buf[desc_addr : desc_addr + 16] = struct.pack(">IIQ", control, length, address)
        self.bus.write(DMA_HI, 4, bswap32(desc_addr >> 32))
        self.bus.write(DMA_LO, 4, bswap32(desc_addr & 0xFFFFFFFF))
        return int(struct.unpack(">I", self.ram.buf[desc_addr : desc_addr + 4])[0])


def bswap32(v: int) -> int:
    return int.from_bytes(v.to_bytes(4, "little"), "big")


def parse_dir(raw: bytes) -> list[tuple[int, int, str]]:
    (count,) = struct.unpack(">I", raw[:4])
    out = []
    for i in range(count):
        size, select, _res, name = struct.unpack(">IHH56s", raw[4 + 64 * i : 4 + 64 * (i + 1)])
        out.append((size, select, name.rstrip(b"\0").decode()))
    return out


def test_signature_and_id_through_ports() -> None:
    """fw_cfg.rst: key 0 reads "QEMU"; key 1 bit 0 traditional, bit 1 DMA."""
    rig = Rig()
    assert rig.read_item(fwcfg.SIGNATURE, 4) == b"QEMU"
    assert rig.read_item(fwcfg.ID, 4) == b"\x03\0\0\0"
    assert Rig(dma=False).read_item(fwcfg.ID, 4) == b"\x01\0\0\0"


def test_reads_past_the_end_return_zero_and_reselect_restarts() -> None:
    """fw_cfg.rst: past the item's length reads return 0; selecting resets the offset."""
    rig = Rig()
    assert rig.read_item(fwcfg.SIGNATURE, 7) == b"QEMU\0\0\0"
    assert rig.fw.cur_offset == 4
    assert rig.read_item(fwcfg.SIGNATURE, 2) == b"QE"


def test_byte_read_at_selector_port_reads_data_and_byte_writes_are_ignored() -> None:
    """fw_cfg.c comb region: byte reads at 0x510 or 0x511 read data; data writes are
    ignored since QEMU v2.4; the selector needs a 16-bit write."""
    rig = Rig()
    rig.bus.write(SEL, 2, 0)
    assert rig.bus.read(SEL, 1) == ord("Q")
    assert rig.bus.read(DATA, 1) == ord("E")
    rig.bus.write(DATA, 1, 0x55)
    rig.bus.write(SEL, 1, 0x01)  # byte write to the selector: not a select
    assert rig.bus.read(DATA, 1) == ord("M")
    assert rig.fw.item(fwcfg.SIGNATURE) == b"QEMU"
    assert rig.bus.read(SEL, 2) == 0  # word read not decoded (QEMU rejects it: 0)


def test_write_channel_bit_is_ignored_for_lookup_and_unknown_keys_read_zero() -> None:
    """fw_cfg.c: entries are found by key & 0x3fff plus the arch bit; a key past the key
    space selects nothing; a free key in range reads zeroes."""
    rig = Rig()
    assert rig.read_item(0x4000, 4) == b"QEMU"
    assert rig.read_item(0x8000, 4) == b"\0\0\0\0"  # arch-local 0: nothing here
    assert rig.read_item(0x3FFF, 4) == b"\0\0\0\0"
    assert rig.fw.cur_key == fwcfg.INVALID
    assert rig.read_item(0x0007, 4) == b"\0\0\0\0"


def test_file_directory_sorted_by_name_with_consecutive_keys() -> None:
    """fw_cfg.rst File Directory: be32 count, entries of be32 size, be16 select, 56-byte
    name; QEMU keeps them sorted by name, keys 0x20 + position."""
    rig = Rig()
    k_b = rig.fw.add_file("etc/b", b"bbbb")
    assert k_b == 0x20
    rig.fw.add_file("etc/c", b"cc")
    assert rig.fw.add_file("etc/a", b"a" * 100) == 0x20
    assert rig.fw.file_key("etc/b") == 0x21  # moved up as QEMU does
    raw = rig.read_item(fwcfg.FILE_DIR, 4 + 64 * 3)
    assert parse_dir(raw) == [(100, 0x20, "etc/a"), (4, 0x21, "etc/b"), (2, 0x22, "etc/c")]
    for size, key, name in parse_dir(raw):
        data = rig.read_item(key, size)
        assert data == rig.fw.item(key) and data[:1] == name[-1].encode()
    assert rig.fw.file_key("nope") is None


def test_add_errors_are_host_errors() -> None:
    fw = FwCfg(None, file_slots=2)
    assert fw.dma is None  # no memory: no DMA
    fw.add_file("a", b"")
    for bad in ("a", "", "x" * 56, "n\0ul"):
        with pytest.raises(ValueError):
            fw.add_file(bad, b"")
    fw.add_file("b", b"")
    with pytest.raises(ValueError):
        fw.add_file("c", b"")  # slots full
    for key in (fwcfg.SIGNATURE, 0x20, 0x4005, 0x10000, 0x8000 | 0x3FFF):
        with pytest.raises(ValueError):
            fw.add_bytes(key, b"x")
    fw.add_bytes(0x8003, b"arch")  # arch-local keys are fine
    assert fw.item(0x8003) == b"arch"
    with pytest.raises(ValueError):
        FwCfg(None, file_slots=0)


def test_pc_machine_items_through_qtest() -> None:
    """Issue 6: key 0x05 number of CPUs, key 0x03 RAM size, key 0x0f max CPUs."""
    m = PcMachine(PcConfig(memory_mb=256, smp=2))
    out: list[str] = []
    q = QtestSession(m, out.append)

    def read(key: int, n: int) -> bytes:
        q.handle(f"outw 0x510 0x{key:x}")
        out.clear()
        for _ in range(n):
            q.handle("inb 0x511")
        return bytes(int(line.split()[1], 16) for line in out)

    assert read(0x00, 4) == b"QEMU"
    assert int.from_bytes(read(0x03, 8), "little") == 256 << 20
    assert int.from_bytes(read(0x05, 2), "little") == 2
    assert int.from_bytes(read(0x0F, 2), "little") == 2
    count = int.from_bytes(read(0x19, 4), "big")
    entries = parse_dir(read(0x19, 4 + count * 64))
    # Sorted by name, keys from 0x20 in that order (QEMU fw_cfg_add_file).
    assert [name for _, _, name in entries] == sorted(name for _, _, name in entries)
    assert [sel for _, sel, _ in entries] == list(range(0x20, 0x20 + count))
    by_name = {name: (size, sel) for size, sel, name in entries}
    assert by_name["etc/boot-fail-wait"][0] == 4
    assert {"etc/acpi/rsdp", "etc/acpi/tables", "etc/table-loader"} <= set(by_name)
    assert by_name["etc/smbios/smbios-anchor"][0] == 31  # the SMBIOS 2.1 entry point
    assert "etc/smbios/smbios-tables" in by_name
    # No display: COM1 is SeaBIOS's console (QEMU's etc/sercon-port, 0x3f8).
    size, sel = by_name["etc/sercon-port"]
    assert size == 2 and int.from_bytes(read(sel, 2), "little") == 0x3F8
    assert read(by_name["etc/boot-fail-wait"][1], 4) == b"\xff\xff\xff\xff"


def test_pc_machine_dma_through_qtest() -> None:
    """fw_cfg.rst DMA: the address register reads "QEMU CFG"; writing the low half starts
    the FWCfgDmaAccess; control reads 0 on success."""
    m = PcMachine()
    out: list[str] = []
    q = QtestSession(m, out.append)
    q.handle("inl 0x514")
    q.handle("inl 0x518")
    sig = b"".join(int(line.split()[1], 16).to_bytes(4, "little") for line in out)
    assert sig == b"QEMU CFG"
    desc = struct.pack(">IIQ", (fwcfg.SIGNATURE << 16) | 0x08 | 0x02, 4, 0x2000)
    q.handle(f"write 0x1000 16 0x{desc.hex()}")
    q.handle(f"outl 0x518 0x{bswap32(0x1000):x}")
    out.clear()
    q.handle("read 0x2000 4")
    q.handle("read 0x1000 4")
    assert out == ["OK 0x51454d55\n", "OK 0x00000000\n"]


def test_dma_read_with_padding_skip_and_select() -> None:
    rig = Rig()
    rig.fw.add_file("etc/x", bytes(range(10)))
    # Select + read 4, then skip 2, then read 8 of which 4 are past the end (zeroes).
    assert rig.dma(0x100, (0x20 << 16) | 0x08 | 0x02, 4, 0x400) == 0
    assert rig.dma(0x100, 0x04, 2, 0) == 0
    rig.ram.buf[0x500:0x508] = b"\xaa" * 8
    assert rig.dma(0x100, 0x02, 8, 0x500) == 0
    assert bytes(rig.ram.buf[0x400:0x404]) == bytes(range(4))
    assert bytes(rig.ram.buf[0x500:0x508]) == bytes([6, 7, 8, 9, 0, 0, 0, 0])
    assert rig.fw.dma_addr == 0  # reset after every operation
    # No operation bit: nothing moves, success.
    assert rig.dma(0x100, 0x00, 100, 0x600) == 0


def test_dma_write_only_to_writable_items_and_never_past_the_end() -> None:
    """fw_cfg.rst: writes to read-only items, and truncated writes, set the error bit."""
    rig = Rig()
    key = rig.fw.add_file("etc/rw", b"\0" * 4, writable=True)
    rig.ram.buf[0x300:0x304] = b"abcd"
    assert rig.dma(0x100, (key << 16) | 0x08 | 0x10, 4, 0x300) == 0
    assert rig.fw.item(key) == b"abcd"
    assert rig.dma(0x100, (key << 16) | 0x08 | 0x10, 5, 0x300) & 1  # would grow it
    assert rig.fw.item(key) == b"abcd"
    assert rig.dma(0x100, (fwcfg.SIGNATURE << 16) | 0x08 | 0x10, 4, 0x300) & 1
    assert rig.fw.item(fwcfg.SIGNATURE) == b"QEMU"


def test_dma_outside_ram_sets_error_and_never_raises() -> None:
    rig = Rig()
    # Target past RAM: error bit.
    assert rig.dma(0x100, (0 << 16) | 0x08 | 0x02, 4, 0x10_0000) & 1
    # Zero fill crossing the end of RAM: error.
    assert rig.dma(0x100, 0x08 | 0x02 | (0x7 << 16), 0x20, 0xFFF0) & 1
    # Descriptor outside RAM: nothing to write back, nothing raises; 64-bit address.
    rig.bus.write(DMA_HI, 4, bswap32(0x1))
    rig.bus.write(DMA_LO, 4, bswap32(0x0))
    assert rig.bus.faults == 0 and rig.fw.dma_addr == 0
    # Writes of other sizes or offsets are not decoded.
    rig.bus.write(DMA_HI + 2, 2, 0x1234)
    rig.bus.write(DMA_HI, 1, 0x12)
    assert rig.fw.dma_addr == 0


def test_save_restore_round_trip_and_validation() -> None:
    rig = Rig()
    rig.fw.add_file("f", b"12345")
    rig.read_item(0x20, 3)
    rig.bus.write(DMA_HI, 4, bswap32(0x7))
    state = rig.fw.save()
    other = Rig()
    other.fw.add_file("f", b"12345")
    other.fw.restore(state)
    assert other.fw.save() == state
    assert other.bus.read(DATA, 1) == ord("4")
    for key, value in (
        ("key", 0x3FFF),
        ("offset", 6),
        ("dma_addr", 1),
        ("key", -1),
        ("version", 0),
    ):
        with pytest.raises(StateError):
            other.fw.restore(dict(state, **{key: value}))
    with pytest.raises(StateError):
        FwCfg(None).restore(dict(state, offset=0, key=0))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(SEL, DMA_LO + 3),
            st.sampled_from((1, 2, 4)),
            st.integers(0, 0xFFFFFFFF),
            st.booleans(),
        ),
        max_size=40,
    ),
    st.binary(min_size=64, max_size=64),
)
def test_any_access_sequence_never_raises_and_offset_stays_in_item(
    ops: list[tuple[int, int, int, bool]], ram_head: bytes
) -> None:
    rig = Rig(bus=PortBus())
    rig.fw.add_file("etc/w", b"\0" * 8, writable=True)
    # Plausible descriptors in RAM so DMA writes that point low really run.
    rig.ram.buf[0:64] = ram_head
    for port, size, value, is_write in ops:
        value &= (1 << (8 * size)) - 1
        if is_write:
            rig.bus.write(port, size, value if port != DMA_LO else value & 0x3F000000)
        else:
            assert 0 <= rig.bus.read(port, size) < 1 << (8 * size)
        item = rig.fw.item(rig.fw.cur_key) if rig.fw.cur_key != fwcfg.INVALID else None
        assert rig.fw.cur_offset <= (len(item) if item is not None else 0)
    assert rig.bus.faults == 0
    assert rig.fw.item(fwcfg.SIGNATURE) == b"QEMU"
    other = Rig(bus=PortBus())
    other.fw.add_file("etc/w", b"\0" * 8, writable=True)
    other.fw.restore(rig.fw.save())
    assert other.fw.save() == rig.fw.save()


def test_dma_into_rom_is_ignored_like_a_cpu_write() -> None:
    """DMA reaching ROM completes without changing it (writes to ROM are dropped)."""
    rig = Rig()
    rom = rig.mem.add(0x20000, 0x1000, "rom", readonly=True)
    rom.buf[0:4] = b"ROM!"
    assert rig.dma(0x100, 0x08 | 0x02, 8, 0x20000) == 0  # "QEMU" + 4 zero-fill bytes
    assert bytes(rom.buf[0:8]) == b"ROM!\0\0\0\0"


def test_southbridge_qtest_command_reads_signature_and_self_test() -> None:
    """Issue 3/6 "done when": through `southbridge qtest` the devices answer as QEMU's do
    (fw_cfg signature, i8042 self-test, pc-testdev scratch)."""
    import subprocess
    import sys

    script = "\n".join(
        [
            "outw 0x510 0x0000",
            "inb 0x511",
            "inb 0x511",
            "inb 0x511",
            "inb 0x511",
            "outb 0x64 0xaa",
            "inb 0x60",
            "outl 0xe0 0x12345678",
            "inl 0xe0",
        ]
    )
    r = subprocess.run(
        [sys.executable, "-m", "southbridge", "qtest"],
        input=script + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:9] == [
        "OK",
        "OK 0x0051",
        "OK 0x0045",
        "OK 0x004d",
        "OK 0x0055",
        "OK",
        "OK 0x0055",
        "OK",
        "OK 0x12345678",
    ]
