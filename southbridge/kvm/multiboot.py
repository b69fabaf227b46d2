"""Multiboot v1 loading (the Multiboot Specification 0.6.96; QEMU's hw/i386/multiboot.c is
the peer), without a BIOS.

* The header (magic 0x1BADB002, flags, checksum making the three sum to 0) is searched in
  the first 8192 bytes of the image at 4-byte alignment (spec 3.1.1).
* Flag bit 16 (the "a.out kludge"): the header's address fields say where the image goes;
  otherwise the image must be ELF (ELF32 i386, or ELF64 x86-64 whose segments and entry lie
  below 4 GiB) and is loaded by its PT_LOAD program headers at their physical addresses.
  Required bits 0-15 we do not know (3-15) refuse the image as the spec demands; bit 2
  (video mode) is accepted without video information, as QEMU does.
* Modules (`--initrd FILE[ ARGS][,FILE...]` as QEMU's -initrd, module 0 first, each one's
  string the whole entry) are page aligned after the kernel; then one area holds the
  information structure, the memory map, the module list, the strings (command line
  "KERNEL APPEND", as QEMU passes it; boot loader name "southbridge") and a flat GDT. No
  boot_device (flag bit 1; QEMU invents 0x8000FFFF): nothing was read from a BIOS drive.
* Entry (spec 3.2, "Machine state"): EAX = 0x2BADB002, EBX = the information structure,
  CS a flat 32-bit code segment (selector 0x10), DS/ES/FS/GS/SS flat data (0x18), both
  described by the GDT in guest memory so a kernel that reloads them gets the same
  segments; CR0 = PE|ET (paging off), EFLAGS = 0x2 (IF and VM clear), ESP 0 (the spec
  leaves it to the kernel), IDTR empty. A20 is always on under KVM.

No BIOS is mapped: the vCPU starts at the kernel's entry, so nothing is at the reset vector
and 0xA0000-0xFFFFF is reported reserved. A reset rebuilds the machine and loads the
kernel again (the runner's reboot loop), which is what a PC would do with a boot loader.
Only the BSP (vCPU 0) is entered; application processors stay in wait-for-SIPI, as firmware
leaves them.

This host's KVM emulates ring-0 code and cannot emulate a protected-mode IRET (nor INT n),
so the bundled guests return from interrupt handlers with POPF; RET (guests/_mb.S).
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field

from southbridge.kvm import abi
from southbridge.kvm.loader import LoadError, read_image
from southbridge.kvm.vcpu import Vcpu
from southbridge.machine.base import Machine

HEADER_MAGIC = 0x1BADB002
BOOT_MAGIC = 0x2BADB002
SEARCH_LIMIT = 8192
PAGE = 4096
MiB = 1 << 20
FOUR_GIB = 1 << 32

# Header flags (spec 3.1.2)
HF_PAGE_ALIGN = 1 << 0
HF_MEMORY_INFO = 1 << 1
HF_VIDEO_MODE = 1 << 2
HF_AOUT_KLUDGE = 1 << 16
HF_KNOWN_REQUIRED = HF_PAGE_ALIGN | HF_MEMORY_INFO | HF_VIDEO_MODE

# Information structure flags (spec 3.3)
MBI_MEMORY = 1 << 0
MBI_CMDLINE = 1 << 2
MBI_MODS = 1 << 3
MBI_MMAP = 1 << 6
MBI_LOADER_NAME = 1 << 9
MBI_SIZE = 88  # through the VBE fields, which stay zero

# Memory map entry types (spec 3.3, "mmap_*")
MMAP_RAM = 1
MMAP_RESERVED = 2
MMAP_ENTRY = struct.Struct("<IQQI")  # size (20: not counting itself), base, length, type

# The platform's reserved window below 4 GiB: IOAPIC 0xFEC00000, LAPIC 0xFEE00000, KVM's
# TSS/identity map 0xFEFFC000, pc-testdev 0xFF000000, the firmware flash window.
HIGH_RESERVED_BASE = 0xFEC00000

CODE_SELECTOR = 0x10
DATA_SELECTOR = 0x18
GDT = struct.pack(
    "<4Q",
    0,
    0,
    0x00CF9B000000FFFF,  # 0x10: base 0, limit 4 GiB, 32-bit, execute/read, accessed
    0x00CF93000000FFFF,  # 0x18: base 0, limit 4 GiB, 32-bit, read/write, accessed
)
LOADER_NAME = "southbridge"

_ELF_MAGIC = b"\x7fELF"
_EM_386 = 3
_EM_X86_64 = 62
_ET_EXEC = 2
_PT_LOAD = 1


class MultibootError(LoadError):
    """The kernel cannot be loaded: one line naming the file and the reason."""


@dataclass(frozen=True)
class Header:
    offset: int  # in the file
    flags: int
    header_addr: int = 0
    load_addr: int = 0
    load_end_addr: int = 0
    bss_end_addr: int = 0
    entry_addr: int = 0


@dataclass(frozen=True)
class Segment:
    """`data` at guest-physical `addr`, zero-filled up to `memsize` bytes."""

    addr: int
    data: bytes
    memsize: int

    @property
    def end(self) -> int:
        return self.addr + self.memsize


@dataclass(frozen=True)
class Kernel:
    header: Header
    segments: tuple[Segment, ...]
    entry: int

    @property
    def end(self) -> int:
        return max(s.end for s in self.segments)


@dataclass
class BootPlan:
    """What to write into guest RAM and how to enter: the loader's whole output."""

    entry: int
    info_addr: int
    gdt_addr: int
    writes: list[tuple[int, bytes]] = field(default_factory=list)
    zeroes: list[tuple[int, int]] = field(default_factory=list)  # bss: address, length
    mmap: list[tuple[int, int, int]] = field(default_factory=list)  # base, length, type
    modules: list[tuple[int, int, str]] = field(default_factory=list)  # start, end, string
    cmdline: str = ""


