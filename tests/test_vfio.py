"""VFIO (issue 7, item 5): the ctypes mirror of linux/vfio.h against the header itself, the
device open sequence and its errors, config/BAR regions, reset, and the interrupt source
(INTx auto-masked by VFIO and unmasked on the guest's EOI, MSI/MSI-X eventfds per vector)
driven through a fake kernel that keeps vfio-pci's rules; then an assigned device on it.

This machine has no vfio-pci devices: every system call goes through an injected `VfioOs`;
the eventfds are real ones, written by the fake kernel as vfio-pci's handlers would."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from southbridge.domains.assign import AssignedDevice
from southbridge.domains.sources import SysfsConfigSource, source_for
from southbridge.host import vfio_abi as abi
from southbridge.host.fakesysfs import FakeBar, FakeDevice, build_fake_sysfs
from southbridge.host.inventory import HostDevice, probe_sysfs
from southbridge.host.pciaddr import PciAddress
from southbridge.host.simulated import SimSpec
from southbridge.host.vfio import (
    VfioConfigSource,
    VfioDevice,
    VfioError,
    VfioInterruptSource,
)
from southbridge.machine.pc import PcMachine
from tests import cheader
from tests.pcicfg import cfg_read, cfg_write

NAME = "0000:02:00.0"
STRUCTS = ["vfio_group_status", "vfio_device_info", "vfio_region_info", "vfio_irq_info",
           "vfio_irq_set", "vfio_iommu_type1_dma_map", "vfio_iommu_type1_dma_unmap"]  # fmt: skip
CONSTANTS = [n for n in dir(abi) if n.startswith("VFIO_")]

INTX, MSI, MSIX = (
    abi.VFIO_PCI_INTX_IRQ_INDEX,
    abi.VFIO_PCI_MSI_IRQ_INDEX,
    abi.VFIO_PCI_MSIX_IRQ_INDEX,
)
TRIGGER_FDS = abi.VFIO_IRQ_SET_DATA_EVENTFD | abi.VFIO_IRQ_SET_ACTION_TRIGGER
TRIGGER_OFF = abi.VFIO_IRQ_SET_DATA_NONE | abi.VFIO_IRQ_SET_ACTION_TRIGGER
UNMASK = abi.VFIO_IRQ_SET_DATA_NONE | abi.VFIO_IRQ_SET_ACTION_UNMASK
WAIT = 5.0  # seconds a listener may take to hear an eventfd (a bound, never a delay)


# -- the ABI against linux/vfio.h ------------------------------------------------------------
@pytest.fixture(scope="module")
def header_values(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    offsets = [(s, f) for s in STRUCTS for f, _t in getattr(abi, s)._fields_]
    return cheader.header_values(
        tmp_path_factory.mktemp("vfio_abi"),
        "linux/vfio.h",
        STRUCTS,
        [*offsets, ("vfio_irq_set", "data")],
        CONSTANTS,
    )


@pytest.mark.parametrize("name", STRUCTS)
def test_struct_layout_matches_vfio_h(header_values: dict[str, int], name: str) -> None:
    cls = getattr(abi, name)
    assert ctypes.sizeof(cls) == header_values[f"sizeof.{name}"]
    for f, _t in cls._fields_:
        assert getattr(cls, f).offset == header_values[f"offsetof.{name}.{f}"], f


def test_irq_set_payload_follows_the_header(header_values: dict[str, int]) -> None:
    """vfio.h: `__u8 data[]` follows `count`; eventfds are s32, argsz covers them all."""
    assert header_values["offsetof.vfio_irq_set.data"] == ctypes.sizeof(abi.vfio_irq_set)
    buf = abi.irq_set(MSIX, TRIGGER_FDS, 2, 3, [7, -1, 9])
    assert len(buf.raw) == 20 + 12 and int.from_bytes(buf.raw[0:4], "little") == 32
    assert abi.decode_irq_set(buf.raw) == (MSIX, TRIGGER_FDS, 2, 3, [7, -1, 9])
    with pytest.raises(ValueError):
        abi.irq_set(MSI, TRIGGER_FDS, 0, 2, [1])


@pytest.mark.parametrize("name", CONSTANTS)
def test_ioctl_numbers_and_constants_match_vfio_h(header_values: dict[str, int], name: str) -> None:
    assert getattr(abi, name) == header_values[name]


# -- a fake kernel with vfio-pci's rules -----------------------------------------------------
CONFIG_OFF = abi.VFIO_PCI_CONFIG_REGION_INDEX << 40  # vfio-pci: index << 40 (VFIO_PCI_OFFSET)


class FakeVfio:
    """Container, group and device nodes; SET_IRQS recorded decoded and enforced as
    vfio_pci_intx.c / vfio_pci_core.c do: INTx masks itself when it signals, UNMASK
    re-signals a line still asserted, MSI cannot be enabled while INTx triggers."""

    def __init__(self, config: bytes, counts: dict[int, int] | None = None) -> None:
        self.config = bytearray(config)
        self.counts = {INTX: 1, MSI: 4, MSIX: 8} if counts is None else counts
        self.bars: dict[int, bytearray] = {0: bytearray(0x100), 1: bytearray(0x1000)}
        self.mappable = {1}
        self.mmaps: list[mmap.mmap] = []
        self.viable = True
        self.version = 0
        self.type1 = True
        self.device_flags = abi.VFIO_DEVICE_FLAGS_PCI | abi.VFIO_DEVICE_FLAGS_RESET
        self.open_errors: dict[str, OSError] = {}
        # (request, IRQ index) whose enable is refused (e.g. no host vectors left)
        self.fail: set[tuple[int, int]] = set()
        self.fds: dict[int, str] = {}
        self.next_fd = 1000
        self.calls: list[tuple[str, Any]] = []
        self.set_irqs: list[tuple[int, int, int, int, list[int]]] = []
        self.writes: list[tuple[int, bytes]] = []
        self.resets = 0
        self.dma: dict[int, tuple[int, int, int]] = {}  # iova -> (vaddr, size, flags)
        self.dma_error: OSError | None = None
        # kernel IRQ state
        self.triggers: dict[int, list[int]] = {}  # index -> eventfds
        self.masked = False
        self.line = False
        self.signals = 0  # eventfd signals the kernel sent, INTx and MSI
        self.lock = threading.Lock()

    # VfioOs
    def open(self, path: str, flags: int) -> int:
        if path in self.open_errors:
            raise self.open_errors[path]
        fd, self.next_fd = self.next_fd, self.next_fd + 1
        self.fds[fd] = path
        return fd

    def close(self, fd: int) -> None:
        del self.fds[fd]

    def ioctl(self, fd: int, request: int, arg: Any = None) -> int:
        assert fd in self.fds, "ioctl on a closed fd"
        name = next(n for n in dir(abi) if n.startswith("VFIO_") and getattr(abi, n) == request
                    and n not in ("VFIO_PCI_NUM_REGIONS",))  # fmt: skip
        self.calls.append((name, arg.value if isinstance(arg, ctypes.c_int32) else arg))
        if request == abi.VFIO_GET_API_VERSION:
            return self.version
        if request == abi.VFIO_CHECK_EXTENSION:
            return int(self.type1 and arg == abi.VFIO_TYPE1_IOMMU)
        if request == abi.VFIO_GROUP_GET_STATUS:
            arg.flags = abi.VFIO_GROUP_FLAGS_VIABLE if self.viable else 0
        elif request == abi.VFIO_GROUP_SET_CONTAINER:
            assert self.fds[arg.value].endswith("/vfio")
        elif request == abi.VFIO_GROUP_GET_DEVICE_FD:
            assert arg.value.decode() == NAME
            dev = self.open("device", 0)
            return dev
        elif request == abi.VFIO_DEVICE_GET_INFO:
            arg.flags, arg.num_regions, arg.num_irqs = self.device_flags, 9, 5
        elif request == abi.VFIO_DEVICE_GET_REGION_INFO:
            i = arg.index
            size = len(self.config) if i == 7 else len(self.bars.get(i, b""))
            rw = abi.VFIO_REGION_INFO_FLAG_READ | abi.VFIO_REGION_INFO_FLAG_WRITE
            arg.size, arg.offset = size, i << 40
            arg.flags = (rw if size else 0) | (
                abi.VFIO_REGION_INFO_FLAG_MMAP if i in self.mappable else 0
            )
        elif request == abi.VFIO_DEVICE_GET_IRQ_INFO:
            arg.count = self.counts.get(arg.index, 0)
            arg.flags = abi.VFIO_IRQ_INFO_EVENTFD | (
                abi.VFIO_IRQ_INFO_MASKABLE | abi.VFIO_IRQ_INFO_AUTOMASKED
                if arg.index == INTX
                else 0
            )
        elif request == abi.VFIO_DEVICE_SET_IRQS:
            return self._set_irqs(arg.raw)
        elif request == abi.VFIO_DEVICE_RESET:
            self.resets += 1
        elif request == abi.VFIO_IOMMU_MAP_DMA:
            assert self.fds[fd].endswith("/vfio") and arg.argsz == ctypes.sizeof(arg)
            if self.dma_error is not None:
                raise self.dma_error
            self.dma[arg.iova] = (arg.vaddr, arg.size, arg.flags)
        elif request == abi.VFIO_IOMMU_UNMAP_DMA:
            assert self.dma.pop(arg.iova)[1] == arg.size
        return 0

    def _set_irqs(self, raw: bytes) -> int:
        index, flags, start, count, fds = abi.decode_irq_set(raw)
        self.set_irqs.append((index, flags, start, count, fds))
        if (abi.VFIO_DEVICE_SET_IRQS, index) in self.fail and flags == TRIGGER_FDS:
            raise OSError(errno.EINVAL, "Invalid argument")
        with self.lock:
            if flags == UNMASK and index == INTX:
                self.masked = False
                self._check()
            elif flags == TRIGGER_OFF and count == 0:
                self.triggers.pop(index, None)
                if index == INTX:
                    self.masked = False
            elif flags == TRIGGER_FDS:
                others = [i for i in self.triggers if i != index]
                if others or count > self.counts.get(index, 0):
                    raise OSError(errno.EINVAL, "Invalid argument")
                self.triggers[index] = fds
                if index == INTX:
                    self.masked = False
                    self._check()
            else:
                raise OSError(errno.EINVAL, "Invalid argument")
        return 0

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        index, off = offset >> 40, offset & ((1 << 40) - 1)
        data = self.config if index == 7 else self.bars[index]
        return bytes(data[off : off + size])

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        self.writes.append((offset, data))
        index, off = offset >> 40, offset & ((1 << 40) - 1)
        target = self.config if index == 7 else self.bars[index]
        target[off : off + len(data)] = data
        return len(data)

    def mmap(self, fd: int, size: int, offset: int) -> mmap.mmap | None:
        m = mmap.mmap(-1, size)
        self.mmaps.append(m)
        return m

    # the device's INTx line, as vfio_intx_handler sees it
    def _check(self) -> bool:
        fds = self.triggers.get(INTX)
        if self.line and fds and not self.masked:
            self.masked = True  # VFIO_IRQ_INFO_AUTOMASKED
            self.signals += 1
            os.eventfd_write(fds[0], 1)
            return True
        return False

    def set_line(self, level: bool) -> bool:
        """Whether the kernel signalled the INTx eventfd."""
        with self.lock:
            self.line = level
            return self._check()

    def fire_msi(self, vector: int) -> bool:
        for index in (MSI, MSIX):
            fds = self.triggers.get(index)
            if fds and vector < len(fds):
                self.signals += 1
                os.eventfd_write(fds[vector], 1)
                return True
        return False

    def irq_calls(self) -> list[tuple[int, int, int, int, list[int]]]:
        out, self.set_irqs = self.set_irqs, []
        return out


def make_sysfs(tmp: Path, driver: str | None = "vfio-pci", group: str | None = "7") -> Path:
    spec = SimSpec(
        FakeDevice(
            "02:00.0",
            0x8086,
            0x10D3,
            0x020000,
            bars={0: FakeBar("io", 0xC000, 0x100), 1: FakeBar("mem32", 0xFEB00000, 0x1000)},
            irq=11,
            driver=driver,
        ),
        msi_vectors=4,
        msix_vectors=4,
    )
    root = build_fake_sysfs(tmp, [spec.fake])
    dev = (root / "bus" / "pci" / "devices" / NAME).resolve()
    (dev / "config").write_bytes(spec.config())
    if group is not None:
        groups = root / "kernel" / "iommu_groups" / group
        groups.mkdir(parents=True)
        (dev / "iommu_group").symlink_to(os.path.relpath(groups, dev))
    return root


def config_bytes() -> bytes:
    spec = SimSpec(
        FakeDevice("02:00.0", 0x8086, 0x10D3, 0x020000,
                   bars={0: FakeBar("io", 0xC000, 0x100), 1: FakeBar("mem32", 0xFEB00000, 0x1000)},
                   irq=11),
        msi_vectors=4, msix_vectors=4,
    )  # fmt: skip
    return spec.config().ljust(4096, b"\0")


def open_device(tmp: Path, fake: FakeVfio | None = None) -> tuple[FakeVfio, VfioDevice]:
    fake = fake or FakeVfio(config_bytes())
    root = make_sysfs(tmp)
    return fake, VfioDevice(NAME, root / "bus" / "pci" / "devices" / NAME, fake, "/dev/vfio")


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


# -- the device ------------------------------------------------------------------------------
def test_open_follows_the_vfio_usage_sequence(tmp_path: Path) -> None:
    """Documentation/driver-api/vfio.rst: container, API version, type-1 extension, group
    viable, group -> container, IOMMU type, device fd by name, then region and IRQ info."""
    fake, dev = open_device(tmp_path)
    names = [c for c, _ in fake.calls]
    assert names[:7] == [
        "VFIO_GET_API_VERSION",
        "VFIO_CHECK_EXTENSION",
        "VFIO_GROUP_GET_STATUS",
        "VFIO_GROUP_SET_CONTAINER",
        "VFIO_SET_IOMMU",
        "VFIO_GROUP_GET_DEVICE_FD",
        "VFIO_DEVICE_GET_INFO",
    ]
    assert names.count("VFIO_DEVICE_GET_REGION_INFO") == 9
    assert names.count("VFIO_DEVICE_GET_IRQ_INFO") == 5
    assert fake.calls[3][1] == dev.container and fake.calls[4][1] == abi.VFIO_TYPE1_IOMMU
    assert fake.fds[dev.group] == "/dev/vfio/7"  # the sysfs iommu_group link's name
    assert dev.regions[7].size == 4096 and dev.irqs[MSIX].count == 8
    dev.close()
    assert fake.fds == {}


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda f: f.open_errors.update({"/dev/vfio/vfio": FileNotFoundError(2, "x")}),
         "/dev/vfio/vfio missing (is the vfio-pci module loaded?)"),
        (lambda f: f.open_errors.update({"/dev/vfio/7": PermissionError(13, "x")}),
         "cannot open IOMMU group 7 /dev/vfio/7: permission denied"),
        (lambda f: setattr(f, "viable", False),
         "IOMMU group 7 is not viable (bind every device in it to vfio-pci)"),
        (lambda f: setattr(f, "version", 1), "VFIO API version 1, need 0"),
        (lambda f: setattr(f, "type1", False), "the VFIO container lacks the type-1 IOMMU"),
        (lambda f: setattr(f, "device_flags", 0), "not a vfio-pci device"),
    ],
)  # fmt: skip
def test_open_errors_are_one_clear_line_and_leak_nothing(
    tmp_path: Path, setup: Any, message: str
) -> None:
    fake = FakeVfio(config_bytes())
    setup(fake)
    with pytest.raises(VfioError) as e:
        open_device(tmp_path, fake)
    assert str(e.value) == message and "\n" not in message
    assert fake.fds == {}


def test_no_iommu_group_is_a_clear_error(tmp_path: Path) -> None:
    root = make_sysfs(tmp_path, group=None)
    with pytest.raises(VfioError, match="no IOMMU group"):
        VfioDevice(NAME, root / "bus" / "pci" / "devices" / NAME, FakeVfio(b""), "/dev/vfio")


def test_config_region_reads_and_writes_at_its_offset(tmp_path: Path) -> None:
    fake, dev = open_device(tmp_path)
    cfg = dev.config()
    assert cfg.size == 4096
    assert cfg.read(0, 4) == 0x10D38086
    cfg.write(0x40, 2, 0x1BEEF)  # the value is cut to the access size
    assert fake.writes == [(CONFIG_OFF + 0x40, b"\xef\xbe")]
    assert cfg.read(4096, 4) == 0xFFFFFFFF and cfg.read(-1, 1) == 0xFF
    cfg.write(4095, 2, 0)  # beyond the region: nothing reaches the device
    assert len(fake.writes) == 1
    fake.config = fake.config[:0x100]  # a short read (the region ends) pads with all-ones
    assert cfg.read(0xFE, 4) == 0xFFFF0000 | int.from_bytes(fake.config[0xFE:0x100], "little")
    dev.close()


def test_bars_mmap_when_allowed_else_read_write(tmp_path: Path) -> None:
    fake, dev = open_device(tmp_path)
    io, mem = dev.bar(0), dev.bar(1)
    assert io is not None and mem is not None and dev.bar(2) is None  # BAR2 empty
    assert io.map is None and mem.map is not None
    io.write(4, 4, 0xCAFE)
    assert fake.writes == [((0 << 40) + 4, (0xCAFE).to_bytes(4, "little"))]
    assert io.read(4, 2) == 0xCAFE and io.read(0xFF, 2) == 0xFFFF
    mem.write(0x10, 8, 0x1122334455667788)
    assert mem.read(0x10, 8) == 0x1122334455667788 and fake.mmaps[0][0x10] == 0x88
    dev.close()
    assert mem.map is None


def test_reset_only_when_the_device_supports_it(tmp_path: Path) -> None:
    fake, dev = open_device(tmp_path)
    assert dev.reset() and fake.resets == 1
    dev.close()
    fake2 = FakeVfio(config_bytes())
    fake2.device_flags = abi.VFIO_DEVICE_FLAGS_PCI
    _, dev2 = open_device(tmp_path / "b", fake2)
    assert not dev2.reset() and fake2.resets == 0
    dev2.close()


def test_source_for_selects_vfio_for_vfio_pci_bound_devices(tmp_path: Path) -> None:
    for driver, want in (("vfio-pci", VfioConfigSource), ("e1000e", SysfsConfigSource)):
        root = make_sysfs(tmp_path / driver, driver=driver)
        dev = probe_sysfs(root).get(PciAddress.parse(NAME))
        assert dev is not None and dev.driver == driver
        src = source_for(dev, vfio=True, vfio_os=FakeVfio(config_bytes()))
        assert isinstance(src, want)
        # The privileged view (vfio=False) never opens VFIO: it reads sysfs.
        assert isinstance(source_for(dev), SysfsConfigSource)
        if isinstance(src, VfioConfigSource):
            src.device.close()


# -- the interrupt source --------------------------------------------------------------------
class Heard:
    """Listener that records what it hears and lets the test wait for it."""

    def __init__(self, src: VfioInterruptSource) -> None:
        self.intx: list[bool] = []
        self.msi: list[int] = []
        self.cond = threading.Condition()
        src.intx_listeners.append(self._intx)
        src.msi_listeners.append(self._msi)

    def _intx(self, level: bool) -> None:
        with self.cond:
            self.intx.append(level)
            self.cond.notify_all()

    def _msi(self, vector: int) -> None:
        with self.cond:
            self.msi.append(vector)
            self.cond.notify_all()

    def wait(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.intx) + len(self.msi) >= n, WAIT)


def source(tmp: Path, fake: FakeVfio | None = None) -> tuple[FakeVfio, VfioDevice, Any, Heard]:
    fake, dev = open_device(tmp, fake)
    src = dev.interrupts()
    return fake, dev, src, Heard(src)


def test_intx_automasked_until_unmask_and_resignals_while_asserted(tmp_path: Path) -> None:
    fake, dev, src, heard = source(tmp_path)
    [(index, flags, start, count, fds)] = fake.irq_calls()
    assert (index, flags, start, count) == (INTX, TRIGGER_FDS, 0, 1) and fds[0] >= 0
    assert fake.set_line(True)
    heard.wait(1)
    assert heard.intx == [True] and src.level  # auto-masked: in service
    assert not fake.set_line(True)  # masked: the kernel signals nothing more
    src.unmask()  # the guest's EOI
    assert fake.irq_calls() == [(INTX, UNMASK, 0, 1, [])]
    heard.wait(2)  # still asserted: the line fires again by itself
    assert heard.intx == [True, True] and src.level
    fake.set_line(False)
    src.unmask()
    assert not src.level and not fake.masked and heard.intx == [True, True]
    dev.close()


def test_msi_and_msix_switch_the_eventfd_sets(tmp_path: Path) -> None:
    fake, dev, src, heard = source(tmp_path)
    [(_, _, _, _, [intx_fd])] = fake.irq_calls()
    src.configure_msi(False, 4)
    src.msi_enabled = True
    # INTx off first (vfio-pci refuses MSI while INTx triggers), then 4 vectors.
    calls = fake.irq_calls()
    assert calls[0] == (INTX, TRIGGER_OFF, 0, 0, [])
    assert calls[1][:4] == (MSI, TRIGGER_FDS, 0, 4) and len(set(calls[1][4])) == 4
    assert src.msi_enabled and not src.level
    assert fake.fire_msi(2) and fake.fire_msi(0)
    heard.wait(2)
    assert sorted(heard.msi) == [0, 2] and heard.intx == []
    msi_fds = calls[1][4]
    src.msi_enabled = False
    calls = fake.irq_calls()
    assert calls == [(MSI, TRIGGER_OFF, 0, 0, []), (INTX, TRIGGER_FDS, 0, 1, [intx_fd])]
    assert not set(msi_fds) & set(src._tags)  # the vector eventfds are retired
    # MSI-X: asks for the guest's table size, capped at what VFIO offers (8).
    src.configure_msi(True, 16)
    src.msi_enabled = True
    calls = fake.irq_calls()
    assert calls[1][:4] == (MSIX, TRIGGER_FDS, 0, 8)
    assert fake.fire_msi(7)
    heard.wait(3)
    assert heard.msi[-1] == 7
    dev.close()


def test_msi_enable_failure_falls_back_to_intx_without_raising(tmp_path: Path) -> None:
    fake, dev, src, heard = source(tmp_path)
    fake.fail.add((abi.VFIO_DEVICE_SET_IRQS, MSI))
    src.configure_msi(False, 1)
    src.msi_enabled = True  # a guest-driven switch: logged, never raised
    assert not src.msi_enabled and fake.triggers.keys() == {INTX}
    assert fake.set_line(True)
    heard.wait(1)
    assert heard.intx == [True]
    dev.close()


def test_close_leaves_no_thread_or_fd_behind(tmp_path: Path) -> None:
    before = open_fds()
    threads = threading.active_count()
    fake, dev, src, _heard = source(tmp_path)
    src.configure_msi(True, 4)
    src.msi_enabled = True
    fake.irq_calls()
    assert src.running and threading.active_count() == threads + 1
    dev.close()
    assert fake.irq_calls() == [(MSIX, TRIGGER_OFF, 0, 0, []), (INTX, TRIGGER_OFF, 0, 0, [])]
    assert not src.running and threading.active_count() == threads
    assert open_fds() == before and fake.fds == {} and fake.triggers == {}
    src.unmask()
    src.msi_enabled = True  # after close: nothing happens, nothing raises
    assert fake.irq_calls() == []


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("line"), st.booleans()),
        st.tuples(st.just("unmask"), st.just(0)),
        st.tuples(st.just("msi"), st.integers(0, 40)),
        st.tuples(st.just("msix"), st.integers(0, 40)),
        st.tuples(st.just("off"), st.just(0)),
        st.tuples(st.just("vector"), st.integers(0, 9)),
        st.tuples(st.just("fail"), st.sampled_from([MSI, MSIX])),
    ),
    max_size=25,
)


@settings(max_examples=30, deadline=None)
@given(OPS)
def test_any_sequence_never_raises_and_host_state_matches(ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        before = open_fds()
        fake, dev, src, heard = source(Path(d))
        for op, v in ops:
            if op == "line":
                fake.set_line(bool(v))
            elif op == "unmask":
                src.unmask()  # re-signals a line still asserted
            elif op in ("msi", "msix"):
                src.configure_msi(op == "msix", v)
                src.msi_enabled = True
            elif op == "off":
                src.msi_enabled = False  # INTx back on: signals a line still asserted
            elif op == "vector":
                fake.fire_msi(v)
            else:
                fake.fail.add((abi.VFIO_DEVICE_SET_IRQS, v))
            heard.wait(fake.signals)  # every signal heard (once) before the next step
            # Invariants: exactly the active index triggers at the host, the source's
            # eventfds are exactly those, and INTx is in service only when masked at VFIO.
            active = {src.msi_index} if src.msi_enabled else {INTX}
            assert set(fake.triggers) == active
            assert set(src._tags) == {fd for fds in fake.triggers.values() for fd in fds}
            assert not src.level or (fake.masked and not src.msi_enabled)
        assert len(heard.intx) + len(heard.msi) == fake.signals
        dev.close()
        assert open_fds() == before and not src.running


# -- an assigned device on VFIO --------------------------------------------------------------
SLOT = PciAddress(0, 0, 3, 0)
PIIX3 = PciAddress(0, 0, 1, 0)
IRQ = 11


def assigned(tmp: Path) -> tuple[FakeVfio, PcMachine, AssignedDevice, Heard]:
    root = make_sysfs(tmp)
    host: HostDevice | None = probe_sysfs(root).get(PciAddress.parse(NAME))
    assert host is not None
    fake = FakeVfio(config_bytes())
    m = PcMachine()
    src = source_for(host, vfio=True, vfio_os=fake)
    ad = AssignedDevice(m, host, src, "user")
    assert isinstance(ad.irq, VfioInterruptSource)
    heard = Heard(ad.irq)  # after the device's own listeners: heard means handled
    with m.lock:
        for port, words in ((0x20, (0x11, 0x08, 0x04, 0x01)), (0xA0, (0x11, 0x70, 0x02, 0x01))):
            m.ports.write(port, 1, words[0])
            for w in words[1:]:
                m.ports.write(port + 1, 1, w)
            m.ports.write(port + 1, 1, 0)
        m.ports.write(0x4D1, 1, 1 << (IRQ - 8))  # ELCR: IRQ 11 level-triggered
        cfg_write(m, PIIX3, 0x60, 4, IRQ * 0x01010101)  # PIRQA-D -> IRQ 11
        cfg_write(m, SLOT, 0x10, 4, 0xD000)
        cfg_write(m, SLOT, 0x14, 4, 0xE0000000)
        cfg_write(m, SLOT, 0x04, 2, 0x0007)
    return fake, m, ad, heard


def eoi(m: PcMachine) -> None:
    with m.lock:
        m.ports.write(0xA0, 1, 0x20)
        m.ports.write(0x20, 1, 0x20)


def test_assigned_intx_held_in_service_and_unmasked_on_guest_eoi(tmp_path: Path) -> None:
    """Issue 7 item 5: level INTx is masked while in service and unmasked on the guest's
    EOI (PIC, through PIRQ routing): a line still asserted interrupts again, none sticks."""
    fake, m, ad, heard = assigned(tmp_path)
    assert ad.fn.address() == "00:03.0" and cfg_read(m, SLOT, 0) == 0x10D38086
    with m.lock:
        m.ports.write(0xD004, 4, 0x1234)  # I/O BAR moved by the guest reaches VFIO region 0
    assert (4, (0x1234).to_bytes(4, "little")) in fake.writes
    fake.irq_calls()
    assert fake.set_line(True)
    heard.wait(1)
    with m.lock:
        assert m.pic.intr.level and ad.masked
        assert m.pic.acknowledge() == 0x70 + IRQ - 8
    eoi(m)  # handler did not quiet the device: VFIO unmasks, the line fires again
    assert fake.irq_calls() == [(INTX, UNMASK, 0, 1, [])]
    heard.wait(2)
    with m.lock:
        assert m.pic.intr.level and ad.masked
        assert m.pic.acknowledge() == 0x70 + IRQ - 8
    fake.set_line(False)  # the handler quiets the device
    eoi(m)
    assert fake.irq_calls() == [(INTX, UNMASK, 0, 1, [])]
    with m.lock:
        assert not m.pic.intr.level and not ad.masked and not ad.fn.intx_asserted
    ad.detach()


def test_assigned_msi_enable_reaches_vfio_and_vectors_reach_the_guest(tmp_path: Path) -> None:
    fake, m, ad, heard = assigned(tmp_path)
    fake.irq_calls()
    with m.lock:
        m.lapics[0].write(0xF0, 4, 0x1FF)
        cfg_write(m, SLOT, 0x54, 4, 0xFEE00000)
        cfg_write(m, SLOT, 0x58, 4, 0)
        cfg_write(m, SLOT, 0x5C, 2, 0x60)
        cfg_write(m, SLOT, 0x52, 2, 0x0021)  # MSI enable, 4 vectors
    calls = fake.irq_calls()
    assert calls[0] == (INTX, TRIGGER_OFF, 0, 0, []) and calls[1][:4] == (MSI, TRIGGER_FDS, 0, 4)
    assert fake.fire_msi(3)
    heard.wait(1)
    with m.lock:
        assert m.lapics[0].highest_pending() == 0x63
        cfg_write(m, SLOT, 0x52, 2, 0)
    assert fake.irq_calls()[0] == (MSI, TRIGGER_OFF, 0, 0, [])
    ad.detach()


def test_guest_reset_resets_the_vfio_device_and_detach_closes_it(tmp_path: Path) -> None:
    before = open_fds()
    fake, m, ad, heard = assigned(tmp_path)
    assert fake.set_line(True)
    heard.wait(1)
    resets = fake.resets
    with m.lock:
        m.pci_bus.reset()
    # RST#: the function is reset and INTx unmasked at VFIO; a line still asserted signals
    # again, so it is in service anew rather than stuck masked.
    assert fake.resets == resets + 1
    assert fake.irq_calls()[-1] == (INTX, UNMASK, 0, 1, [])
    heard.wait(2)
    with m.lock:
        assert ad.masked
    eoi(m)
    ad.detach()
    assert isinstance(ad.irq, VfioInterruptSource) and not ad.irq.running
    assert fake.fds == {} and open_fds() == before


def test_detach_while_an_interrupt_waits_for_the_lock_neither_deadlocks_nor_delivers(
    tmp_path: Path,
) -> None:
    """The reader thread may be inside a listener, waiting for the machine's lock, when the
    domain detaches the device: detach must not join it under that lock, and the late
    interrupt must not reach the detached function."""
    before = open_fds()
    fake, m, ad, _heard = assigned(tmp_path)
    assert isinstance(ad.irq, VfioInterruptSource)
    entered = threading.Event()
    ad.irq.intx_listeners.insert(0, lambda level: entered.set())
    detacher = threading.Thread(target=ad.detach)
    with m.lock:
        assert fake.set_line(True)
        assert entered.wait(WAIT)  # the reader is on its way into the device's listener
        detacher.start()  # detach now waits for the lock too
    detacher.join(WAIT)
    assert not detacher.is_alive() and not ad.irq.running
    with m.lock:
        assert not m.pic.intr.level and not ad.fn.intx_asserted
    assert fake.fds == {} and open_fds() == before


def test_guest_ram_is_mapped_for_dma_at_its_guest_addresses(tmp_path: Path) -> None:
    """VFIO type-1 IOMMU: the device DMAs to IOVAs; each RAM region is mapped with IOVA ==
    guest-physical address onto our own mapping of it (ROM read-only); detach unmaps."""
    fake, m, ad, _heard = assigned(tmp_path)
    assert sorted(fake.dma) == [r.gpa for r in m.memory.regions]
    for r in m.memory.regions:
        vaddr, size, flags = fake.dma[r.gpa]
        assert size == r.size
        want = abi.VFIO_DMA_MAP_FLAG_READ | (0 if r.readonly else abi.VFIO_DMA_MAP_FLAG_WRITE)
        assert flags == want
    low = m.memory.find(0x1000)
    assert low is not None and not low.readonly
    m.space.write(0x1234, 4, 0xFEEDF00D)  # what the guest wrote is what the device reads
    vaddr = fake.dma[low.gpa][0]
    assert ctypes.string_at(vaddr + 0x1234 - low.gpa, 4) == (0xFEEDF00D).to_bytes(4, "little")
    ad.detach()
    assert fake.dma == {}


def test_dma_map_failure_is_one_clear_line_and_leaks_nothing(tmp_path: Path) -> None:
    before = open_fds()
    root = make_sysfs(tmp_path)
    host = probe_sysfs(root).get(PciAddress.parse(NAME))
    assert host is not None
    fake = FakeVfio(config_bytes())
    fake.dma_error = OSError(errno.ENOMEM, "Cannot allocate memory")
    m = PcMachine()
    with pytest.raises(VfioError) as e:
        AssignedDevice(m, host, source_for(host, vfio=True, vfio_os=fake), "user")
    assert str(e.value).startswith("cannot map guest memory 0x0+")
    assert str(e.value).endswith(
        "Cannot allocate memory (raise the locked-memory limit, ulimit -l)"
    )
    assert fake.fds == {} and open_fds() == before
    assert m.pci_bus.functions.get(SLOT.devfn) is None  # nothing half-attached


@pytest.mark.parametrize("group", [None, "7"])
def test_hypervisor_assigning_a_vfio_device_it_cannot_open_fails_in_one_line(
    tmp_path: Path, group: str | None
) -> None:
    """The real VFIO layer on this host (no vfio-pci devices, no IOMMU groups): a hidden
    device bound to vfio-pci is opened through VFIO, and why it cannot be is one line."""
    from southbridge.domains.config import DomainConfig, HypervisorConfig
    from southbridge.domains.hypervisor import Hypervisor, HypervisorError
    from southbridge.host.hide import parse_hide

    if group is not None and Path("/dev/vfio/vfio").exists():
        pytest.skip("this host has VFIO: the missing-container error cannot be shown")
    root = make_sysfs(tmp_path, group=group)
    cfg = HypervisorConfig(
        hide=parse_hide("02:00.0"), sysfs=str(root), domains=[DomainConfig("user")]
    )
    hv = Hypervisor(cfg)
    with pytest.raises(HypervisorError) as e:
        hv.build()
    why = (
        "no IOMMU group (is the IOMMU enabled, intel_iommu=on?)"
        if group is None
        else "/dev/vfio/vfio missing (is the vfio-pci module loaded?)"
    )
    assert str(e.value) == f"user: cannot assign {NAME}: {why}"
    assert hv.assignments.status(PciAddress.parse(NAME)) == "hidden"  # the claim is released


def test_interrupt_setup_failure_is_a_vfio_error_and_leaks_nothing(tmp_path: Path) -> None:
    before = open_fds()
    root = make_sysfs(tmp_path)
    host = probe_sysfs(root).get(PciAddress.parse(NAME))
    assert host is not None
    fake = FakeVfio(config_bytes())
    fake.fail.add((abi.VFIO_DEVICE_SET_IRQS, INTX))
    m = PcMachine()
    with pytest.raises(VfioError, match=r"^VFIO interrupt setup failed: Invalid argument$"):
        AssignedDevice(m, host, source_for(host, vfio=True, vfio_os=fake), "user")
    assert fake.fds == {} and fake.dma == {} and open_fds() == before
