"""The whole-machine snapshot file: header, sections, SHA-256 trailer (issue 14 item 4).

Layout (all integers little-endian):

    magic  b"SBSNAP\\r\\n" (the CR LF catches text-mode mangling, as PNG's signature does)
    u32    format version
    u32    section count
    sections: 4-byte tag, u64 length, payload
      "META": JSON: the configuration fingerprint, every device's state (`Machine.save`),
              the vCPUs' state and the clock offset
      "RAM ": one per memory region: u64 gpa, u64 size, u32 page size, the bitmap of
              non-zero pages, then those pages in order (sparse: a 1 GiB guest that
              touched 50 MiB writes about 50 MiB)
    32 bytes SHA-256 of everything before it

The file is attacker input like any restored state: every length is bounded by the file's
size, the checksum is verified before anything is parsed, and every failure is one
`SnapshotError` line. Writing goes to a temporary file renamed into place, so an existing
snapshot is never lost half-written.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import json
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from southbridge.core.memory import GuestMemory, RamRegion

if TYPE_CHECKING:
    from southbridge.machine.pc import PcConfig

MAGIC = b"SBSNAP\r\n"
VERSION = 1
PAGE = 4096
_HEAD = struct.Struct("<8sII")
_SECTION = struct.Struct("<4sQ")
_RAM = struct.Struct("<QQI")
_DIGEST = 32
# The metadata is small (device registers, vCPU registers): anything larger is not ours.
MAX_META = 64 << 20
MAX_SECTIONS = 1024
_ZERO = bytes(PAGE)
_CHUNK = 1 << 20


class SnapshotError(Exception):
    """A snapshot file that cannot be written, or read back into this machine."""


@dataclass
class Snapshot:
    """What a snapshot holds besides guest RAM."""

    config: dict[str, Any]
    machine: dict[str, Any]
    vcpus: list[dict[str, Any]] = field(default_factory=list)
    clock_ns: int = 0


def _encode(value: object) -> object:
    if isinstance(value, bytes | bytearray):
        return {"$bytes": bytes(value).hex()}
    raise TypeError(f"{type(value).__name__} is not snapshot data")


def _decode(obj: dict[str, Any]) -> object:
    if set(obj) == {"$bytes"} and isinstance(obj["$bytes"], str):
        try:
            return bytes.fromhex(obj["$bytes"])
        except ValueError:
            raise SnapshotError("metadata holds bytes that are not hex") from None
    return obj


class _HashingWriter:
    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.f.write(data)
        self.sha.update(data)
        self.size += len(data)


def _nonzero_pages(region: RamRegion) -> tuple[bytes, list[int]]:
    """The region's bitmap of non-zero pages and their indexes. Whole 1 MiB chunks are
    compared first, so untouched memory costs one comparison per MiB. (Slices of the mmap
    are bytes, compared with memcmp; comparing memoryviews goes element by element.)"""
    npages = region.size // PAGE
    bitmap = bytearray((npages + 7) // 8)
    pages: list[int] = []
    buf = region.buf
    zero_chunk = bytes(_CHUNK)
    resident = _resident(region)
    per_chunk = _CHUNK // PAGE
    for start in range(0, region.size, _CHUNK):
        end = min(start + _CHUNK, region.size)
        first = start // PAGE
        if resident is not None and not any(resident[first : first + per_chunk]):
            continue  # never touched: reading it would only fault in zero pages
        chunk = buf[start:end]
        if chunk == zero_chunk[: end - start]:
            continue
        for off in range(0, end - start, PAGE):
            if chunk[off : off + PAGE] != _ZERO:
                n = (start + off) // PAGE
                bitmap[n >> 3] |= 1 << (n & 7)
                pages.append(n)
    return bytes(bitmap), pages


def _resident(region: RamRegion) -> bytes | None:
    """mincore(2)'s residency vector of the region (1 byte a page, bit 0 set when resident),
    or None where it cannot be had: pages never touched are not resident and read as zero,
    and faulting each one in to look costs far more than the look (5 s a GiB here)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        vec = ctypes.create_string_buffer(region.size // PAGE)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(region.buf))
        if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(region.size), vec) != 0:
            return None
        return vec.raw
    except (OSError, AttributeError, TypeError, ValueError):
        return None