def find_header(data: bytes, name: str = "kernel") -> Header:
    """The first valid header in the first 8 KiB (spec 3.1.1), or a one-line error."""
    limit = min(len(data), SEARCH_LIMIT) - 12
    bad_checksum = False
    for off in range(0, limit + 1, 4):
        magic, flags, checksum = struct.unpack_from("<III", data, off)
        if magic != HEADER_MAGIC:
            continue
        if (magic + flags + checksum) & 0xFFFFFFFF:
            bad_checksum = True
            continue
        if flags & HF_AOUT_KLUDGE:
            if off + 32 > len(data):
                raise MultibootError(f"{name}: Multiboot header at 0x{off:x} is truncated")
            fields = struct.unpack_from("<5I", data, off + 12)
            return Header(off, flags, *fields)
        return Header(off, flags)
    if bad_checksum:
        raise MultibootError(f"{name}: Multiboot header has a bad checksum")
    raise MultibootError(f"{name}: no Multiboot header in the first {SEARCH_LIMIT} bytes")


def parse_kernel(data: bytes, name: str = "kernel") -> Kernel:
    """Find the header and the image's segments and entry point."""
    header = find_header(data, name)
    unknown = header.flags & 0xFFFF & ~HF_KNOWN_REQUIRED
    if unknown:
        raise MultibootError(
            f"{name}: Multiboot header requires unsupported features 0x{unknown:x}"
        )
    if header.flags & HF_AOUT_KLUDGE:
        return _parse_aout(data, header, name)
    if not data.startswith(_ELF_MAGIC):
        raise MultibootError(f"{name}: not an ELF image and the Multiboot header has no addresses")
    return _parse_elf(data, header, name)


