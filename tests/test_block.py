"""The block back-end shared by virtio-blk and IDE: raw images, the executors, --drive."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from southbridge.devices.blockdev import BlockError, InlineExecutor
from southbridge.host.block import ImageError, RawImage, ThreadExecutor
from southbridge.host.drive import DriveError, cdrom_drive, parse_drive


def _image(tmp_path: Path, size: int = 8192) -> Path:
    p = tmp_path / "disk.img"
    p.write_bytes(bytes(range(256)) * (size // 256))
    return p


def test_raw_image_reads_and_writes_the_file(tmp_path: Path) -> None:
    p = _image(tmp_path)
    with RawImage(str(p)) as img:
        assert img.size == 8192
        assert img.read(510, 4) == bytes([254, 255, 0, 1])
        img.write(512, b"\xaa" * 512)
        img.flush()
    assert p.read_bytes()[512:1024] == b"\xaa" * 512


def test_raw_image_rejects_ranges_past_the_end(tmp_path: Path) -> None:
    with RawImage(str(_image(tmp_path))) as img:
        with pytest.raises(BlockError):
            img.read(8192 - 1, 2)
        with pytest.raises(BlockError):
            img.write(-1, b"x")
        with pytest.raises(BlockError):
            img.write_zeroes(0, 8193)


def test_read_only_image_refuses_writes_and_keeps_the_file(tmp_path: Path) -> None:
    p = _image(tmp_path)
    before = p.read_bytes()
    with RawImage(str(p), read_only=True) as img:
        with pytest.raises(BlockError):
            img.write(0, b"x")
        with pytest.raises(BlockError):
            img.discard(0, 512)
    assert p.read_bytes() == before


def test_write_zeroes_and_discard_read_back_as_zeroes(tmp_path: Path) -> None:
    with RawImage(str(_image(tmp_path))) as img:
        img.write_zeroes(100, 1000)
        img.discard(4096, 4096)
        assert img.read(100, 1000) == bytes(1000)
        assert img.read(4096, 4096) == bytes(4096)
        assert img.read(99, 1) == bytes([99])


@pytest.mark.parametrize("kind", ["missing", "dir", "fifo"])
def test_unusable_images_are_one_line_errors(tmp_path: Path, kind: str) -> None:
    p = tmp_path / "x"
    if kind == "dir":
        p.mkdir()
    elif kind == "fifo":
        os.mkfifo(p)
    with pytest.raises(ImageError) as e:
        RawImage(str(p))  # a FIFO is refused without blocking in open()
    assert "\n" not in str(e.value)


def test_unwritable_image_says_to_use_readonly(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can write any file")
    p = _image(tmp_path)
    p.chmod(0o444)
    with pytest.raises(ImageError, match="readonly=on"):
        RawImage(str(p))


def test_inline_executor_reports_errors_to_the_completion() -> None:
    got: list[object] = []
    ex = InlineExecutor()
    ex.submit(lambda: 5, got.append)

    def fail() -> int:
        raise BlockError("media error")

    ex.submit(fail, got.append)
    assert got[0] == 5
    assert isinstance(got[1], BlockError)


def test_thread_executor_completes_in_order_under_the_lock(tmp_path: Path) -> None:
    lock = threading.RLock()
    seen: list[tuple[int, bool]] = []
    done = threading.Event()
    with RawImage(str(_image(tmp_path))) as img:
        ex = ThreadExecutor(lock)
        for n in range(5):

            def complete(result: object, n: int = n) -> None:
                # RLock._is_owned is private; acquiring non-blocking from the same thread
                # succeeds either way, so check ownership through a second thread instead.
                probe: list[bool] = []
                t = threading.Thread(target=lambda: probe.append(lock.acquire(blocking=False)))
                t.start()
                t.join()
                seen.append((n, probe[0]))
                assert result == img.read(n * 512, 1)
                if n == 4:
                    done.set()

            def work(n: int = n) -> bytes:
                return img.read(n * 512, 1)

            ex.submit(work, complete)
        assert done.wait(10)
        ex.close()
    assert seen == [(n, False) for n in range(5)]


def test_drive_options_in_qemus_words() -> None:
    d = parse_drive("file=a,,b.img,if=ide,index=1,readonly=on,format=raw")
    assert (d.file, d.interface, d.index, d.read_only, d.media) == (
        "a,b.img",
        "ide",
        1,
        True,
        "disk",
    )
    assert parse_drive("file=x").interface == "virtio"
    c = cdrom_drive("x.iso")
    assert (c.interface, c.index, c.media, c.read_only) == ("ide", 2, "cdrom", True)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "if=virtio",
        "file=x,bogus=1",
        "file=x,if=scsi",
        "file=x,format=qcow2",
        "file=x,readonly=maybe",
        "file=x,if=ide,index=4",
        "file=x,index=-1",
        "file=x,media=cdrom",
        "file=x,file=y",
        "file=x,noequals",
        "file=x,serial=" + "s" * 21,
    ],
)
def test_bad_drive_options_are_one_line_errors(text: str) -> None:
    with pytest.raises(DriveError) as e:
        parse_drive(text)
    assert "\n" not in str(e.value)
