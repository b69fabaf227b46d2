"""Issue 15's command-line findings, one regression test each: files, sockets and options a
user (or an attacker controlling them) passes give one error line and a non-zero status,
never a traceback, a hang or a lost file (HELPERS.md, "Bad user input").

In-process through `commands.main` where nothing can block; through a `python -m
southbridge` subprocess with a timeout where the old code blocked forever (FIFOs, sockets).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from southbridge.commands import main
from southbridge.kvm import guestbuild
from tests import cli

# Not a byte of it is UTF-8's: 0xff never occurs in UTF-8 (RFC 3629, section 1).
BINARY = bytes(range(0xFF, 0x7F, -1)) * 8


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    p = tmp_path / "binary.bin"
    p.write_bytes(BINARY)
    return p


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    p = tmp_path / "fifo"
    os.mkfifo(p)
    return p


@pytest.fixture(scope="module")
def kernel() -> Path:
    """A real Multiboot kernel, so that --initrd is the file that is read next."""
    return guestbuild.build("mb_info")


# -- binary files: UnicodeDecodeError tracebacks before -----------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--config", "{f}"],
        ["host", "--config", "{f}"],
        ["host", "--lspci-dump", "{f}"],
        ["qtest", "{f}"],
    ],
    ids=["run-config", "host-config", "host-lspci-dump", "qtest-script"],
)
def test_binary_files_are_one_line(
    capsys: pytest.CaptureFixture[str], binary: Path, argv: list[str]
) -> None:
    args = [a.format(f=binary) for a in argv]
    rc, err = _main(capsys, *args)
    cli.refused_in_process(args, err, rc, str(binary), "not UTF-8 text (byte 0xff at offset 0)")


# -- deeply nested TOML: a RecursionError of 3,000 lines before ---------------------------


@pytest.mark.parametrize("command", ["run", "host"])
def test_deeply_nested_toml_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    p = tmp_path / "deep.toml"
    p.write_text("a = " + "[" * 20_000 + "]" * 20_000 + "\n")
    rc, err = _main(capsys, command, "--config", str(p))
    cli.refused_in_process([command], err, rc, "nested too deeply")


# -- config keys of the wrong type ----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '[[domain]]\nname = "u"\npermissive = true\n',
        '[[domain]]\nname = "u"\npermissive = { "02:00.0" = true }\n',
        '[[domain]]\nname = "u"\npermissive = { "02:00.0" = [[true, 1]] }\n',
        '[[domain]]\nname = "u"\npermissive = { "02:00.0" = [[0, true]] }\n',
        'hide = true\n[[domain]]\nname = "u"\n',
        '[[domain]]\nname = "u"\nassign = true\n',
        '[[domain]]\nname = "u"\nmemory = true\n',
    ],
)
def test_config_keys_of_the_wrong_type_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    """A boolean is not a number of bytes (TOML 1.0 keeps booleans and integers apart)."""
    p = tmp_path / "hv.toml"
    p.write_text(text)
    rc, err = _main(capsys, "host", "--config", str(p), "--sysfs", str(tmp_path))
    cli.refused_in_process(["host"], err, rc, "hv.toml")


# -- lspci dumps with nothing in them ---------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n   \n"], ids=["empty", "blank-lines"])
def test_an_empty_lspci_dump_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    p = tmp_path / "host.txt"
    p.write_text(text)
    rc, err = _main(capsys, "host", "--lspci-dump", str(p))
    cli.refused_in_process(["host"], err, rc, str(p))


# -- timeouts that mean "never" ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "1e308", "nan", "-inf", "0", "31536001"])
@pytest.mark.parametrize("mode", [[], ["--hide", "02:00.0"]], ids=["run", "run-hide"])
def test_non_finite_and_absurd_timeouts_are_refused(
    capsys: pytest.CaptureFixture[str], value: str, mode: list[str]
) -> None:
    argv = ["run", "--serial", "none", "--kvm-device", "/nonexistent/kvm", *mode]
    rc, err = _main(capsys, *argv, f"--timeout={value}")
    cli.refused_in_process(argv, err, rc, "--timeout")


def test_a_year_of_timeout_is_still_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    # The bound refuses "never", not long runs: the next error is about KVM, not the timeout.
    argv = ["run", "--serial", "none", "--kvm-device", "/nonexistent/kvm", "--timeout", "3e7"]
    rc, err = _main(capsys, *argv)
    assert "--timeout" not in cli.refused_in_process(argv, err, rc, "/nonexistent/kvm")


# -- argparse usage errors: six lines of usage before ------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nosuch"],
        ["run", "--timeout", "soon"],
        ["run", "-m", "lots"],
        ["run", "--smp"],
        ["host", "--bogus"],
        ["qtest", "a", "b"],
        ["lspci", "-q"],
    ],
)
def test_usage_errors_are_one_line_with_status_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    line = cli.error_line(capsys.readouterr().err)
    assert "--help" in line


# -- FIFOs: a plain open() blocked forever before ------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--bios", "{fifo}"],
        ["run", "--kernel", "{fifo}"],
        ["run", "--kernel", "{kernel}", "--initrd", "{fifo}"],
        ["run", "--config", "{fifo}"],
        ["host", "--config", "{fifo}"],
        ["host", "--lspci-dump", "{fifo}"],
        ["qtest", "{fifo}"],
        ["lspci", "--dump", "{fifo}"],
        ["qtest", "--trace", "{fifo}"],
        ["run", "--trace", "{fifo}"],
        ["run", "--serial", "file:{fifo}"],
        ["run", "--debugcon", "file:{fifo}"],
    ],
)
def test_a_fifo_is_refused_without_blocking(fifo: Path, kernel: Path, argv: list[str]) -> None:
    args = [a.format(fifo=fifo, kernel=kernel) for a in argv]
    if args[0] == "run":
        args += ["--kvm-device", "/nonexistent/kvm", "--timeout", "5"]
    start = time.monotonic()
    r = cli.run(*args)
    line = cli.refused(r)
    assert "fifo" in line.lower() and "/nonexistent/kvm" not in line
    assert time.monotonic() - start < cli.TIMEOUT_S


# -- qtest --socket: IsADirectoryError traceback / a deleted file before -------------------


@contextlib.contextmanager
def _short_dir() -> Iterator[Path]:
    """Unix socket paths are limited to 107 bytes; pytest's tmp paths can be longer."""
    with tempfile.TemporaryDirectory(prefix="sb") as d:
        yield Path(d)


