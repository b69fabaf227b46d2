"""An AML encoder: the byte forms of ACPI 6.5 chapter 20 (the AML grammar) and 6.4 (resource
descriptors), as plain functions returning bytes.

Only what the pc's DSDT needs, each term in the encoding iasl itself picks (integers in their
shortest form, package lengths in the fewest bytes), so `iasl -d` reads a table back to the
same source. Names are ASL-style strings: "PCI0", "\\_SB.PCI0", "^ISA".
"""

from __future__ import annotations

import struct

# Name and data prefixes (ACPI 6.5, 20.2.2 and 20.2.3).
NULL_NAME = b"\x00"
ROOT_CHAR = 0x5C
PARENT_PREFIX = 0x5E
DUAL_NAME_PREFIX = 0x2E
MULTI_NAME_PREFIX = 0x2F
ZERO_OP, ONE_OP, ONES_OP = 0x00, 0x01, 0xFF
BYTE_PREFIX, WORD_PREFIX, DWORD_PREFIX, STRING_PREFIX, QWORD_PREFIX = 0x0A, 0x0B, 0x0C, 0x0D, 0x0E
# Term opcodes (20.3).
NAME_OP, SCOPE_OP, BUFFER_OP, PACKAGE_OP, METHOD_OP = 0x08, 0x10, 0x11, 0x12, 0x14
EXT_PREFIX = 0x5B
EXT_OP_REGION, EXT_FIELD, EXT_DEVICE = 0x80, 0x81, 0x82
LOCAL0_OP, ARG0_OP = 0x60, 0x68
STORE_OP, ADD_OP, SUBTRACT_OP, SHIFT_LEFT_OP, SHIFT_RIGHT_OP = 0x70, 0x72, 0x74, 0x79, 0x7A
AND_OP, OR_OP, NOT_OP = 0x7B, 0x7D, 0x80
CREATE_DWORD_FIELD_OP, CREATE_WORD_FIELD_OP, CREATE_BYTE_FIELD_OP = 0x8A, 0x8B, 0x8C
LNOT_OP, LEQUAL_OP, LGREATER_OP, LLESS_OP = 0x92, 0x93, 0x94, 0x95
IF_OP, ELSE_OP, RETURN_OP = 0xA0, 0xA1, 0xA4

# OperationRegion spaces (19.6.100) and Field flags (19.6.48).
SYSTEM_MEMORY, SYSTEM_IO, PCI_CONFIG = 0x00, 0x01, 0x02
ANY_ACC, BYTE_ACC, WORD_ACC, DWORD_ACC, QWORD_ACC = 0, 1, 2, 3, 4
LOCK = 1 << 4
PRESERVE, WRITE_AS_ONES, WRITE_AS_ZEROS = 0 << 5, 1 << 5, 2 << 5

PKG_LENGTH_MAX = (1 << 28) - 1


def pkg_length(body: int) -> bytes:
    """PkgLength (20.2.4) for `body` bytes after it: the encoded length counts itself. One
    byte holds up to 63 in bits 5:0; longer forms put the byte count - 1 in bits 7:6, the
    low nibble in bits 3:0 and the rest in the following bytes."""
    if body + 1 <= 0x3F:
        return bytes([body + 1])
    for extra in (1, 2, 3):
        total = body + 1 + extra
        if total < 1 << (4 + 8 * extra):
            return bytes([extra << 6 | total & 0x0F]) + (total >> 4).to_bytes(extra, "little")
    raise ValueError(f"AML: {body} bytes do not fit a PkgLength")


def _pkg(prefix: bytes, body: bytes) -> bytes:
    return prefix + pkg_length(len(body)) + body


def name_seg(seg: str) -> bytes:
    """A NameSeg: a lead character A-Z or '_', then A-Z, 0-9 or '_', padded with '_'."""
    if not 1 <= len(seg) <= 4:
        raise ValueError(f"AML: bad name segment {seg!r}")
    seg = seg.ljust(4, "_")
    lead_ok = seg[0].isupper() or seg[0] == "_"
    if not lead_ok or not all(c.isupper() or c.isdigit() or c == "_" for c in seg):
        raise ValueError(f"AML: bad name segment {seg!r}")
    return seg.encode("ascii")