def _parse_aout(data: bytes, h: Header, name: str) -> Kernel:
    """Spec 3.1.3: the file from `header_addr - load_addr` bytes before the header is loaded
    at load_addr, up to load_end_addr (0: the end of the file), zeroes up to bss_end_addr."""
    if h.header_addr < h.load_addr:
        raise MultibootError(f"{name}: Multiboot header_addr is below load_addr")
    start = h.offset - (h.header_addr - h.load_addr)
    if start < 0:
        raise MultibootError(f"{name}: Multiboot load_addr is before the start of the file")
    if h.load_end_addr:
        if h.load_end_addr < h.load_addr:
            raise MultibootError(f"{name}: Multiboot load_end_addr is below load_addr")
        size = h.load_end_addr - h.load_addr
        if start + size > len(data):
            raise MultibootError(f"{name}: Multiboot load_end_addr is past the end of the file")
    else:
        size = len(data) - start
    memsize = size
    if h.bss_end_addr:
        if h.bss_end_addr < h.load_addr + size:
            raise MultibootError(f"{name}: Multiboot bss_end_addr is below the loaded image")
        memsize = h.bss_end_addr - h.load_addr
    if memsize == 0:
        raise MultibootError(f"{name}: Multiboot header describes an empty image")
    seg = Segment(h.load_addr, data[start : start + size], memsize)
    if not seg.addr <= h.entry_addr < seg.end:
        raise MultibootError(
            f"{name}: Multiboot entry_addr 0x{h.entry_addr:x} is outside the image"
        )
    return Kernel(h, (seg,), h.entry_addr)


def parse_elf(data: bytes, name: str = "kernel") -> Kernel:
    """An ELF image's loadable segments and physical entry, for loaders other than
    Multiboot (kvm/pvh.py); the header is an empty placeholder."""
    if not data.startswith(_ELF_MAGIC):
        raise MultibootError(f"{name}: not an ELF image")
    return _parse_elf(data, Header(0, 0), name)


@dataclass(frozen=True)
class ProgramHeader:
    type: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int


@dataclass(frozen=True)
class ElfHeader:
    """The parts of an x86 ELF header the loaders read (Multiboot, PVH's note search)."""

    cls: int  # 1: ELF32, 2: ELF64
    e_type: int
    machine: int
    entry: int
    phoff: int
    phentsize: int
    phnum: int

    def program_headers(self, data: bytes, name: str = "kernel") -> list[ProgramHeader]:
        fmt, size = ("<IIIIII", 32) if self.cls == 1 else ("<IIQQQQQ", 56)
        if self.phentsize < size or self.phoff + self.phnum * self.phentsize > len(data):
            raise MultibootError(f"{name}: ELF program headers are truncated")
        out = []
        for i in range(self.phnum):
            fields = struct.unpack_from(fmt, data, self.phoff + i * self.phentsize)
            if self.cls == 1:
                p_type, offset, vaddr, paddr, filesz, memsz = fields
            else:
                p_type, _, offset, vaddr, paddr, filesz, memsz = fields
            out.append(ProgramHeader(p_type, offset, vaddr, paddr, filesz, memsz))
        return out


def elf_header(data: bytes, name: str = "kernel") -> ElfHeader:
    """Parse a little-endian ELF32 or ELF64 header (the magic already checked)."""
    if len(data) < 52:
        raise MultibootError(f"{name}: ELF header is truncated")
    cls, endian = data[4], data[5]
    if endian != 1:
        raise MultibootError(f"{name}: ELF image is not little-endian")
    if cls == 1:
        e_type, machine, _, entry, phoff = struct.unpack_from("<HHIII", data, 16)
        phentsize, phnum = struct.unpack_from("<HH", data, 42)
    elif cls == 2:
        if len(data) < 64:
            raise MultibootError(f"{name}: ELF header is truncated")
        e_type, machine, _, entry, phoff = struct.unpack_from("<HHIQQ", data, 16)
        phentsize, phnum = struct.unpack_from("<HH", data, 54)
    else:
        raise MultibootError(f"{name}: unknown ELF class {cls}")
    return ElfHeader(cls, e_type, machine, entry, phoff, phentsize, phnum)


