"""The AML encoder against the byte encodings the ACPI 6.5 spec gives (chapter 20 grammar,
6.4 resource descriptors) and that iasl emits for the same ASL."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from southbridge.machine.acpi import aml


def _decode_pkg_length(data: bytes) -> tuple[int, int]:
    lead = data[0]
    extra = lead >> 6
    if extra == 0:
        return lead & 0x3F, 1
    value = lead & 0x0F
    for i in range(extra):
        value |= data[1 + i] << (4 + 8 * i)
    return value, 1 + extra


def test_pkg_length_one_byte_up_to_63() -> None:
    """20.2.4: a one-byte PkgLength holds 0-63 in bits 5:0, and counts itself."""
    assert aml.pkg_length(0) == b"\x01"
    assert aml.pkg_length(62) == b"\x3f"


def test_pkg_length_two_bytes() -> None:
    """bits 7:6 = 1 following byte; bits 3:0 the low nibble, the next byte bits 11:4."""
    assert aml.pkg_length(63) == bytes([0x40 | (65 & 0xF), 65 >> 4])
    assert aml.pkg_length(0x0FFF - 2) == b"\x4f\xff"


def test_pkg_length_three_and_four_bytes() -> None:
    assert aml.pkg_length(0x1000)[0] >> 6 == 2
    assert aml.pkg_length(0x100000)[0] >> 6 == 3
    with pytest.raises(ValueError):
        aml.pkg_length(aml.PKG_LENGTH_MAX)


@given(st.integers(0, (1 << 28) - 8))
def test_pkg_length_round_trips_and_counts_itself(n: int) -> None:
    enc = aml.pkg_length(n)
    value, used = _decode_pkg_length(enc)
    assert used == len(enc)
    assert value == n + len(enc)
    # The shortest form: one byte fewer would not hold it.
    if len(enc) > 1:
        assert n + len(enc) - 1 >= [0x40, 1 << 12, 1 << 20][len(enc) - 2]


def test_integers_take_the_shortest_form() -> None:
    """20.2.3: ZeroOp, OneOp, BytePrefix, WordPrefix, DWordPrefix, QWordPrefix."""
    assert aml.integer(0) == b"\x00"
    assert aml.integer(1) == b"\x01"
    assert aml.integer(2) == b"\x0a\x02"
    assert aml.integer(0xFF) == b"\x0a\xff"
    assert aml.integer(0x100) == b"\x0b\x00\x01"
    assert aml.integer(0x10000) == b"\x0c\x00\x00\x01\x00"
    assert aml.integer(1 << 32) == b"\x0e" + (1 << 32).to_bytes(8, "little")
    with pytest.raises(ValueError):
        aml.integer(-1)


def test_name_strings() -> None:
    """20.2.2: NameSegs padded with '_', root '\\', parent '^', dual and multi prefixes."""
    assert aml.name_string("PCI0") == b"PCI0"
    assert aml.name_string("ISA") == b"ISA_"
    assert aml.name_string("\\_SB") == b"\\_SB_"
    assert aml.name_string("^LNK") == b"^LNK_"
    assert aml.name_string("\\_SB.PCI0") == b"\\\x2e_SB_PCI0"
    assert aml.name_string("PCI0.ISA.P40C") == b"\x2f\x03PCI0ISA_P40C"
    assert aml.name_string("\\") == b"\\\x00"
    for bad in ("TOOLONG", "1ABC", "a", "A.", "AB-C"):
        with pytest.raises(ValueError):
            aml.name_string(bad)


def test_eisa_id_pnp0a03() -> None:
    """EISAID("PNP0A03") is 0x030AD041 stored as a DWord (iasl: 0C 41 D0 0A 03)."""
    assert aml.eisa_id("PNP0A03") == b"\x0c\x41\xd0\x0a\x03"
    assert aml.eisa_id("PNP0303") == b"\x0c\x41\xd0\x03\x03"


def test_name_package_string_buffer() -> None:
    assert aml.name("_UID", aml.integer(0)) == b"\x08_UID\x00"
    assert aml.string("ACPI0006") == b"\x0dACPI0006\x00"
    # Name(_S5, Package(4){0,0,0,0}) as iasl emits it.
    s5 = aml.name("_S5", aml.package(*(aml.integer(0),) * 4))
    assert s5 == b"\x08_S5_\x12\x06\x04\x00\x00\x00\x00"
    assert aml.buffer(b"\x01\x02") == b"\x11\x05\x0a\x02\x01\x02"


def test_scope_device_method() -> None:
    assert aml.scope("\\_SB") == b"\x10\x06\\_SB_"
    assert aml.device("PCI0") == b"\x5b\x82\x05PCI0"
    # Method(_PIC, 1) { Store(Arg0, PICF) }: flags 1 argument, not serialized.
    body = aml.store(aml.arg(0), aml.name_string("PICF"))
    assert aml.method("_PIC", 1, body) == b"\x14\x0c_PIC\x01\x70\x68PICF"
    assert aml.method("IQCR", 1, serialized=True)[-1] == 0x09


def test_operation_region_and_field() -> None:
    """OperationRegion(P40C, PCI_Config, 0x60, 4); Field(P40C, ByteAcc, NoLock, Preserve)
    { PRQ0, 8 } (iasl: 5B 80 ... 02 0A 60 0A 04 / 5B 81 0B P40C 01 PRQ0 08)."""
    assert aml.op_region("P40C", aml.PCI_CONFIG, 0x60, 4) == b"\x5b\x80P40C\x02\x0a\x60\x0a\x04"
    assert aml.field("P40C", aml.BYTE_ACC, ("PRQ0", 8)) == b"\x5b\x81\x0bP40C\x01PRQ0\x08"


def test_expressions() -> None:
    assert aml.and_(aml.integer(0x80), aml.arg(0)) == b"\x7b\x0a\x80\x68\x00"
    assert aml.lless(aml.arg(0), aml.integer(0x80)) == b"\x95\x68\x0a\x80"
    assert aml.return_(aml.integer(0x0B)) == b"\xa4\x0a\x0b"
    assert aml.if_(aml.arg(0)) == b"\xa0\x02\x68"
    assert aml.create_dword_field(aml.arg(0), 5, "PRRI") == b"\x8a\x68\x0a\x05PRRI"


def test_small_resource_descriptors() -> None:
    """6.4.2: IO (item 8, 7 bytes), IRQ (item 4, 2 or 3 bytes), fixed IO (item 9)."""
    assert aml.io(0x3F8, 0x3F8, 0, 8) == b"\x47\x01\xf8\x03\xf8\x03\x00\x08"
    assert aml.irq_noflags(4) == b"\x22\x10\x00"
    assert aml.irq_noflags(12) == b"\x22\x00\x10"
    assert aml.irq(9, edge=False, active_low=False, shared=True) == b"\x23\x00\x02\x10"
    assert aml.fixed_io(0x60, 1) == b"\x4b\x60\x00\x01"
    with pytest.raises(ValueError):
        aml.irq_noflags(16)


def test_large_resource_descriptors() -> None:
    """6.4.3: Memory32Fixed (0x86, 9 bytes), extended Interrupt (0x89), Word/DWord/QWord
    address spaces (0x88/0x87/0x8A; lengths 13, 23, 43)."""
    assert aml.memory32_fixed(0xFED00000, 0x400, writable=False) == (
        b"\x86\x09\x00\x00\x00\x00\xd0\xfe\x00\x04\x00\x00"
    )
    flags = aml.INT_CONSUMER | aml.INT_SHARED
    assert aml.interrupt(5, 10, flags=flags) == (
        b"\x89\x0a\x00\x09\x02\x05\x00\x00\x00\x0a\x00\x00\x00"
    )
    bus = aml.word_bus_number(0, 0xFF)
    assert bus == b"\x88\x0d\x00\x02\x0c\x00" + b"\x00\x00\x00\x00\xff\x00\x00\x00\x00\x01"
    io = aml.word_io(0x0D00, 0xFFFF)
    assert io[:6] == b"\x88\x0d\x00\x01\x0c\x03" and io[-2:] == b"\x00\xf3"
    mem = aml.dword_memory(0xA0000, 0xBFFFF)
    assert mem[:6] == b"\x87\x17\x00\x00\x0c\x03" and len(mem) == 26
    q = aml.qword_memory(1 << 32, (1 << 33) - 1)
    assert q[:6] == b"\x8a\x2b\x00\x00\x0c\x03" and len(q) == 46
    assert q[-8:] == (1 << 32).to_bytes(8, "little")
    assert aml.dword_io(0, 0xFFF)[3] == aml.RESOURCE_IO
    with pytest.raises(ValueError):
        aml.dword_memory(2, 1)


def test_resource_template_end_tag_checksum() -> None:
    """6.4.2.9: the end tag (0x79) and a checksum byte making the template sum to 0."""
    tpl = aml.resource_template(aml.irq_noflags(8))
    assert tpl[0] == aml.BUFFER_OP
    data = tpl[4:]  # BufferOp, PkgLength (1 byte), BufferSize (a ByteConst: 2 bytes)
    assert data[-2] == 0x79
    assert sum(data) & 0xFF == 0


def test_a_template_patched_at_run_time_has_a_zero_checksum() -> None:
    """6.4.2.9: checksum 0 means "treated as if the checksum operation succeeded"."""
    tpl = aml.resource_template(aml.irq_noflags(8), checksum=False)
    assert tpl[-2:] == b"\x79\x00"