def name_string(path: str) -> bytes:
    """A NameString: optional root or parent prefixes, then zero or more NameSegs."""
    out = bytearray()
    rest = path
    if rest.startswith("\\"):
        out.append(ROOT_CHAR)
        rest = rest[1:]
    while rest.startswith("^"):
        out.append(PARENT_PREFIX)
        rest = rest[1:]
    segs = [name_seg(s) for s in rest.split(".")] if rest else []
    if not segs:
        out += NULL_NAME
    elif len(segs) == 1:
        out += segs[0]
    elif len(segs) == 2:
        out += bytes([DUAL_NAME_PREFIX]) + segs[0] + segs[1]
    else:
        out += bytes([MULTI_NAME_PREFIX, len(segs)]) + b"".join(segs)
    return bytes(out)


def integer(value: int) -> bytes:
    """An integer in its shortest form: ZeroOp, OneOp, or a byte/word/dword/qword constant."""
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"AML: integer {value} out of range")
    if value in (0, 1):
        return bytes([value])
    for prefix, fmt, limit in (
        (BYTE_PREFIX, "<B", 1 << 8),
        (WORD_PREFIX, "<H", 1 << 16),
        (DWORD_PREFIX, "<I", 1 << 32),
    ):
        if value < limit:
            return bytes([prefix]) + struct.pack(fmt, value)
    return bytes([QWORD_PREFIX]) + struct.pack("<Q", value)


def string(text: str) -> bytes:
    raw = text.encode("ascii")
    if b"\0" in raw or any(c > 0x7F for c in raw):
        raise ValueError(f"AML: bad string {text!r}")
    return bytes([STRING_PREFIX]) + raw + b"\0"


def eisa_id(text: str) -> bytes:
    """EISAID("PNP0A03"): three letters in 5 bits each and four hex digits, stored as a
    big-endian dword (19.3.4), given as a DWord constant."""
    if len(text) != 7 or not text[:3].isalpha() or not text[:3].isupper():
        raise ValueError(f"AML: bad EISA id {text!r}")
    letters = [ord(c) - 0x40 for c in text[:3]]
    value = (letters[0] << 26) | (letters[1] << 21) | (letters[2] << 16) | int(text[3:], 16)
    return bytes([DWORD_PREFIX]) + struct.pack(">I", value)


def buffer(data: bytes) -> bytes:
    return _pkg(bytes([BUFFER_OP]), integer(len(data)) + data)


def package(*elements: bytes) -> bytes:
    if len(elements) > 255:
        raise ValueError("AML: a Package holds at most 255 elements (use VarPackage)")
    return _pkg(bytes([PACKAGE_OP]), bytes([len(elements)]) + b"".join(elements))


def name(path: str, value: bytes) -> bytes:
    return bytes([NAME_OP]) + name_string(path) + value


def scope(path: str, *body: bytes) -> bytes:
    return _pkg(bytes([SCOPE_OP]), name_string(path) + b"".join(body))


def device(path: str, *body: bytes) -> bytes:
    return _pkg(bytes([EXT_PREFIX, EXT_DEVICE]), name_string(path) + b"".join(body))


def method(path: str, args: int, *body: bytes, serialized: bool = False) -> bytes:
    if not 0 <= args <= 7:
        raise ValueError(f"AML: a method takes 0-7 arguments, not {args}")
    flags = args | (1 << 3 if serialized else 0)
    return _pkg(bytes([METHOD_OP]), name_string(path) + bytes([flags]) + b"".join(body))


def op_region(path: str, space: int, offset: int, length: int) -> bytes:
    return (
        bytes([EXT_PREFIX, EXT_OP_REGION])
        + name_string(path)
        + bytes([space])
        + integer(offset)
        + integer(length)
    )


