"""Fuzz input bytes -> a stream of machine operations, and operations <-> qtest lines.

Like QEMU's generic-fuzz (tests/qtest/fuzz/generic_fuzz.c): an opcode byte picks the kind,
the bytes after it its fields; the input ends where the bytes do. Addresses come from the
target's registered ranges most of the time (`Layout`), and anywhere otherwise; written
values are often addresses inside the DMA window, so descriptors and rings the guest
memory writes put there are found by the devices reading them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

PORT_SIZES = (1, 2, 4)
MMIO_SIZES = (1, 2, 4, 8)
CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC
# Guest RAM the DMA-visible memory writes land in (and the addresses values point into).
DMA_BASE = 0x10000
DMA_SIZE = 0x10000
MAX_MEM_WRITE = 64
# DMA-read fills (QEMU generic-fuzz's DMA hook): a device reading RAM nobody wrote in this
# input finds the current pattern there; a fill covers at most MAX_FILL bytes of one read
# and an input at most MAX_FILL_TOTAL, so a read of a huge guest length costs little.
MAX_PATTERN = 16
MAX_FILL = 4096
MAX_FILL_TOTAL = 64 << 10
# Clock steps: mostly round figures around the devices' periods, sometimes a raw count.
STEPS = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 63)
_PORT_LETTER = {1: "b", 2: "w", 4: "l", 8: "q"}
_LETTER_SIZE = {v: k for k, v in _PORT_LETTER.items()}


class Op(NamedTuple):
    """One operation. kind: in/out (port, size), read/write (MMIO or RAM through the
    address space), mem (bytes written to guest RAM), step (clock ns in addr), domain
    (switch to domain number addr), pattern (the DMA-read fill from here on: `data`
    repeated, each repetition `value` higher; a finding's script has the fills as `mem`
    writes instead)."""

    kind: str
    size: int
    addr: int
    value: int = 0
    data: bytes = b""


@dataclass
class Layout:
    """What a decoder aims at: the target's port and MMIO ranges (base, length), the PCI
    functions (bus, devfn) its config accesses go to, and the domains ops can switch to."""

    ports: list[tuple[int, int]] = field(default_factory=list)
    mmio: list[tuple[int, int]] = field(default_factory=list)
    functions: list[tuple[int, int]] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)

    def kinds(self) -> tuple[str, ...]:
        k = ["in", "out", "in", "out", "read", "write", "read", "write"]
        k += ["cfgr", "cfgw", "cfgw", "mem", "step", "step", "pattern"]
        if len(self.domains) > 1:
            k.append("domain")
        return tuple(k)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> int | None:
        end = self.pos + n
        if end > len(self.data):
            return None
        v = int.from_bytes(self.data[self.pos : end], "little")
        self.pos = end
        return v

    def bytes(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


def _pick(r: _Reader, ranges: list[tuple[int, int]], random_bytes: int) -> int | None:
    """An address: inside one of `ranges` 7 times in 8, else `random_bytes` raw bytes.
    Inside a range, half the offsets are the first 64 bytes of one of its 4 KiB pages,
    where register blocks start (virtio's common, ISR, device and notify areas)."""
    sel = r.take(1)
    off = r.take(random_bytes)
    if sel is None or off is None:
        return None
    if sel & 7 and ranges:
        base, length = ranges[(sel >> 4) % len(ranges)]
        if sel & 8:
            off = (off >> 6) << 12 | (off & 0x3F)
        return base + off % length
    return off


def _value(r: _Reader, size: int) -> int | None:
    sel = r.take(1)
    if sel is None:
        return None
    mode = sel & 3
    if mode == 0:
        return r.take(size)
    if mode == 1:
        return sel >> 2
    if mode == 2:  # an address in the DMA window, 16-byte aligned one time in two (rings)
        off = r.take(2)
        if off is None:
            return None
        off = off % DMA_SIZE & (~0xF if sel & 4 else ~0)
        return (DMA_BASE + off) & ((1 << (8 * size)) - 1)
    return INTERESTING[(sel >> 2) % len(INTERESTING)] & ((1 << (8 * size)) - 1)


def decode(data: bytes, layout: Layout, max_ops: int | None = None) -> list[Op]:
    """Operations until the bytes (or `max_ops`) run out; a truncated last op is dropped."""
    r = _Reader(data)
    kinds = layout.kinds()
    ops: list[Op] = []
    while max_ops is None or len(ops) < max_ops:
        b = r.take(1)
        if b is None:
            break
        kind = kinds[b % len(kinds)]
        width = b // len(kinds)  # the opcode's other bits pick the access size
        if kind in ("in", "out"):
            size = PORT_SIZES[width % 3]
            port = _pick(r, layout.ports, 2)
            if port is None:
                break
            port &= 0xFFFF
            if kind == "in":
                ops.append(Op("in", size, port))
                continue
            v = _value(r, size)
            if v is None:
                break
            ops.append(Op("out", size, port, v))
        elif kind in ("read", "write"):
            size = MMIO_SIZES[width % 4]
            addr = _pick(r, layout.mmio, 4)
            if addr is None:
                break
            if kind == "read":
                ops.append(Op("read", size, addr))
                continue
            v = _value(r, size)
            if v is None:
                break
            ops.append(Op("write", size, addr, v))
        elif kind in ("cfgr", "cfgw"):
            size = PORT_SIZES[width % 3]
            sel, reg = r.take(1), r.take(1)
            if sel is None or reg is None:
                break
            if sel & 7 and layout.functions:
                bus, devfn = layout.functions[(sel >> 3) % len(layout.functions)]
            else:
                bus, devfn = 0, sel
            reg &= ~(size - 1)
            address = 0x8000_0000 | bus << 16 | devfn << 8 | (reg & 0xFC)
            data_port = CONFIG_DATA + (reg & 3)
            if kind == "cfgr":
                ops += [Op("out", 4, CONFIG_ADDRESS, address), Op("in", size, data_port)]
                continue
            v = _value(r, size)
            if v is None:
                break
            ops += [Op("out", 4, CONFIG_ADDRESS, address), Op("out", size, data_port, v)]
        elif kind == "mem":
            off, n = r.take(2), r.take(1)
            if off is None or n is None:
                break
            payload = r.bytes(1 + n % MAX_MEM_WRITE)
            if not payload:
                break
            addr = DMA_BASE + off % (DMA_SIZE - len(payload) + 1)
            ops.append(Op("mem", len(payload), addr, 0, payload))
        elif kind == "pattern":
            stride, n = r.take(1), r.take(1)
            if stride is None or n is None:
                break
            payload = r.bytes(1 + n % MAX_PATTERN)
            if not payload:
                break
            ops.append(Op("pattern", len(payload), 0, stride, payload))
        elif kind == "step":
            sel = r.take(1)
            if sel is None:
                break
            if sel & 0xF0 == 0xF0:
                raw = r.take(4)
                if raw is None:
                    break
                ops.append(Op("step", 0, raw))
            else:
                ops.append(Op("step", 0, STEPS[sel % len(STEPS)]))
        else:  # domain
            n = r.take(1)
            if n is None:
                break
            ops.append(Op("domain", 0, n % len(layout.domains)))
    return ops


def to_line(op: Op, domains: list[str] | None = None) -> str:
    """The qtest line replaying `op` (a domain switch is a `# domain NAME` directive that
    `southbridge fuzz --replay` follows and plain qtest skips as a comment)."""
    k = op.kind
    if k == "in":
        return f"in{_PORT_LETTER[op.size]} 0x{op.addr:x}"
    if k == "out":
        return f"out{_PORT_LETTER[op.size]} 0x{op.addr:x} 0x{op.value:x}"
    if k == "read":
        return f"read{_PORT_LETTER[op.size]} 0x{op.addr:x}"
    if k == "write":
        return f"write{_PORT_LETTER[op.size]} 0x{op.addr:x} 0x{op.value:x}"
    if k == "mem":
        return f"write 0x{op.addr:x} 0x{len(op.data):x} 0x{op.data.hex()}"
    if k == "step":
        return f"clock_step {op.addr}"
    if k == "pattern":
        return f"# pattern {op.data.hex()} stride {op.value}"
    name = domains[op.addr] if domains and op.addr < len(domains) else str(op.addr)
    return f"# domain {name}"


class ScriptError(ValueError):
    """A line `from_line` cannot turn back into an operation."""


def from_line(line: str, domains: list[str] | None = None) -> Op | None:
    """Parse what `to_line` writes (None: a blank line or a plain comment)."""
    words = line.split()
    if not words:
        return None
    if words[0].startswith("#"):
        if words[:2] == ["#", "domain"] and len(words) >= 3:
            name = words[2]
            if domains and name in domains:
                return Op("domain", 0, domains.index(name))
            raise ScriptError(f"unknown domain {name!r}")
        return None
    cmd = words[0]
    try:
        nums = [int(w, 0) for w in words[1:4] if not w.startswith("#")]
        if cmd in ("inb", "inw", "inl") and len(nums) >= 1:
            return Op("in", _LETTER_SIZE[cmd[2]], nums[0] & 0xFFFF)
        if cmd in ("outb", "outw", "outl") and len(nums) >= 2:
            return Op("out", _LETTER_SIZE[cmd[3]], nums[0] & 0xFFFF, nums[1])
        if cmd in ("readb", "readw", "readl", "readq") and len(nums) >= 1:
            return Op("read", _LETTER_SIZE[cmd[4]], nums[0])
        if cmd in ("writeb", "writew", "writel", "writeq") and len(nums) >= 2:
            return Op("write", _LETTER_SIZE[cmd[5]], nums[0], nums[1])
        if cmd == "write" and len(nums) >= 3:
            n = nums[1]
            if not 0 < n <= MAX_MEM_WRITE:  # what `to_line` writes: one op's payload
                raise ScriptError(f"write of {n} bytes (at most {MAX_MEM_WRITE})")
            hexdata = words[3][2:] if words[3].lower().startswith("0x") else words[3]
            data = bytes.fromhex(hexdata[: 2 * n]).ljust(n, b"\0")
            return Op("mem", n, nums[0], 0, data)
        if cmd == "clock_step" and len(nums) >= 1:
            return Op("step", 0, max(0, nums[0]))
    except (ValueError, KeyError):
        pass
    raise ScriptError(f"not a fuzz operation: {line.strip()[:60]!r}")
