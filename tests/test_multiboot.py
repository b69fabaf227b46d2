"""The Multiboot v1 loader without KVM: header search, ELF and a.out-kludge images, the
information structure and memory map it builds, and one-line errors for bad images
(Multiboot Specification 0.6.96 section numbers cited; QEMU hw/i386/multiboot.c as peer)."""

from __future__ import annotations

import itertools
import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from southbridge import cli
from southbridge.kvm import abi, guestbuild
from southbridge.kvm import multiboot as mb
from southbridge.kvm.multiboot import MultibootError
from southbridge.machine.pc import PcConfig, PcMachine

MiB = 1 << 20
RAM_128 = [(0, 0xA0000), (MiB, 127 * MiB)]


def header(flags: int = 3, *fields: int, checksum: int | None = None) -> bytes:
    if checksum is None:
        checksum = -(mb.HEADER_MAGIC + flags) & 0xFFFFFFFF
    return struct.pack("<III", mb.HEADER_MAGIC, flags, checksum) + struct.pack(
        f"<{len(fields)}I", *fields
    )


def elf32(
    segments: list[tuple[int, int, bytes, int]],
    entry: int,
    mb_header: bytes | None = None,
    machine: int = 3,
    e_type: int = 2,
) -> bytes:
    """An ELF32 executable: segments are (vaddr, paddr, data, memsz); the Multiboot header
    is the first bytes of the first segment's data unless given separately."""
    phoff, phnum = 52, len(segments)
    data_off = 0x1000
    out = bytearray(data_off)
    ident = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
    struct.pack_into(
        "<16sHHIIIIIHHHHHH",
        out,
        0,
        ident,
        e_type,
        machine,
        1,
        entry,
        phoff,
        0,
        0,
        52,
        32,
        phnum,
        40,
        0,
        0,
    )
    blobs = bytearray()
    for i, (vaddr, paddr, data, memsz) in enumerate(segments):
        off = data_off + len(blobs)
        struct.pack_into(
            "<8I", out, phoff + 32 * i, 1, off, vaddr, paddr, len(data), memsz, 7, 0x1000
        )
        blobs += data
    if mb_header is not None:
        out[0x100 : 0x100 + len(mb_header)] = mb_header
    return bytes(out + blobs)


def elf64(paddr: int, data: bytes, entry: int, machine: int = 62) -> bytes:
    out = bytearray(0x1000)
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    struct.pack_into(
        "<16sHHIQQQIHHHHHH", out, 0, ident, 2, machine, 1, entry, 64, 0, 0, 64, 56, 1, 64, 0, 0
    )
    struct.pack_into("<IIQQQQQQ", out, 64, 1, 7, 0x1000, paddr, paddr, len(data), len(data), 0x1000)
    return bytes(out) + data


def simple_elf(paddr: int = MiB, size: int = 0x100, bss: int = 0x1000) -> bytes:
    code = header() + b"\xf4" * (size - 12)
    return elf32([(paddr, paddr, code, size + bss)], paddr + 12)


def read_plan(plan: mb.BootPlan) -> bytes:
    """The guest-physical bytes the plan writes, as a sparse image of the first 128 MiB."""
    mem = bytearray(b"\xee" * (128 * MiB))  # not zero: the plan must clear the bss itself
    for gpa, data in plan.writes:
        mem[gpa : gpa + len(data)] = data
    for gpa, length in plan.zeroes:
        mem[gpa : gpa + length] = bytes(length)
    return bytes(mem)


def cstr(mem: bytes, addr: int) -> str:
    return mem[addr : mem.index(b"\0", addr)].decode()


# -- header search (3.1.1) -------------------------------------------------------------------
def test_header_found_at_any_4_byte_boundary_in_the_first_8_kib() -> None:
    """3.1.1: the header must be contained completely within the first 8192 bytes, and must
    be longword (32-bit) aligned."""
    for off in (0, 4, 0x1000, 8192 - 12):
        h = mb.find_header(bytes(off) + header(), "k")
        assert h.offset == off and h.flags == 3


def test_header_past_8_kib_or_unaligned_is_not_found() -> None:
    for image in (bytes(8192 - 8) + header(), bytes(2) + header() + bytes(16)):
        with pytest.raises(MultibootError, match=r"^k: no Multiboot header in the first 8192"):
            mb.find_header(image, "k")