def field(region: str, flags: int, *units: tuple[str | None, int]) -> bytes:
    """Field(region, flags) { name, bits, ... }; a None name is a reserved gap (Offset)."""
    body = bytearray(name_string(region) + bytes([flags]))
    for unit, bits in units:
        body += (b"\x00" if unit is None else name_seg(unit)) + pkg_length(bits - 1)
    return _pkg(bytes([EXT_PREFIX, EXT_FIELD]), bytes(body))


# -- expressions and statements (20.2.5) -----------------------------------------------------
def arg(n: int) -> bytes:
    if not 0 <= n <= 6:
        raise ValueError(f"AML: no Arg{n}")
    return bytes([ARG0_OP + n])


def local(n: int) -> bytes:
    if not 0 <= n <= 7:
        raise ValueError(f"AML: no Local{n}")
    return bytes([LOCAL0_OP + n])


def store(source: bytes, target: bytes) -> bytes:
    return bytes([STORE_OP]) + source + target


def _binary(op: int, a: bytes, b: bytes, target: bytes) -> bytes:
    return bytes([op]) + a + b + target


def and_(a: bytes, b: bytes, target: bytes = NULL_NAME) -> bytes:
    return _binary(AND_OP, a, b, target)


def or_(a: bytes, b: bytes, target: bytes = NULL_NAME) -> bytes:
    return _binary(OR_OP, a, b, target)


def lequal(a: bytes, b: bytes) -> bytes:
    return bytes([LEQUAL_OP]) + a + b


def lless(a: bytes, b: bytes) -> bytes:
    return bytes([LLESS_OP]) + a + b


def lnot(a: bytes) -> bytes:
    return bytes([LNOT_OP]) + a


def if_(predicate: bytes, *body: bytes) -> bytes:
    return _pkg(bytes([IF_OP]), predicate + b"".join(body))


def else_(*body: bytes) -> bytes:
    return _pkg(bytes([ELSE_OP]), b"".join(body))


def return_(value: bytes) -> bytes:
    return bytes([RETURN_OP]) + value


def call(path: str, *args: bytes) -> bytes:
    """A method invocation: its name, then its arguments (the method must be declared earlier
    in the table so a parser knows how many to take)."""
    return name_string(path) + b"".join(args)


def create_dword_field(source: bytes, byte_index: int, path: str) -> bytes:
    return bytes([CREATE_DWORD_FIELD_OP]) + source + integer(byte_index) + name_string(path)


# -- resource descriptors (6.4) ---------------------------------------------------------------
END_TAG = 0x79  # small item 0xF, length 1
RESOURCE_MEMORY, RESOURCE_IO, RESOURCE_BUS = 0, 1, 2
# Address space general flags (6.4.3.5): bit 0 consumer, 1 subtractive, 2 min fixed, 3 max fixed.
ADDR_CONSUMER, ADDR_SUB_DECODE, ADDR_MIN_FIXED, ADDR_MAX_FIXED = 1, 2, 4, 8
# Type-specific flags: memory read-write and caching; I/O range.
MEM_READ_WRITE = 1 << 0
MEM_NON_CACHEABLE, MEM_CACHEABLE, MEM_WRITE_COMBINING, MEM_PREFETCHABLE = 0, 2, 4, 6
IO_ENTIRE_RANGE = 3
# Extended interrupt flags (6.4.3.6).
INT_CONSUMER, INT_EDGE, INT_ACTIVE_LOW, INT_SHARED = 1, 2, 4, 8


def _small(item: int, body: bytes) -> bytes:
    if len(body) > 7:
        raise ValueError("AML: small resource descriptor longer than 7 bytes")
    return bytes([item << 3 | len(body)]) + body


def _large(item: int, body: bytes) -> bytes:
    return bytes([0x80 | item]) + struct.pack("<H", len(body)) + body


def io(minimum: int, maximum: int, alignment: int, length: int, decode16: bool = True) -> bytes:
    """IO(Decode16, min, max, alignment, length): small item 8."""
    return _small(0x08, struct.pack("<BHHBB", int(decode16), minimum, maximum, alignment, length))


