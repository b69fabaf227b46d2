"""The PVH boot ABI for an uncompressed ELF kernel (`vmlinux`), as QEMU's and
cloud-hypervisor's direct boots use it (Xen docs/misc/pvh.pandoc; the structures of
xen/include/public/arch-x86/hvm/start_info.h).

* The entry: a XEN_ELFNOTE_PHYS32_ENTRY note (name "Xen", type 18) in a PT_NOTE segment;
  its descriptor is the 32-bit physical entry address.
* The image: its PT_LOAD segments at their physical addresses (the ELF parsing is
  Multiboot's, kvm/multiboot.py).
* `hvm_start_info` version 1 at 0x7000, then the memory map (the machine's e820 layout),
  one module entry (`--initrd`, page aligned after the kernel) and the command line;
  `rsdp_paddr` points at the ACPI tables kvm/tables.py lays out in the BIOS area.
* Entry state: 32-bit protected mode, paging off, flat CS/DS/ES/SS (selectors 0x10 and
  0x18 of a GDT in guest memory), EBX = the start info, CR4 = 0, EFLAGS = 0x2.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from southbridge.kvm import abi, tables
from southbridge.kvm.linuxboot import CODE_SELECTOR, DATA_SELECTOR, GDT32, GDT_ADDR, _seg
from southbridge.kvm.multiboot import (
    MultibootError,
    Segment,
    elf_header,
    load_segments,
    memory_map,
    parse_elf,
    ram_ranges,
)
from southbridge.kvm.vcpu import Vcpu
from southbridge.machine.base import Machine
from southbridge.machine.loaderror import LoadError

XEN_ELFNOTE_PHYS32_ENTRY = 18
START_MAGIC = 0x336EC578
START_INFO_ADDR = 0x7000
START_INFO = struct.Struct("<IIIIQQQQII")  # version 1: 56 bytes
MODLIST_ENTRY = struct.Struct("<QQQQ")
MEMMAP_ENTRY = struct.Struct("<QQII")
MEMMAP_MAX = 128
CMDLINE_LIMIT = 4096  # what fits the start-info page after the map and module entry
PAGE = 4096
_PT_NOTE = 4


class PvhError(LoadError):
    """The ELF image cannot be booted through its PVH entry."""


def find_entry(data: bytes) -> int | None:
    """The PHYS32_ENTRY note's address, or None when the ELF image has none."""
    if not data.startswith(b"\x7fELF"):
        return None
    try:
        elf = elf_header(data)
        headers = elf.program_headers(data)
    except MultibootError:
        return None  # not a well-formed ELF: no PVH entry to find
    for ph in headers:
        if ph.type == _PT_NOTE and ph.offset + ph.filesz <= len(data):
            entry = _note_entry(data[ph.offset : ph.offset + ph.filesz])
            if entry is not None:
                return entry
    return None


def _note_entry(notes: bytes) -> int | None:
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, type_ = struct.unpack_from("<III", notes, pos)
        name_at = pos + 12
        desc_at = name_at + (-(-namesz // 4) * 4)
        end = desc_at + (-(-descsz // 4) * 4)
        if end > len(notes):
            return None
        name = notes[name_at : name_at + namesz].rstrip(b"\0")
        if name == b"Xen" and type_ == XEN_ELFNOTE_PHYS32_ENTRY and descsz in (4, 8):
            return int.from_bytes(notes[desc_at : desc_at + descsz], "little")
        pos = end
    return None


@dataclass(frozen=True)
class PvhKernel:
    path: str
    segments: tuple[Segment, ...]
    entry: int
    cmdline: str
    initrd: bytes | None

    @property
    def protocol(self) -> str:
        return "pvh"

    def load(self, machine: Machine) -> Callable[[Vcpu], None]:
        ram = ram_ranges(machine)
        name = f"kernel {self.path!r}"
        for s in self.segments:
            if not any(b <= s.addr and s.end <= b + n for b, n in ram):
                raise PvhError(f"{name}: segment at 0x{s.addr:x}-0x{s.end - 1:x} is outside RAM")
        load_segments(machine, self.segments)
        mmap = memory_map(ram)[:MEMMAP_MAX]
        rsdp = tables.install(machine) or 0
        modules: list[tuple[int, int]] = []
        if self.initrd is not None:
            at = -(-max(max(s.end for s in self.segments), 1 << 20) // PAGE) * PAGE
            if not any(b <= at and at + len(self.initrd) <= b + n for b, n in ram):
                raise PvhError(
                    f"{name}: initrd of {len(self.initrd)} bytes does not fit in RAM after "
                    f"the kernel; use more memory"
                )
            machine.space.write_bytes(at, self.initrd)
            modules.append((at, len(self.initrd)))
        line = self.cmdline.encode() + b"\0"
        memmap_at = START_INFO_ADDR + START_INFO.size
        modlist_at = memmap_at + MEMMAP_ENTRY.size * len(mmap)
        cmdline_at = modlist_at + MODLIST_ENTRY.size * len(modules)
        if cmdline_at + len(line) > START_INFO_ADDR + CMDLINE_LIMIT:
            raise PvhError(f"{name}: command line of {len(line) - 1} bytes is too long")
        info = START_INFO.pack(
            START_MAGIC, 1, 0, len(modules), modlist_at if modules else 0,
            cmdline_at, rsdp, memmap_at, len(mmap), 0,
        )  # fmt: skip
        blob = info + b"".join(MEMMAP_ENTRY.pack(b, n, t, 0) for b, n, t in mmap)
        blob += b"".join(MODLIST_ENTRY.pack(a, n, 0, 0) for a, n in modules)
        machine.space.write_bytes(START_INFO_ADDR, blob + line)
        machine.space.write_bytes(GDT_ADDR, GDT32)
        return self._enter

    def _enter(self, vcpu: Vcpu) -> None:
        sregs = vcpu.get_sregs()
        _seg(sregs.cs, CODE_SELECTOR, 0xB, False)
        for seg in ("ds", "es", "fs", "gs", "ss"):
            _seg(getattr(sregs, seg), DATA_SELECTOR, 0x3, False)
        sregs.gdt.base, sregs.gdt.limit = GDT_ADDR, len(GDT32) - 1
        sregs.idt.base, sregs.idt.limit = 0, 0
        sregs.cr0 = 0x11  # PE | ET
        sregs.cr3 = sregs.cr4 = sregs.efer = 0
        vcpu.set_sregs(sregs)
        regs = abi.kvm_regs()
        regs.rip = self.entry
        regs.rbx = START_INFO_ADDR
        regs.rflags = 0x2
        vcpu.set_regs(regs)


def pvh_kernel(
    path: str, data: bytes, entry: int, append: str | None, initrd: bytes | None
) -> PvhKernel:
    try:
        kernel = parse_elf(data, f"kernel {path!r}")
    except MultibootError as e:
        raise PvhError(str(e)) from None
    if entry >= 1 << 32:
        raise PvhError(f"kernel {path!r}: PVH entry 0x{entry:x} is above 4 GiB")
    return PvhKernel(path, kernel.segments, entry, append or "", initrd)