def test_bad_checksum_is_named() -> None:
    """3.1.2: magic + flags + checksum must be 0 (mod 2^32)."""
    with pytest.raises(MultibootError, match=r"^k: Multiboot header has a bad checksum$"):
        mb.find_header(header(3, checksum=0x1234), "k")


def test_first_valid_header_wins_over_a_bad_one_before_it() -> None:
    image = header(3, checksum=0) + header(0)
    assert mb.find_header(image).offset == 12


def test_unknown_required_flag_bits_refuse_the_image() -> None:
    """3.1.2: bits 0-15 are requirements; a loader that does not understand one must fail."""
    image = elf32([(MiB, MiB, header(1 << 3) + bytes(4), 16)], MiB, None)
    with pytest.raises(MultibootError, match=r"unsupported features 0x8$"):
        mb.parse_kernel(image)


def test_video_mode_request_is_accepted_without_video_info() -> None:
    """Bit 2 (video mode) is understood; like QEMU we boot without video information."""
    image = elf32([(MiB, MiB, header(4) + bytes(4), 16)], MiB + 12)
    assert mb.parse_kernel(image).entry == MiB + 12


# -- ELF (3.1.3: without bit 16 the image is ELF) --------------------------------------------
def test_elf32_loads_each_pt_load_at_its_physical_address_with_bss_zeroed() -> None:
    text = header() + b"\x90" * 20
    image = elf32([(MiB, MiB, text, len(text)), (2 * MiB, 2 * MiB, b"DATA", 0x2000)], MiB + 12)
    k = mb.parse_kernel(image)
    assert [(s.addr, s.data, s.memsize) for s in k.segments] == [
        (MiB, text, len(text)),
        (2 * MiB, b"DATA", 0x2000),
    ]
    plan = mb.plan_boot(k, RAM_128, "k")
    assert (2 * MiB, b"DATA") in plan.writes
    assert (2 * MiB + 4, 0x2000 - 4) in plan.zeroes and (MiB, text) in plan.writes


def test_elf_linked_high_enters_at_the_physical_address() -> None:
    """A kernel linked at 0xC0100000 but loaded at 1 MiB starts at the physical entry."""
    image = elf32([(0xC0100000, MiB, header() + bytes(20), 32)], 0xC0100010)
    assert mb.parse_kernel(image).entry == MiB + 0x10


def test_entry_is_translated_by_the_segment_that_holds_it_only() -> None:
    """The physical entry is not looked up again among the other segments' vaddrs."""
    segs = [(0xC0100000, MiB, header() + bytes(20), 32), (MiB, 2 * MiB, b"x", 0x100)]
    assert mb.parse_kernel(elf32(segs, 0xC0100010)).entry == MiB + 0x10


