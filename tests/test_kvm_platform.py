"""The pc platform checked from inside a guest under KVM (southbridge/guests/platform.S):
PCI configuration mechanism #1, the UART reaching its backend and isa-debug-exit's status.
Skipped with the reason when this host cannot run KVM guests."""

from __future__ import annotations

from pathlib import Path

import pytest

from southbridge.core.clock import HostClock
from southbridge.core.device import BusDevice
from southbridge.host.chardev import make_backend
from southbridge.kvm import guestbuild
from southbridge.kvm.loader import load_bios
from southbridge.kvm.session import KvmSession
from southbridge.kvm.testing import kvm_unavailable_reason
from southbridge.kvm.vcpu import RunEnd
from southbridge.machine.pc import PcConfig, PcMachine

_reason = kvm_unavailable_reason()
pytestmark = [pytest.mark.kvm, pytest.mark.skipif(_reason is not None, reason=_reason or "")]

TEST_PORT = 0x700


class Recorder(BusDevice):
    """The guest's report port: OUTs recorded per offset."""

    io_sizes = frozenset({1, 2, 4})

    def __init__(self) -> None:
        self.out: dict[int, list[int]] = {}

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        self.out.setdefault(offset, []).append(value)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunEnd, Recorder, bytes]:
    com1 = tmp_path_factory.mktemp("platform") / "com1.txt"
    m = PcMachine(PcConfig(memory_mb=16), clock=HostClock(), serial=[make_backend(f"file:{com1}")])
    rec = Recorder()
    m.ports.register(TEST_PORT, 4, rec, "recorder")
    load_bios(m, str(guestbuild.build("platform")))
    try:
        with KvmSession(m) as session:
            end = session.run(10)
    finally:
        m.close()
    return end, rec, Path(com1).read_bytes()


def test_pci_ids_of_the_platform_devices_read_from_inside(
    run: tuple[RunEnd, Recorder, bytes],
) -> None:
    """PCI 2.1 3.2.2.3.2 mechanism #1: CONFIG_ADDRESS (enable | bus | dev | fn | reg) at
    0xCF8, the dword at 0xCFC. 82441FX 00:00.0 = 8086:1237, 82371SB PIIX3 00:01.0 =
    8086:7000, the demo device 00:02.0 = 5342:0001; an empty slot answers all-ones (no
    DEVSEL: master abort)."""
    _, rec, _ = run
    assert rec.out[0] == [0x12378086, 0x70008086, 0x00015342, 0xFFFFFFFF]


def test_pci_config_word_reads_at_cfc_and_cfe(run: tuple[RunEnd, Recorder, bytes]) -> None:
    """Mechanism #1: byte lanes of 0xCFC-0xCFF select the bytes of the addressed dword, so a
    word at 0xCFE is the device ID."""
    _, rec, _ = run
    assert rec.out[2] == [0x8086, 0x1237]


def test_uart_output_reaches_the_serial_backend(run: tuple[RunEnd, Recorder, bytes]) -> None:
    """16550 (LCR = 8N1): a byte written to THR while LSR.THRE is set is transmitted, in
    order, to the backend; TEMT sets once the shift register has sent the last one."""
    assert run[2] == b"platform ok\r\n"


def test_exit_through_isa_debug_exit_status_convention(
    run: tuple[RunEnd, Recorder, bytes],
) -> None:
    """QEMU isa-debug-exit: writing v to 0xF4 exits with status (v << 1) | 1: 0x2a -> 0x55."""
    end = run[0]
    assert (end.reason, end.status) == ("exit", 0x55)