def test_qtest_socket_on_a_directory_is_one_line(tmp_path: Path) -> None:
    r = cli.run("qtest", "--socket", str(tmp_path))
    cli.refused(r, "not a socket")
    assert tmp_path.is_dir()


def test_qtest_socket_never_deletes_a_regular_file(tmp_path: Path) -> None:
    precious = tmp_path / "thesis.txt"
    precious.write_text("three years of work\n")
    r = cli.run("qtest", "--socket", str(precious))
    cli.refused(r, "not a socket", "not replacing it")
    assert precious.read_text() == "three years of work\n"


def test_qtest_socket_refuses_a_live_socket() -> None:
    with _short_dir() as d:
        path = str(d / "live.sock")
        live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        live.bind(path)
        live.listen(1)
        try:
            cli.refused(cli.run("qtest", "--socket", path), "in use")
            assert os.path.exists(path)
        finally:
            live.close()


def _connect(path: str, proc: subprocess.Popen[bytes]) -> socket.socket:
    deadline = time.monotonic() + cli.TIMEOUT_S
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_qtest_socket_replaces_a_stale_socket_and_removes_its_own() -> None:
    """A socket nobody listens on is what a run that ended left: it is replaced. On exit the
    server removes its own socket."""
    with _short_dir() as d:
        path = str(d / "stale.sock")
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(path)
        dead.close()  # the inode stays: a stale socket
        proc = subprocess.Popen(
            cli.command("qtest", "--socket", path), env=cli.env(), stderr=subprocess.PIPE
        )
        try:
            with _connect(path, proc) as s:
                s.sendall(b"inb 0x1234\n")
                s.settimeout(cli.TIMEOUT_S)
                assert s.recv(64) == b"OK 0x00ff\n"  # unassigned port: all ones, as QEMU prints it
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=cli.TIMEOUT_S)
        assert b"Traceback" not in err, err
        assert not os.path.exists(path)