def test_elf64_with_32_bit_entry_is_accepted() -> None:
    image = elf64(MiB, header() + bytes(20), MiB + 12)
    k = mb.parse_kernel(image)
    assert k.entry == MiB + 12 and k.segments[0].addr == MiB


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (header() + bytes(100), "not an ELF image and the Multiboot header has no addresses"),
        (elf32([(MiB, MiB, header(), 12)], MiB, machine=40), "not for x86 (e_machine 40)"),
        (elf32([(MiB, MiB, header(), 12)], MiB, e_type=1), "not an executable (e_type 1)"),
        (elf32([(MiB, MiB, header() + bytes(8), 4)], MiB), "more file bytes than memory"),
        (elf32([(MiB, MiB, b"", 0)], MiB, header()), "has no loadable segments"),
        (elf64(MiB, header(), 1 << 33), "entry point 0x200000000 is above 4 GiB"),
        (elf64(0xFFFFF000, header() + bytes(0x2000), 0xFFFFF000), "is above 4 GiB"),
        (elf64(MiB, header(), MiB, machine=3), "not for x86"),
    ],
)
def test_bad_elf_images_give_one_line_errors(image: bytes, message: str) -> None:
    with pytest.raises(MultibootError) as e:
        mb.parse_kernel(image, "kernel 'k'")
    assert str(e.value).startswith("kernel 'k': ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_truncated_program_headers() -> None:
    image = elf32([(MiB, MiB, bytes(8), 20)], MiB, header())  # the header at 0x100
    bad = bytearray(image[:0x200])
    struct.pack_into("<I", bad, 28, 0x1F0)  # e_phoff near the end of the file
    with pytest.raises(MultibootError, match="program headers are truncated"):
        mb.parse_kernel(bytes(bad))


# -- a.out kludge (3.1.3, flag bit 16) --------------------------------------------------------
def aout(
    load: int = MiB,
    pre: int = 0x20,
    body: int = 0x100,
    bss_end: int = 0,
    end: int = 0,
    entry: int | None = None,
) -> bytes:
    """A flat image: `pre` bytes, then the header (at load + pre), then code."""
    h_addr = load + pre
    fields = (h_addr, load, end, bss_end, entry if entry is not None else h_addr + 32)
    return b"\xaa" * pre + header(3 | mb.HF_AOUT_KLUDGE, *fields) + b"\xcc" * body


def test_aout_kludge_loads_from_header_addr_minus_load_addr_to_the_end_of_file() -> None:
    """3.1.3: the text segment starts header_addr - load_addr bytes before the header; a
    zero load_end_addr means the rest of the file; bss_end_addr zeroes past it."""
    image = bytes(0x40) + aout(pre=0x20, body=0x100, bss_end=MiB + 0x3000)
    k = mb.parse_kernel(image)
    (seg,) = k.segments
    assert seg.addr == MiB and seg.data == image[0x40:] and seg.memsize == 0x3000
    assert k.entry == MiB + 0x20 + 32
    plan = mb.plan_boot(k, RAM_128, "")
    mem = read_plan(plan)
    assert mem[MiB : MiB + len(seg.data)] == seg.data
    assert mem[MiB + len(seg.data) : MiB + 0x3000] == bytes(0x3000 - len(seg.data))


def test_aout_kludge_wins_over_elf_headers() -> None:
    """QEMU and GRUB use the address fields when bit 16 is set, even in an ELF file."""
    body = aout(load=2 * MiB, pre=0, body=16)
    image = elf32([(MiB, MiB, body, len(body))], MiB)
    k = mb.parse_kernel(image)
    assert k.segments[0].addr == 2 * MiB and k.entry == 2 * MiB + 32


def test_aout_load_end_addr_limits_the_file_bytes() -> None:
    image = aout(pre=0, body=0x100, end=MiB + 0x40)
    assert len(mb.parse_kernel(image).segments[0].data) == 0x40


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (
            header(3 | mb.HF_AOUT_KLUDGE, MiB, MiB + 0x20, 0, 0, MiB + 0x20) + bytes(64),
            "header_addr is below load_addr",
        ),
        (
            bytes(4) + aout(pre=0)[:12] + struct.pack("<5I", MiB + 0x100, MiB, 0, 0, MiB),
            "load_addr is before the start of the file",
        ),
        (aout(pre=0, end=MiB - 1), "load_end_addr is below load_addr"),
        (aout(pre=0, end=MiB + 0x10000), "load_end_addr is past the end of the file"),
        (aout(pre=0, bss_end=MiB + 4), "bss_end_addr is below the loaded image"),
        (aout(pre=0, entry=5 * MiB), "entry_addr 0x500000 is outside the image"),
        (header(3 | mb.HF_AOUT_KLUDGE) + bytes(8), "header at 0x0 is truncated"),
    ],
)
def test_bad_aout_headers_give_one_line_errors(image: bytes, message: str) -> None:
    with pytest.raises(MultibootError, match=message):
        mb.parse_kernel(image, "k")


