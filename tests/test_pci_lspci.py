"""lspci compatibility: our listing matches the real `lspci -nn`/`-n` reading our dump, and
the real `lspci -F DUMP -vvv -nn` decodes our IDs, BARs, bridge windows and capability
lists exactly as the devices define them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from southbridge.cli import main
from southbridge.core.clock import ManualClock
from southbridge.machine.pc import PcMachine
from southbridge.pci import lspci
from southbridge.pci.bridge import PciBridge
from southbridge.pci.capabilities import walk_capabilities, walk_extended
from southbridge.pci.demo import DemoDevice
from southbridge.pci.lspci import PciIds, describe

LSPCI = shutil.which("lspci")
needs_lspci = pytest.mark.skipif(LSPCI is None, reason="pciutils' lspci is not installed")


def configured_machine() -> tuple[PcMachine, DemoDevice]:
    """The pc machine with the demo's BARs programmed, plus a bridge with a PCIe demo."""
    m = PcMachine(clock=ManualClock())
    d = m.demo
    # BAR4 stays below 4 GiB: lspci 3.9 in dump mode (-F) prints a spurious extra region for
    # a 64-bit BAR whose upper half is non-zero (it reads that DWORD as a BAR of its own).
    for off, v in [
        (0x10, 0xFEBF0000),
        (0x14, 0xC000),
        (0x18, 0xFEBE0000),
        (0x1C, 0),
        (0x20, 0xE0000000),
        (0x24, 0),
        (0x30, 0xFEB80000),
        (0x3C, 11),
        (0x04, 7),
    ]:
        d.config_write(off, 4, v)
    br = PciBridge()
    m.pci_bus.add(br, 3)
    br.config_write(0x18, 4, 0x010100)
    br.config_write(0x1C, 2, 0xD0D0)
    br.config_write(0x20, 4, 0xFE00FE00)
    br.config_write(0x04, 2, 7)
    br.add(DemoDevice(pcie=True, name="pcie-demo"), 0)
    return m, d


def run_lspci(dump: Path, *args: str) -> str:
    assert LSPCI is not None
    r = subprocess.run([LSPCI, "-F", str(dump), *args], capture_output=True, text=True, check=True)
    return r.stdout


def section(text: str, addr: str) -> str:
    m = re.search(rf"^{re.escape(addr)} .*?(?=^\S|\Z)", text, re.S | re.M)
    assert m, f"{addr} missing from lspci output"
    return m.group(0)


def test_pci_ids_parser() -> None:
    ids = PciIds.parse(
        "# comment\n8086  Intel Corporation\n\t1237  440FX - 82441FX PMC [Natoma]\n"
        "\t\t1af4 1100  Qemu virtual machine\nC 06  Bridge\n\t00  Host bridge\n"
        "\t80  Bridge\nC 01  Mass storage controller\n\t01  IDE interface\n"
        "\t\t80  ISA Compatibility mode-only controller, supports bus mastering\n"
    )
    assert ids.vendors[0x8086] == "Intel Corporation"
    assert ids.devices[(0x8086, 0x1237)] == "440FX - 82441FX PMC [Natoma]"
    assert ids.subclasses[(6, 0)] == "Host bridge"
    assert ids.progifs[(1, 1, 0x80)].startswith("ISA Compatibility")
    m = PcMachine(clock=ManualClock())
    assert describe(m.i440fx, ids) == (
        "Host bridge [0600]: Intel Corporation 440FX - 82441FX PMC [Natoma] [8086:1237] (rev 02)"
    )
    assert describe(m.demo, PciIds()) == "Class [00ff]: Device [5342:0001] (rev 01)"


def test_dump_format() -> None:
    m, _ = configured_machine()
    text = lspci.dump(m.pci_bus, 3)
    blocks = text.strip("\n").split("\n\n")
    assert len(blocks) == 7  # 00:01.1 the PIIX3 IDE function, 00:01.3 the PIIX4 PM one
    first = blocks[0].splitlines()
    assert first[0].startswith("00:00.0 ")
    assert first[1] == "00: 86 80 37 12 06 00 00 02 02 00 00 06 00 00 00 00"
    assert len(first) == 1 + 16
    ext = lspci.dump(m.pci_bus, 4).strip("\n").split("\n\n")
    assert len(ext[-1].splitlines()) == 1 + 256  # the PCIe function's 4 KiB
    assert len(ext[0].splitlines()) == 1 + 16  # conventional functions stay at 256 bytes
    short = lspci.dump(m.pci_bus, 1).strip("\n").split("\n\n")
    assert len(short[0].splitlines()) == 1 + 4