def _parse_elf(data: bytes, h: Header, name: str) -> Kernel:
    elf = elf_header(data, name)
    want_machine = _EM_386 if elf.cls == 1 else _EM_X86_64
    if elf.machine != want_machine:
        raise MultibootError(f"{name}: ELF image is not for x86 (e_machine {elf.machine})")
    if elf.e_type != _ET_EXEC:
        raise MultibootError(f"{name}: ELF image is not an executable (e_type {elf.e_type})")
    headers = elf.program_headers(data, name)
    entry = elf.entry
    segments: list[Segment] = []
    phys_entry: int | None = None
    for i, ph in enumerate(headers):
        if ph.type != _PT_LOAD or ph.memsz == 0:
            continue
        if ph.filesz > ph.memsz:
            raise MultibootError(f"{name}: ELF segment {i} has more file bytes than memory")
        if ph.offset + ph.filesz > len(data):
            raise MultibootError(f"{name}: ELF segment {i} is past the end of the file")
        if ph.paddr + ph.memsz > FOUR_GIB:
            raise MultibootError(f"{name}: ELF segment {i} at 0x{ph.paddr:x} is above 4 GiB")
        # A kernel linked at a virtual address enters at its physical image (as GRUB does).
        if phys_entry is None and ph.vaddr <= entry < ph.vaddr + ph.memsz:
            phys_entry = ph.paddr + (entry - ph.vaddr)
        segments.append(Segment(ph.paddr, data[ph.offset : ph.offset + ph.filesz], ph.memsz))
    if not segments:
        raise MultibootError(f"{name}: ELF image has no loadable segments")
    if phys_entry is not None:
        entry = phys_entry
    if entry >= FOUR_GIB:
        raise MultibootError(f"{name}: ELF entry point 0x{entry:x} is above 4 GiB")
    return Kernel(h, tuple(segments), entry)


def _ranges(ram: list[tuple[int, int]]) -> str:
    return ", ".join(f"0x{b:x}-0x{b + s - 1:x}" for b, s in ram)


def _check_placement(kernel: Kernel, ram: list[tuple[int, int]], name: str) -> None:
    segs = sorted(kernel.segments, key=lambda s: s.addr)
    for a, b in itertools.pairwise(segs):
        if b.addr < a.end:
            raise MultibootError(f"{name}: segments at 0x{a.addr:x} and 0x{b.addr:x} overlap")
    for s in segs:
        if any(base <= s.addr and s.end <= base + size for base, size in ram):
            continue
        if s.addr < MiB and s.end > 0xA0000:
            where = "overlaps the hole at 0xa0000-0xfffff"
        else:
            where = f"is outside RAM ({_ranges(ram)})"
        raise MultibootError(f"{name}: segment at 0x{s.addr:x}-0x{s.end - 1:x} {where}")
    if not any(s.addr <= kernel.entry < s.end for s in segs):
        raise MultibootError(f"{name}: entry point 0x{kernel.entry:x} is outside the image")