# -- placement in RAM -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("addr", "size", "message"),
    [
        (0x9F000, 0x2000, "segment at 0x9f000-0xa0fff overlaps the hole at 0xa0000-0xfffff"),
        (0xC0000, 0x100, "overlaps the hole"),
        (127 * MiB, 2 * MiB, "is outside RAM (0x0-0x9ffff, 0x100000-0x7ffffff)"),
        (0xFEC00000, 0x1000, "is outside RAM"),
    ],
)
def test_segments_outside_ram_or_in_the_hole_are_refused(
    addr: int, size: int, message: str
) -> None:
    image = aout(load=addr, pre=0, body=0x20, bss_end=addr + size)
    with pytest.raises(MultibootError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mb.plan_boot(mb.parse_kernel(image), RAM_128, "")


def test_overlapping_segments_are_refused() -> None:
    image = elf32(
        [(MiB, MiB, header() + bytes(4), 0x2000), (MiB + 0x1000, MiB + 0x1000, b"x", 1)], MiB
    )
    with pytest.raises(MultibootError, match="segments at 0x100000 and 0x101000 overlap"):
        mb.plan_boot(mb.parse_kernel(image), RAM_128, "")


def test_low_memory_kernel_is_allowed() -> None:
    image = aout(load=0x10000, pre=0, body=0x40)
    plan = mb.plan_boot(mb.parse_kernel(image), RAM_128, "")
    assert plan.entry == 0x10000 + 32 and plan.info_addr >= MiB


def test_too_little_ram_for_modules() -> None:
    k = mb.parse_kernel(simple_elf())
    ram = [(0, 0xA0000), (MiB, MiB)]
    with pytest.raises(MultibootError, match=r"need 4 MiB of RAM$"):
        mb.plan_boot(k, ram, "", [(bytes(2 * MiB), "big")])


# -- the information structure (3.3) ----------------------------------------------------------
def test_info_structure_fields_and_memory_map() -> None:
    """3.3: flags say which fields are valid; mem_lower/mem_upper in KiB from 0 and from
    1 MiB; mmap entries are (size, base_addr, length, type) with size not counting itself."""
    k = mb.parse_kernel(simple_elf(size=0x100, bss=0x2F00))  # image ends at 1 MiB + 12 KiB
    plan = mb.plan_boot(k, RAM_128, "/boot/k mb-test 42", [(b"module zero", "/tmp/m0 arg")])
    mem = read_plan(plan)
    info = plan.info_addr
    flags, lower, upper = struct.unpack_from("<III", mem, info)
    assert flags == 0x24D  # memory, cmdline, mods, mmap, boot loader name
    assert (lower, upper) == (640, 127 * 1024)
    assert cstr(mem, struct.unpack_from("<I", mem, info + 16)[0]) == "/boot/k mb-test 42"
    count, mods_addr = struct.unpack_from("<II", mem, info + 20)
    assert count == 1
    start, end, string, reserved = struct.unpack_from("<4I", mem, mods_addr)
    # Modules are page aligned after the kernel's last byte (bss included), like QEMU's.
    assert start == MiB + 0x3000 and end == start + 11 and reserved == 0
    assert mem[start:end] == b"module zero" and cstr(mem, string) == "/tmp/m0 arg"
    length, addr = struct.unpack_from("<II", mem, info + 44)
    entries = [mb.MMAP_ENTRY.unpack_from(mem, addr + i) for i in range(0, length, 24)]
    assert entries == [
        (20, 0, 0xA0000, 1),
        (20, 0xA0000, 0x60000, 2),
        (20, MiB, 127 * MiB, 1),
        (20, 0xFEC00000, 0x1400000, 2),
    ]
    assert cstr(mem, struct.unpack_from("<I", mem, info + 64)[0]) == "southbridge"
    assert info % 4096 == 0 and info >= end


def test_no_modules_still_reports_a_valid_empty_list() -> None:
    """QEMU sets the mods flag with mods_count 0 when there is no -initrd."""
    plan = mb.plan_boot(mb.parse_kernel(simple_elf()), RAM_128, "k ")
    mem = read_plan(plan)
    assert struct.unpack_from("<I", mem, plan.info_addr + 20)[0] == 0


def test_cmdline_is_the_kernel_path_then_append_like_qemu() -> None:
    """QEMU hw/i386/multiboot.c: snprintf("%s %s", kernel_filename, kernel_cmdline)."""
    assert mb.kernel_cmdline("/k.elf", "a b") == "/k.elf a b"
    assert mb.kernel_cmdline("/k.elf", None) == "/k.elf "


def test_gdt_has_flat_32_bit_code_and_data_at_the_entry_selectors() -> None:
    """3.2: CS a 32-bit read/execute segment with offset 0 and limit 0xFFFFFFFF; DS, ES, FS,
    GS and SS 32-bit read/write with the same base and limit."""
    plan = mb.plan_boot(mb.parse_kernel(simple_elf()), RAM_128, "")
    mem = read_plan(plan)

    def decode(sel: int) -> tuple[int, int, int, int]:
        (d,) = struct.unpack_from("<Q", mem, plan.gdt_addr + sel)
        base = ((d >> 16) & 0xFFFFFF) | ((d >> 56) << 24)
        limit = (d & 0xFFFF) | (((d >> 48) & 0xF) << 16)
        return base, limit, (d >> 40) & 0xFF, (d >> 52) & 0xF

    assert decode(mb.CODE_SELECTOR) == (0, 0xFFFFF, 0x9B, 0xC)  # present, code r/x; G, D
    assert decode(mb.DATA_SELECTOR) == (0, 0xFFFFF, 0x93, 0xC)  # present, data r/w; G, B


def test_ram_ranges_and_memory_map_follow_the_pc_machine() -> None:
    m = PcMachine(PcConfig(memory_mb=64))
    ram = mb.ram_ranges(m)
    assert ram == [(0, 0xA0000), (MiB, 63 * MiB)]
    plan = mb.plan_boot(mb.parse_kernel(simple_elf()), ram, "")
    m.space.write_bytes(MiB + 0x100, b"\xee" * 0x1000)  # stale bytes where the bss goes
    mb.load(m, plan)
    assert m.space.read_bytes(MiB + 0x100, 0x1000) == bytes(0x1000)
    assert m.space.read(plan.info_addr + 8, 4) == 63 * 1024
    assert m.space.read_bytes(MiB, 4) == struct.pack("<I", mb.HEADER_MAGIC)


# -- any image: a MultibootError or a plan that stays in RAM -----------------------------------
@st.composite
def kernels(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["aout", "elf", "noise"]))
    if kind == "noise":
        return draw(st.binary(max_size=256))
    if kind == "aout":
        load = draw(st.integers(0, 0x8000000)) & ~3
        choices = [0, load, load + 4, load + 0x40, draw(st.integers(0, 2**32 - 1))]
        fields = [draw(st.sampled_from(choices)) for _ in range(5)]
        pre = draw(st.integers(0, 64)) & ~3
        return bytes(pre) + header(3 | mb.HF_AOUT_KLUDGE, *fields) + draw(st.binary(max_size=64))
    segs = [
        (
            draw(st.integers(0, 2**32 - 1)),
            draw(st.integers(0, 0x9000000)),
            draw(st.binary(max_size=32)),
            draw(st.integers(0, 0x4000)),
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    return elf32(segs, draw(st.integers(0, 2**32 - 1)), header(draw(st.integers(0, 0x1FFFF))))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=kernels(), mods=st.lists(st.binary(max_size=5000), max_size=2))
def test_any_image_is_refused_with_one_line_or_planned_inside_ram(
    image: bytes, mods: list[bytes]
) -> None:
    ram = [(0, 0xA0000), (MiB, 15 * MiB)]
    try:
        plan = mb.plan_boot(mb.parse_kernel(image), ram, "k x", [(m, "m") for m in mods])
    except MultibootError as e:
        assert "\n" not in str(e)
        return
    spans = sorted(
        [(gpa, gpa + len(data)) for gpa, data in plan.writes]
        + [(gpa, gpa + n) for gpa, n in plan.zeroes]
    )
    for a, b in itertools.pairwise(spans):
        assert a[1] <= b[0], "the loader's writes overlap"
    for lo, hi in spans:
        assert any(base <= lo and hi <= base + size for base, size in ram), (lo, hi)
    assert any(base <= plan.entry < base + size for base, size in ram)
    assert all(start % 4096 == 0 for start, _, _ in plan.modules)


# -- the command line: bad input is one line and status 2, before KVM is opened ---------------
def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = cli.main(["run", "--serial", "none", "--kvm-device", "/nonexistent/kvm", *argv])
    _, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("southbridge: error: ")
    return rc, lines[0]


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, (), "kernel '{k}' not found"),
        (b"", (), "kernel '{k}' is empty"),
        (b"\x7fELF" + bytes(200), (), "no Multiboot header in the first 8192 bytes"),
        (header(3, checksum=1) + bytes(64), (), "Multiboot header has a bad checksum"),
        (header() + bytes(64), (), "not an ELF image"),
        (aout(load=0xA0000, pre=0), (), "overlaps the hole at 0xa0000-0xfffff"),
        (aout(load=200 * MiB, pre=0), (), "is outside RAM"),
        (
            simple_elf(),
            ("--initrd", "/nonexistent/initrd"),
            "initrd '/nonexistent/initrd' not found",
        ),
        (simple_elf(), ("--bios", "/x"), "with --bios the kernel must be a Linux bzImage"),
    ],
)
def test_bad_kernels_are_one_error_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: bytes | None,
    extra: tuple[str, ...],
    message: str,
) -> None:
    k = tmp_path / "kernel.elf"
    if content is not None:
        k.write_bytes(content)
    rc, line = _run(capsys, "--kernel", str(k), *extra)
    assert rc == 2 and message.format(k=k) in line