@needs_lspci
def test_listing_matches_real_lspci(tmp_path: Path) -> None:
    m, _ = configured_machine()
    dump = tmp_path / "dump.txt"
    dump.write_text(lspci.dump(m.pci_bus, 4))
    assert lspci.listing(m.pci_bus) == run_lspci(dump, "-nn")
    assert lspci.render(m.pci_bus, numeric=1) == run_lspci(dump, "-n")


@needs_lspci
def test_real_lspci_decodes_ids_bars_and_capabilities(tmp_path: Path) -> None:
    m, demo = configured_machine()
    dump = tmp_path / "dump.txt"
    dump.write_text(lspci.dump(m.pci_bus, 4))
    out = run_lspci(dump, "-vvv", "-nn")
    d = section(out, "00:02.0")
    assert "Device [5342:0001] (rev 01)" in d
    assert "Subsystem: Device [5342:0001]" in d
    assert "Control: I/O+ Mem+ BusMaster+" in d
    assert "Interrupt: pin A routed to IRQ 11" in d
    assert "Region 0: Memory at febf0000 (32-bit, non-prefetchable)" in d
    assert "Region 1: I/O ports at c000" in d
    assert "Region 2: Memory at febe0000 (64-bit, non-prefetchable)" in d
    assert "Region 4: Memory at e0000000 (64-bit, prefetchable)" in d
    assert "Expansion ROM at feb80000 [disabled]" in d
    names = {
        0x01: "Power Management version 3",
        0x05: "MSI: Enable- Count=1/4 Maskable+ 64bit+",
        0x11: "MSI-X: Enable- Count=4 Masked-",
        0x10: "Express (v2) Endpoint",
    }
    listed = re.findall(r"Capabilities: \[([0-9a-f]+)\] (.*)", d)
    assert listed == [(f"{o:x}", names[c]) for o, c in walk_capabilities(demo.config)]
    assert "Vector table: BAR=2 offset=00000000" in d and "PBA: BAR=2 offset=00000800" in d
    # The PCIe function behind the bridge: extended capability list from the -xxxx dump.
    p = section(out, "01:00.0")
    assert [(o, c) for o, c in re.findall(r"Capabilities: \[([0-9a-f]+)(?: v1)?\] (\S+)", p)] == [
        ("40", "Power"),
        ("48", "MSI:"),
        ("60", "MSI-X:"),
        ("6c", "Express"),
        ("100", "Device"),
    ]
    pcie = m.pci_bus.find(1, 0)
    assert pcie is not None and walk_extended(pcie.config) == [(0x100, 3)]
    assert "Device Serial Number 53-42-00-00-00-00-00-01" in p
    b = section(out, "00:03.0")
    assert "PCI bridge [0604]: Device [5342:0002]" in b
    assert "Bus: primary=00, secondary=01, subordinate=01" in b
    assert "I/O behind bridge: d000-dfff" in b
    assert "Memory behind bridge: fe000000-fe0fffff" in b
    h = section(out, "00:00.0")
    assert "Intel Corporation 440FX - 82441FX PMC [Natoma] [8086:1237] (rev 02)" in h
    assert "ISA bridge [0601]" in section(out, "00:01.0")


@needs_lspci
def test_cli_lspci_dump_is_read_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dump = tmp_path / "cli.txt"
    assert main(["lspci", "--dump", str(dump)]) == 0
    assert main(["lspci"]) == 0
    listing = capsys.readouterr().out
    assert listing == run_lspci(dump, "-nn")
    assert listing.splitlines()[0].startswith("00:00.0 Host bridge [0600]")
    assert main(["lspci", "-n"]) == 0
    assert capsys.readouterr().out == run_lspci(dump, "-n")
    assert main(["lspci", "-xxx"]) == 0
    assert capsys.readouterr().out == dump.read_text()


def test_cli_dump_unwritable_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lspci", "--dump", "/nonexistent/dir/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("southbridge: error: cannot write") and err.count("\n") == 1