def fixed_io(base: int, length: int) -> bytes:
    return _small(0x09, struct.pack("<HB", base, length))


def _irq_mask(irqs: tuple[int, ...]) -> int:
    mask = 0
    for n in irqs:
        if not 0 <= n < 16:
            raise ValueError(f"AML: IRQ {n} is not an ISA IRQ")
        mask |= 1 << n
    return mask


def irq_noflags(*irqs: int) -> bytes:
    """IRQNoFlags(){...}: small item 4, two bytes (edge, active high, exclusive)."""
    return _small(0x04, struct.pack("<H", _irq_mask(irqs)))


def irq(*irqs: int, edge: bool, active_low: bool, shared: bool = False) -> bytes:
    """IRQ(Edge|Level, ActiveHigh|ActiveLow, Exclusive|Shared){...}: the 3-byte form."""
    flags = (1 if edge else 0) | (1 << 3 if active_low else 0) | (1 << 4 if shared else 0)
    return _small(0x04, struct.pack("<HB", _irq_mask(irqs), flags))


def interrupt(*gsis: int, flags: int) -> bytes:
    """Interrupt(...){...}: the extended interrupt descriptor, large item 9."""
    if not 1 <= len(gsis) <= 255:
        raise ValueError("AML: an Interrupt descriptor holds 1-255 interrupts")
    return _large(0x09, bytes([flags, len(gsis)]) + b"".join(struct.pack("<I", g) for g in gsis))


def memory32_fixed(base: int, length: int, writable: bool) -> bytes:
    return _large(0x06, struct.pack("<BII", int(writable), base, length))


def _address(
    item: int, fmt: str, rtype: int, flags: int, tflags: int, lo: int, hi: int, tra: int = 0
) -> bytes:
    """Word/DWord/QWord address space descriptors (6.4.3.5.1-3): granularity, min, max,
    translation offset, length."""
    if hi < lo:
        raise ValueError(f"AML: address range 0x{lo:x}-0x{hi:x} is empty")
    body = bytes([rtype, flags, tflags]) + struct.pack("<5" + fmt, 0, lo, hi, tra, hi - lo + 1)
    return _large(item, body)


_WINDOW = ADDR_MIN_FIXED | ADDR_MAX_FIXED  # a producer's fixed, positive-decode window


def word_bus_number(lo: int, hi: int, flags: int = _WINDOW) -> bytes:
    return _address(0x08, "H", RESOURCE_BUS, flags, 0, lo, hi)


def word_io(lo: int, hi: int, flags: int = _WINDOW) -> bytes:
    return _address(0x08, "H", RESOURCE_IO, flags, IO_ENTIRE_RANGE, lo, hi)


def dword_io(lo: int, hi: int, flags: int = _WINDOW) -> bytes:
    return _address(0x07, "I", RESOURCE_IO, flags, IO_ENTIRE_RANGE, lo, hi)


def dword_memory(
    lo: int, hi: int, flags: int = _WINDOW, tflags: int = MEM_CACHEABLE | MEM_READ_WRITE
) -> bytes:
    return _address(0x07, "I", RESOURCE_MEMORY, flags, tflags, lo, hi)


def qword_memory(
    lo: int, hi: int, flags: int = _WINDOW, tflags: int = MEM_CACHEABLE | MEM_READ_WRITE
) -> bytes:
    return _address(0x0A, "Q", RESOURCE_MEMORY, flags, tflags, lo, hi)


def resource_template(*descriptors: bytes, checksum: bool = True) -> bytes:
    """ResourceTemplate(){...}: the descriptors and an end tag whose checksum makes the whole
    template sum to zero (6.4.2.9), as a Buffer. A template that AML code patches at run time
    takes checksum=False: a zero checksum byte reads as "checksum succeeded", where a
    computed one would go stale."""
    body = b"".join(descriptors) + bytes([END_TAG])
    return buffer(body + bytes([-sum(body) & 0xFF if checksum else 0]))
