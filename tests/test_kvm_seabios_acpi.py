"""SeaBIOS (Debian's bios.bin) under KVM loads our ACPI tables through QEMU's fw_cfg
table-loader instead of building its own, and POST still reaches its end; the tables it
placed in guest memory read back whole (ACPI 6.5, 5.2: RSDP in the F segment, every
checksum, the pointers patched to where it allocated them)."""

from __future__ import annotations

import struct

import pytest

from southbridge.core.clock import HostClock
from southbridge.host.chardev import open_debugcon
from southbridge.kvm.firmware import prepare_firmware
from southbridge.kvm.session import KvmSession
from southbridge.kvm.testing import kvm_unavailable_reason
from southbridge.machine.acpi.build import PM_BASE
from southbridge.machine.pc import PcConfig, PcMachine
from tests.acpitables import walk
from tests.seabios import MISSING, SEABIOS, run_until_logged

_reason = kvm_unavailable_reason()
if _reason is None and not SEABIOS.is_file():
    _reason = MISSING
pytestmark = [pytest.mark.kvm, pytest.mark.skipif(_reason is not None, reason=_reason or "")]

DONE = b"No bootable device"
SMP = 2
Tables = tuple[str, int, dict[bytes, bytes], dict[bytes, int]]


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    """POST to "No bootable device" with 2 CPUs; then the debug log and what the guest's
    memory holds: the RSDP SeaBIOS placed (found by the OS's scan of 0xE0000-0xFFFFF, ACPI
    6.5, 5.2.5.1) and the tables it leads to."""
    log = tmp_path_factory.mktemp("seabios-acpi") / "debugcon.log"
    m = PcMachine(
        PcConfig(memory_mb=128, smp=SMP), clock=HostClock(), debugcon=open_debugcon(f"file:{log}")
    )
    shadow = prepare_firmware(m, SEABIOS.read_bytes())
    try:
        with KvmSession(m, cpus=SMP) as session:
            shadow.on_change = session.sync_memory
            end, _ = run_until_logged(session, log, DONE, 60, "POST done")
        text = log.read_text(errors="replace")
        assert (end.reason, end.message) == ("stopped", "POST done"), text[-2000:]
        bios_area = m.space.read_bytes(0xE0000, 0x20000)
        found = [at for at in range(0, len(bios_area), 16) if bios_area[at : at + 8] == b"RSD PTR "]
        assert len(found) == 1, f"RSDPs at {[hex(0xE0000 + a) for a in found]}"
        rsdp_addr = 0xE0000 + found[0]
        _, tables, addrs = walk(m.space.read_bytes, rsdp_addr)
    finally:
        m.close()
    return text, rsdp_addr, tables, addrs


def test_seabios_loads_our_tables_and_builds_none(booted: Tables) -> None:
    """romfile_loader_execute ran our etc/table-loader (qemu_cfg_init moved the PM base
    first, as QEMU's tables expect) and acpi_setup did not run: no "ACPI DSDT=" and no
    copy of a RSDP of its own (src/fw/paravirt.c, src/fw/biostables.c)."""
    text = booted[0]
    assert "Moving pm_base to 0x600" in text
    assert "ACPI DSDT=" not in text
    assert "Copying ACPI RSDP" not in text
    assert DONE.decode() in text


def test_the_rsdp_in_the_f_segment_is_ours(booted: Tables) -> None:
    _, rsdp_addr, tables, _ = booted
    assert 0xF0000 <= rsdp_addr < 0x100000  # ZoneFSeg
    assert tables[b"FACS"][:4] == b"FACS"
    for sig, data in tables.items():
        if sig != b"FACS":
            assert data[10:16] == b"SBRIDG", sig  # our OEM id, not SeaBIOS's "BOCHS "
            assert sum(data) & 0xFF == 0, f"{sig!r} checksum after SeaBIOS patched it"


def test_seabios_placed_the_tables_in_reserved_high_memory(booted: Tables) -> None:
    """ZoneHigh sits at the top of RAM, which SeaBIOS's e820 map marks reserved."""
    _, _, _, addrs = booted
    for sig, addr in addrs.items():
        assert 0x07F00000 <= addr < 0x08000000, (sig, hex(addr))
    assert addrs[b"FACS"] % 64 == 0


def test_tables_describe_the_machine_seabios_set_up(booted: Tables) -> None:
    """The FADT's PM timer is the port SeaBIOS timed with; the MADT lists both CPUs."""
    text, _, tables, _ = booted
    (tmr,) = struct.unpack_from("<I", tables[b"FACP"], 76)
    assert tmr == PM_BASE + 8
    assert f"Using pmtimer, ioport 0x{tmr:x}" in text
    madt = tables[b"APIC"]
    at, lapic_ids = 44, []
    while at < len(madt):
        if madt[at] == 0:  # processor local APIC: UID, APIC id, flags
            lapic_ids.append(madt[at + 3])
        at += madt[at + 1]
    assert lapic_ids == list(range(SMP))
    assert f"Found {SMP} cpu(s)" in text
