"""Finding a PVH entry (kvm/pvh.py): the XEN_ELFNOTE_PHYS32_ENTRY note in a PT_NOTE
segment, as Xen's and QEMU's ELF loaders read it; anything malformed is "no entry"."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from southbridge.kvm import guestbuild
from southbridge.kvm.pvh import XEN_ELFNOTE_PHYS32_ENTRY, _note_entry, find_entry


def note(name: bytes, type_: int, desc: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % 4)

    return struct.pack("<III", len(name), len(desc), type_) + pad(name) + pad(desc)


def test_the_entry_note_is_found_after_other_notes() -> None:
    notes = note(b"GNU\0", 3, b"abcd") + note(b"Xen\0", 6, b"x86_64\0")
    notes += note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, struct.pack("<I", 0x1000000))
    assert _note_entry(notes) == 0x1000000
    wide = note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, struct.pack("<Q", 0x2000000))
    assert _note_entry(wide) == 0x2000000


def test_other_owners_and_truncated_notes_give_none() -> None:
    assert _note_entry(note(b"Linux\0", XEN_ELFNOTE_PHYS32_ENTRY, b"\0\0\0\1")) is None
    full = note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, struct.pack("<I", 0x100000))
    assert _note_entry(full[:-1]) is None


def test_the_bundled_kernel_names_its_start() -> None:
    data = guestbuild.build("pvh_boot").read_bytes()
    assert find_entry(data) == struct.unpack_from("<I", data, 24)[0]  # e_entry: _start
    assert find_entry(guestbuild.build("mb_info").read_bytes()) is None


@given(st.binary(max_size=512))
def test_any_bytes_never_raise(data: bytes) -> None:
    _note_entry(data)
    find_entry(b"\x7fELF\x01\x01" + data)
    find_entry(b"\x7fELF\x02\x01" + data)