def test_append_without_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    rc, line = _run(capsys, "--append", "x")
    assert rc == 2 and "--append and --initrd need --kernel" in line


# -- modules as QEMU's -initrd -----------------------------------------------------------------
def test_initrd_spec_is_split_like_qemu() -> None:
    """QEMU: modules separated by ',' (',,' escapes a comma); after a space come the
    module's arguments; the module string is the whole entry."""
    assert mb.split_initrd("/a") == [("/a", "/a")]
    assert mb.split_initrd("/a x=1,/b") == [("/a", "/a x=1"), ("/b", "/b")]
    assert mb.split_initrd("/a,,b y") == [("/a,b", "/a,b y")]


def test_read_kernel_reads_every_module_in_order_and_allows_empty_ones(tmp_path: Path) -> None:
    k = tmp_path / "k.elf"
    k.write_bytes(simple_elf())
    (tmp_path / "m0").write_bytes(b"zero")
    (tmp_path / "m1").write_bytes(b"")
    files = mb.read_kernel(str(k), "ro", f"{tmp_path}/m0 a b,{tmp_path}/m1", 128 * MiB)
    assert files.cmdline == f"{k} ro"
    assert files.modules == ((b"zero", f"{tmp_path}/m0 a b"), (b"", f"{tmp_path}/m1"))
    plan = mb.plan_boot(files.kernel, RAM_128, files.cmdline, list(files.modules))
    (s0, e0, _), (s1, e1, _) = plan.modules
    assert e0 - s0 == 4 and s1 == e1 and s1 > s0 and s1 % 4096 == 0