def write(path: str | os.PathLike[str], snap: Snapshot, memory: GuestMemory) -> int:
    """Write `snap` and `memory`'s contents to `path`; returns the file's size."""
    try:
        meta = json.dumps(
            {
                "config": snap.config,
                "machine": snap.machine,
                "vcpus": snap.vcpus,
                "clock_ns": snap.clock_ns,
            },
            default=_encode,
            separators=(",", ":"),
        ).encode()
    except (TypeError, ValueError) as e:
        raise SnapshotError(f"cannot encode the machine's state: {e}") from None
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            w = _HashingWriter(f)
            w.write(_HEAD.pack(MAGIC, VERSION, 1 + len(memory.regions)))
            w.write(_SECTION.pack(b"META", len(meta)))
            w.write(meta)
            for region in memory.regions:
                bitmap, pages = _nonzero_pages(region)
                length = _RAM.size + len(bitmap) + len(pages) * PAGE
                w.write(_SECTION.pack(b"RAM ", length))
                w.write(_RAM.pack(region.gpa, region.size, PAGE))
                w.write(bitmap)
                view = memoryview(region.buf)
                for n in pages:
                    w.write(view[n * PAGE : (n + 1) * PAGE])
            f.write(w.sha.digest())
            size = w.size + _DIGEST
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SnapshotError(f"{target}: cannot write snapshot: {e.strerror or e}") from None
    return size


def _verify(f: IO[bytes], name: str) -> int:
    """Check the magic, version and checksum; returns the size of the checked part."""
    head = f.read(_HEAD.size)
    if len(head) < _HEAD.size or head[:8] != MAGIC:
        raise SnapshotError(f"{name}: not a southbridge snapshot")
    _, version, _ = _HEAD.unpack(head)
    if version != VERSION:
        raise SnapshotError(f"{name}: snapshot format version {version}, this is {VERSION}")
    end = os.fstat(f.fileno()).st_size - _DIGEST
    if end < _HEAD.size:
        raise SnapshotError(f"{name}: snapshot is truncated")
    sha = hashlib.sha256(head)
    left = end - _HEAD.size
    while left:
        chunk = f.read(min(left, 8 << 20))
        if not chunk:
            raise SnapshotError(f"{name}: snapshot is truncated")
        sha.update(chunk)
        left -= len(chunk)
    if f.read(_DIGEST) != sha.digest():
        raise SnapshotError(f"{name}: snapshot checksum mismatch (corrupt or truncated)")
    return end


def _end(f: IO[bytes], name: str) -> int:
    """`_verify` without the checksum pass: magic, version, size."""
    head = f.read(_HEAD.size)
    if len(head) < _HEAD.size or head[:8] != MAGIC or _HEAD.unpack(head)[1] != VERSION:
        raise SnapshotError(f"{name}: not a southbridge snapshot of this version")
    end = os.fstat(f.fileno()).st_size - _DIGEST
    if end < _HEAD.size:
        raise SnapshotError(f"{name}: snapshot is truncated")
    return end


