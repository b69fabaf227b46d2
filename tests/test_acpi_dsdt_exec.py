"""The DSDT's control methods run in ACPICA's own interpreter (acpiexec from Debian's
acpica-tools, its PCI config space simulated as zeroed memory): the PIRQ link devices read
and write the route registers as the PIIX3 defines them (82371SB 2.2.9: bit 7 disables, bits
3:0 the IRQ), `\\_PIC` chooses the routing table, the sleep packages carry piix4pm's SLP_TYP
values (ACPI 6.5, 7.4.2)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from southbridge.machine.acpi.build import AcpiConfig, dsdt_config
from southbridge.machine.acpi.dsdt import dsdt
from southbridge.machine.pc import MiB
from southbridge.pci import piix4pm as pm
from southbridge.pci.piix3 import pirq_of

ACPIEXEC = shutil.which("acpiexec")
IASL = shutil.which("iasl")
pytestmark = pytest.mark.skipif(
    ACPIEXEC is None or IASL is None, reason="acpiexec/iasl missing: run scripts/setup"
)


@pytest.fixture(scope="module")
def dsdt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dsdt") / "dsdt.dat"
    path.write_bytes(bytes(dsdt(dsdt_config(AcpiConfig(cpus=2, ram_below_4g=128 * MiB)))))
    return path


def _run(dsdt_path: Path, *commands: str) -> list[str]:
    """The values each `evaluate` printed, in order ('none' when it returned nothing)."""
    assert ACPIEXEC is not None
    done = subprocess.run(
        [ACPIEXEC, "-b", "; ".join(f"evaluate {c}" for c in commands), str(dsdt_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = done.stdout + done.stderr
    assert "ACPI Error" not in out and "ACPI Exception" not in out, out
    values = []
    for block in out.split("Evaluating ")[1:]:
        if "No object was returned" in block:
            values.append("none")
            continue
        m = re.search(r"\[Package\] Contains (\d+) Elements:(.*)", block, re.S)
        if m:
            ints = re.findall(r"\[Integer\] = ([0-9A-F]+)", m.group(2))
            values.append(",".join(str(int(v, 16)) for v in ints))
            continue
        m = re.search(r"\[Integer\] = ([0-9A-F]+)", block)
        if m:
            values.append(hex(int(m.group(1), 16)))
            continue
        assert "[Buffer]" in block, block
        rows = re.findall(r"[0-9A-F]{4}: ((?:[0-9A-F]{2} )+)", block)
        values.append(" ".join(r.strip() for r in rows))
    assert len(values) == len(commands), out
    return values


def test_link_routes_through_the_pirq_register(dsdt_file: Path) -> None:
    """_SRS stores the IRQ in PIRQRC; _CRS reads it back as an Interrupt descriptor with its
    checksum 0 (patched at run time); _DIS sets bit 7 and _STA then reads disabled (9)."""
    srs = "(89 06 00 09 01 0A 00 00 00 79 00)"  # Interrupt(Consumer, Level, High, Shared){10}
    out = _run(
        dsdt_file,
        "\\_SB.LNKB._SRS " + srs,
        "\\_SB.LNKB._STA",
        "\\_SB.LNKB._CRS",
        "\\_SB.LNKB._DIS",
        "\\_SB.LNKB._STA",
        "\\_SB.LNKB._CRS",
        "\\_SB.PRQ1",
        "\\_SB.PRQ0",
    )
    assert out[:3] == ["none", "0xb", "89 06 00 09 01 0A 00 00 00 79 00"]
    assert out[3:6] == ["none", "0x9", "89 06 00 09 01 00 00 00 00 79 00"]
    assert out[6:] == ["0x8a", "0x0"]  # LNKB is PIRQB's register (0x61) alone


def test_link_possible_irqs(dsdt_file: Path) -> None:
    """Interrupt(ResourceConsumer, Level, ActiveHigh, Shared){5, 10, 11}, then the end tag
    with the checksum that makes the template sum to 0."""
    (out,) = _run(dsdt_file, "\\_SB.LNKA._PRS")
    assert out == "89 0E 00 09 03 05 00 00 00 0A 00 00 00 0B 00 00 00 79 CA"
    assert sum(bytes.fromhex(out)) & 0xFF == 0


def test_pic_method_selects_the_routing_table(dsdt_file: Path) -> None:
    """ACPI 6.5, 5.8.1: \\_PIC(0) PIC mode, (1) APIC mode; _PRT follows (its 128 entries are
    too long for acpiexec's print buffer, so the flag it tests is read instead)."""
    assert _run(dsdt_file, "\\PICF", "\\_PIC 1", "\\PICF", "\\_PIC 0", "\\PICF") == [
        "0x0",
        "none",
        "0x1",
        "none",
        "0x0",
    ]


def test_sleep_packages_match_the_pm_function(dsdt_file: Path) -> None:
    assert _run(dsdt_file, "\\_S5", "\\_S3") == [
        f"{pm.SLP_TYP_S5},{pm.SLP_TYP_S5},0,0",
        f"{pm.SLP_TYP_S3},{pm.SLP_TYP_S3},0,0",
    ]


def test_routing_tables_follow_the_piix3_swizzle(dsdt_file: Path, tmp_path: Path) -> None:
    """PRTP: slot s pin p -> LNK(A + (p + s - 1) mod 4); PRTA: GSI 16 + that PIRQ."""
    assert IASL is not None
    subprocess.run(
        [IASL, "-d", "-p", str(tmp_path / "d"), str(dsdt_file)], check=True, capture_output=True
    )
    dsl = (tmp_path / "d.dsl").read_text()
    entry = r"Package \(0x04\)\s*\{\s*([^,]+),\s*([^,]+),\s*([^,]+),\s*([^}\s]+)\s*\}"
    words = {"Zero": 0, "One": 1}
    pic, apic = {}, {}
    for addr, pin, src, idx in re.findall(entry, dsl):
        slot = int(addr, 16) >> 16
        p = words.get(pin.strip()) if pin.strip() in words else int(pin, 16)
        if src.strip().startswith("LNK"):
            pic[(slot, p)] = src.strip()
        else:
            apic[(slot, p)] = int(idx, 16)
    assert len(pic) == len(apic) == 128
    for slot in range(32):
        for p in range(4):
            assert pic[(slot, p)] == "LNK" + "ABCD"[pirq_of(slot, p)]
            assert apic[(slot, p)] == 16 + pirq_of(slot, p)