# -- the entry state (3.2) ----------------------------------------------------------------------
class FakeVcpu:
    """What `enter` uses of a Vcpu: its registers, starting from the reset values."""

    def __init__(self) -> None:
        self.sregs = abi.kvm_sregs()
        self.sregs.tr.type, self.sregs.tr.present = 11, 1
        self.regs = abi.kvm_regs()
        self.regs.rflags = 0x202

    def get_sregs(self) -> abi.kvm_sregs:
        return self.sregs

    def set_sregs(self, sregs: abi.kvm_sregs) -> None:
        self.sregs = sregs

    def set_regs(self, regs: abi.kvm_regs) -> None:
        self.regs = regs


def test_entry_state_is_the_specs_machine_state() -> None:
    """3.2: EAX magic, EBX info address, CS 32-bit r/x flat, data segments 32-bit r/w flat,
    CR0.PG clear and PE set, EFLAGS.VM and IF clear; our GDT describes the selectors."""
    plan = mb.plan_boot(mb.parse_kernel(simple_elf()), RAM_128, "")
    v = FakeVcpu()
    mb.enter(v, plan)  # type: ignore[arg-type]
    r, s = v.regs, v.sregs
    assert (r.rax, r.rbx, r.rip) == (mb.BOOT_MAGIC, plan.info_addr, plan.entry)
    assert r.rflags == 0x2
    assert s.cr0 & 0x80000001 == 1 and s.cr4 == 0 and s.efer == 0
    assert (s.cs.selector, s.cs.type, s.cs.db, s.cs.g, s.cs.base, s.cs.limit) == (
        0x10,
        0xB,
        1,
        1,
        0,
        0xFFFFFFFF,
    )
    for seg in (s.ds, s.es, s.fs, s.gs, s.ss):
        assert (seg.selector, seg.type, seg.db, seg.present, seg.base, seg.limit) == (
            0x18,
            0x3,
            1,
            1,
            0,
            0xFFFFFFFF,
        )
    assert (s.gdt.base, s.gdt.limit) == (plan.gdt_addr, 31)
    assert s.tr.type == 11  # the reset TR stays: KVM needs a busy TSS in protected mode


# -- the bundled Multiboot guests --------------------------------------------------------------
@pytest.mark.skipif(
    shutil.which("as") is None or shutil.which("ld") is None, reason="needs binutils (as, ld)"
)
def test_bundled_multiboot_guests_build_into_loadable_elf32_kernels() -> None:
    """mb_*.S link (mb.ld) into ELF32 i386 executables with the header in the first 8 KiB
    that this loader places at 1 MiB; they are not listed as reset-vector guests."""
    names = guestbuild.multiboot_available()
    assert {"mb_info", "mb_fwcfg", "mb_testdev", "mb_aout"} <= set(names)
    assert not set(names) & set(guestbuild.available())
    for name in names:
        path = guestbuild.build(name)
        data = path.read_bytes()
        assert path.suffix == ".elf" and data[:5] == b"\x7fELF\x01"
        assert mb.find_header(data).offset < mb.SEARCH_LIMIT
        plan = mb.plan_boot(mb.parse_kernel(data), RAM_128, name)
        assert plan.writes[0][0] == MiB