def _read_exact(f: IO[bytes] | io.BufferedIOBase, n: int, name: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise SnapshotError(f"{name}: snapshot is truncated")
    return data


def read_meta(path: str | os.PathLike[str]) -> Snapshot:
    """Verify `path` and return its metadata (guest RAM is loaded by `load_memory`)."""
    snap, _ = _read(path, None)
    return snap


def read(path: str | os.PathLike[str], memory: GuestMemory, verify: bool = True) -> Snapshot:
    """Verify `path`, load its RAM into `memory` (whose regions must be laid out as they
    were when saved) and return the rest. `verify=False` skips the checksum pass for a file
    `read_meta` has just verified (its structure is still checked; a file swapped in
    between can only change the guest's own RAM bytes, which no checksum protects anyway
    from whoever can write the file)."""
    snap, _ = _read(path, memory, verify)
    return snap


def _open_regular(path: str | os.PathLike[str], name: str) -> io.BufferedReader:
    """Open for reading without blocking on a FIFO or device: a snapshot is a regular file
    (host/userfile.py's rule for every file a user names)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SnapshotError(f"{name}: not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read(
    path: str | os.PathLike[str], memory: GuestMemory | None, verify: bool = True
) -> tuple[Snapshot, int]:
    name = str(path)
    try:
        with _open_regular(path, name) as f:
            end = _verify(f, name) if verify else _end(f, name)
            f.seek(_HEAD.size - 4)
            (count,) = struct.unpack("<I", f.read(4))
            if not 1 <= count <= MAX_SECTIONS:
                raise SnapshotError(f"{name}: {count} sections")
            snap: Snapshot | None = None
            ram: list[tuple[int, int, int]] = []  # gpa, size, file offset of the payload
            for _ in range(count):
                tag, length = _SECTION.unpack(_read_exact(f, _SECTION.size, name))
                pos = f.tell()
                if length > end - pos:
                    raise SnapshotError(f"{name}: section {tag!r} runs past the end")
                if tag == b"META" and snap is None:
                    if length > MAX_META:
                        raise SnapshotError(f"{name}: metadata of {length} bytes")
                    snap = _parse_meta(_read_exact(f, length, name), name)
                elif tag == b"RAM ":
                    ram.append((*_RAM.unpack(_read_exact(f, _RAM.size, name))[:2], pos))
                else:
                    raise SnapshotError(f"{name}: unexpected section {tag!r}")
                f.seek(pos + length)
            if f.tell() != end or snap is None:
                raise SnapshotError(f"{name}: sections do not fill the snapshot")
            if memory is not None:
                _load_memory(f, ram, memory, name)
            return snap, len(ram)
    except OSError as e:
        raise SnapshotError(f"{name}: cannot read snapshot: {e.strerror or e}") from None


def _parse_meta(raw: bytes, name: str) -> Snapshot:
    try:
        meta = json.loads(raw, object_hook=_decode)
    except (ValueError, RecursionError):
        raise SnapshotError(f"{name}: snapshot metadata is not valid JSON") from None
    if not isinstance(meta, dict) or set(meta) != {"config", "machine", "vcpus", "clock_ns"}:
        raise SnapshotError(f"{name}: snapshot metadata has the wrong fields")
    config, machine, vcpus, clock = (meta[k] for k in ("config", "machine", "vcpus", "clock_ns"))
    if not isinstance(config, dict) or not isinstance(machine, dict):
        raise SnapshotError(f"{name}: snapshot config or machine state is not a mapping")
    if not isinstance(vcpus, list) or not all(isinstance(v, dict) for v in vcpus):
        raise SnapshotError(f"{name}: snapshot vCPU states are not a list of mappings")
    if type(clock) is not int or not -(1 << 63) <= clock < 1 << 63:
        raise SnapshotError(f"{name}: snapshot clock is not a 64-bit integer")
    return Snapshot(config, machine, vcpus, clock)


def _load_memory(
    f: io.BufferedIOBase, ram: list[tuple[int, int, int]], memory: GuestMemory, name: str
) -> None:
    layout = [(r.gpa, r.size) for r in memory.regions]
    if [(gpa, size) for gpa, size, _ in ram] != layout:
        raise SnapshotError(f"{name}: guest memory layout differs from this machine's")
    for region, (_, size, pos) in zip(memory.regions, ram, strict=True):
        f.seek(pos + _RAM.size - 4)
        (page,) = struct.unpack("<I", _read_exact(f, 4, name))
        if page != PAGE or size % PAGE:
            raise SnapshotError(f"{name}: page size {page}")
        npages = size // PAGE
        bitmap = _read_exact(f, (npages + 7) // 8, name)
        if npages % 8 and bitmap[-1] >> (npages % 8):
            raise SnapshotError(f"{name}: page bitmap marks pages past the region")
        # Pages not in the file are zero: clear only the pages that are not zero now
        # (comparing untouched memory reads the shared zero page and commits nothing).
        view = memoryview(region.buf)
        _, dirty = _nonzero_pages(region)
        for n in dirty:
            if not bitmap[n >> 3] >> (n & 7) & 1:
                view[n * PAGE : (n + 1) * PAGE] = _ZERO
        for byte_index, bits in enumerate(bitmap):
            while bits:
                low = bits & -bits
                n = byte_index * 8 + low.bit_length() - 1
                if f.readinto(view[n * PAGE : (n + 1) * PAGE]) != PAGE:
                    raise SnapshotError(f"{name}: snapshot is truncated")
                bits ^= low


def check_config(saved: dict[str, Any], current: dict[str, Any], name: str) -> None:
    """A snapshot resumes only on the configuration it was taken on: one line naming the
    settings that differ."""
    if saved != current:
        keys = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        shown = ", ".join(
            f"{k}={json.dumps(saved.get(k))[:40]} (now {json.dumps(current.get(k))[:40]})"
            for k in keys[:4]
        )
        raise SnapshotError(f"{name}: taken on a different configuration: {shown}")


def machine_config(config: PcConfig) -> dict[str, Any]:
    """The configuration fingerprint a snapshot is taken on and resumes on only."""
    return {
        "memory_mb": config.memory_mb,
        "smp": config.smp,
        "debugcon_port": config.debugcon_port,
    }