def memory_map(ram: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """The e820-style map: each RAM range, the gap between low RAM and 1 MiB (VGA, option
    ROM and BIOS area) and the platform window from 0xFEC00000 to 4 GiB reserved."""
    entries: list[tuple[int, int, int]] = []
    for base, size in sorted(ram):
        entries.append((base, size, MMAP_RAM))
        if base == 0 and size < MiB:
            entries.append((size, MiB - size, MMAP_RESERVED))
    top = max(b + s for b, s in ram)
    if top <= HIGH_RESERVED_BASE:
        entries.append((HIGH_RESERVED_BASE, FOUR_GIB - HIGH_RESERVED_BASE, MMAP_RESERVED))
    return sorted(entries)


def _align(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


def plan_boot(
    kernel: Kernel,
    ram: list[tuple[int, int]],
    cmdline: str,
    modules: list[tuple[bytes, str]] = [],  # noqa: B006 - never mutated
    name: str = "kernel",
) -> BootPlan:
    """Lay out the kernel, the modules and the information area in `ram` ((base, size)
    ranges: RAM from 0 and from 1 MiB as the pc machine maps it)."""
    _check_placement(kernel, ram, name)
    low = next((s for b, s in ram if b == 0), 0)
    upper = next((s for b, s in ram if b == MiB), 0)
    top = MiB + upper
    plan = BootPlan(entry=kernel.entry, info_addr=0, gdt_addr=0, cmdline=cmdline)
    for seg in kernel.segments:
        plan.writes.append((seg.addr, seg.data))
        if seg.memsize > len(seg.data):
            plan.zeroes.append((seg.addr + len(seg.data), seg.memsize - len(seg.data)))
    cursor = _align(max(kernel.end, MiB))
    for data, string in modules:
        plan.modules.append((cursor, cursor + len(data), string))
        plan.writes.append((cursor, data))
        cursor = _align(cursor + len(data))
    plan.mmap = memory_map(ram)
    # The information area: MBI, GDT, memory map, module list, then the strings.
    info = cursor
    gdt = info + 0x60
    mmap_addr = gdt + len(GDT)
    mmap_bytes = b"".join(MMAP_ENTRY.pack(20, b, n, t) for b, n, t in plan.mmap)
    mods_addr = mmap_addr + len(mmap_bytes)
    strings = bytearray()
    strings_addr = mods_addr + 16 * len(modules)

    def add_string(s: str) -> int:
        addr = strings_addr + len(strings)
        strings.extend(s.encode("utf-8", "surrogateescape") + b"\0")
        return addr

    cmdline_addr = add_string(cmdline)
    loader_addr = add_string(LOADER_NAME)
    mods = b"".join(
        struct.pack("<4I", start, end, add_string(s), 0) for start, end, s in plan.modules
    )
    end = strings_addr + len(strings)
    if end > top:
        need = -(-end // MiB)
        raise MultibootError(
            f"{name}: the kernel, modules and boot information need {need} MiB of RAM"
        )
    flags = MBI_MEMORY | MBI_CMDLINE | MBI_MODS | MBI_MMAP | MBI_LOADER_NAME
    mbi = bytearray(0x60)
    struct.pack_into("<III", mbi, 0, flags, min(low, 640 * 1024) // 1024, upper // 1024)
    struct.pack_into("<III", mbi, 16, cmdline_addr, len(modules), mods_addr)
    struct.pack_into("<II", mbi, 44, len(mmap_bytes), mmap_addr)
    struct.pack_into("<I", mbi, 64, loader_addr)
    plan.writes.append((info, bytes(mbi) + GDT + mmap_bytes + mods + bytes(strings)))
    plan.info_addr, plan.gdt_addr = info, gdt
    return plan


def kernel_cmdline(kernel_path: str, append: str | None) -> str:
    """QEMU's multiboot command line: the kernel's file name, a space, then -append."""
    return f"{kernel_path} {append or ''}"


def ram_ranges(machine: Machine) -> list[tuple[int, int]]:
    """(base, size) of the machine's writable RAM regions (not the BIOS area a boot
    without firmware backs for its tables, kvm/tables.py: that stays reserved)."""
    return [
        (r.gpa, r.size)
        for r in machine.memory.regions
        if not r.readonly and r.name != "firmware-tables"
    ]


def load(machine: Machine, plan: BootPlan) -> None:
    """Write the plan's kernel, modules and information area into guest RAM and clear the
    kernel's bss (in bounded chunks: a bss may be most of RAM)."""
    for gpa, data in plan.writes:
        machine.space.write_bytes(gpa, data)
    _zero(machine, plan.zeroes)


def _zero(machine: Machine, ranges: list[tuple[int, int]]) -> None:
    chunk = bytes(MiB)
    for gpa, length in ranges:
        for off in range(0, length, MiB):
            machine.space.write_bytes(gpa + off, chunk[: min(MiB, length - off)])


def load_segments(machine: Machine, segments: tuple[Segment, ...]) -> None:
    """Write ELF segments into guest RAM, their bss zeroed."""
    for s in segments:
        machine.space.write_bytes(s.addr, s.data)
    _zero(machine, [(s.addr + len(s.data), s.memsize - len(s.data)) for s in segments])


def _flat(seg: abi.kvm_segment, selector: int, type_: int) -> None:
    seg.base, seg.limit, seg.selector, seg.type = 0, 0xFFFFFFFF, selector, type_
    seg.present, seg.dpl, seg.db, seg.s, seg.l, seg.g, seg.avl, seg.unusable = (
        1,
        0,
        1,
        1,
        0,
        1,
        0,
        0,
    )


def enter(vcpu: Vcpu, plan: BootPlan) -> None:
    """Put `vcpu` in the spec's entry state (3.2) at the kernel's entry point. TR and LDTR
    keep their reset values (a busy TSS and an LDT KVM accepts in protected mode)."""
    sregs = vcpu.get_sregs()
    _flat(sregs.cs, CODE_SELECTOR, 0xB)
    for name in ("ds", "es", "fs", "gs", "ss"):
        _flat(getattr(sregs, name), DATA_SELECTOR, 0x3)
    sregs.gdt.base, sregs.gdt.limit = plan.gdt_addr, len(GDT) - 1
    sregs.idt.base, sregs.idt.limit = 0, 0
    sregs.cr0 = 0x11  # PE | ET: protected mode, paging off
    sregs.cr3 = sregs.cr4 = sregs.efer = 0
    vcpu.set_sregs(sregs)
    regs = abi.kvm_regs()
    regs.rip = plan.entry
    regs.rax = BOOT_MAGIC
    regs.rbx = plan.info_addr
    regs.rflags = 0x2  # IF and VM clear; bit 1 is always set
    vcpu.set_regs(regs)


@dataclass(frozen=True)
class KernelFiles:
    """What `--kernel/--append/--initrd` name, read and parsed once per run."""

    path: str
    kernel: Kernel
    cmdline: str
    modules: tuple[tuple[bytes, str], ...]

    def load(self, machine: Machine) -> BootPlan:
        """Lay the kernel out in `machine`'s RAM and write it there (each boot)."""
        name = f"kernel {self.path!r}"
        plan = plan_boot(self.kernel, ram_ranges(machine), self.cmdline, list(self.modules), name)
        load(machine, plan)
        return plan


def split_initrd(spec: str) -> list[tuple[str, str]]:
    """QEMU's -initrd for Multiboot: modules separated by commas (",," is a literal comma),
    each "FILE[ ARGS]"; the module's string is the whole entry. Returns (file, string)."""
    entries, cur, i = [], [], 0
    while i < len(spec):
        if spec[i] == ",":
            if spec[i + 1 : i + 2] == ",":
                cur.append(",")
                i += 2
                continue
            entries.append("".join(cur))
            cur = []
        else:
            cur.append(spec[i])
        i += 1
    entries.append("".join(cur))
    return [(e.split(" ", 1)[0], e) for e in entries]


def _read_module(path: str, limit: int) -> bytes:
    # An empty module is valid Multiboot (mod_start == mod_end).
    return read_image(path, limit, what="initrd", allow_empty=True)


def read_kernel(path: str, append: str | None, initrd: str | None, limit: int) -> KernelFiles:
    """Read and check the kernel and the modules (at most `limit` bytes each, the RAM size);
    `initrd` as QEMU's -initrd (see `split_initrd`), module 0 first."""
    return kernel_files(path, read_image(path, limit, what="kernel"), append, initrd, limit)


def kernel_files(
    path: str, data: bytes, append: str | None, initrd: str | None, limit: int
) -> KernelFiles:
    """`read_kernel` for a kernel image already read from `path`."""
    kernel = parse_kernel(data, f"kernel {path!r}")
    modules: tuple[tuple[bytes, str], ...] = ()
    if initrd is not None:
        modules = tuple((_read_module(f, limit), s) for f, s in split_initrd(initrd))
    return KernelFiles(path, kernel, kernel_cmdline(path, append), modules)
