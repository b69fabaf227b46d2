"""A host PCI function bound to vfio-pci: its config space, BAR regions, reset and interrupts.

`VfioDevice` opens the container (/dev/vfio/vfio), the function's IOMMU group (the sysfs
`iommu_group` link), attaches the group to the container with the type-1 IOMMU and gets the
device fd (linux Documentation/driver-api/vfio.rst, "VFIO Usage Example"). Config space and
BARs are regions of that fd at the offsets VFIO_DEVICE_GET_REGION_INFO reports.

`VfioInterruptSource` has the interface of the simulated host's `InterruptSource`: INTx is an
eventfd VFIO signals and masks at once (the level interrupt is auto-masked); the guest's EOI
calls `unmask()`, and a line still asserted signals again by itself. MSI/MSI-X replace INTx
with one eventfd per vector. A reader thread waits on the eventfds and calls the listeners.

Every system call goes through a `VfioOs` so tests drive the logic without vfio-pci devices.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import mmap
import os
import select
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from southbridge.core.device import BusDevice, ones
from southbridge.core.ratelog import RateLimitedLog
from southbridge.host import vfio_abi as abi

logger = logging.getLogger("southbridge.vfio")

DEFAULT_VFIO_DIR = "/dev/vfio"


class VfioError(ValueError):
    """VFIO cannot give us the device: one clear line for the user (the caller names the
    device)."""


class VfioOs(Protocol):
    """The system calls VFIO needs (injectable: tests pass a fake)."""

    def open(self, path: str, flags: int) -> int: ...

    def close(self, fd: int) -> None: ...

    def ioctl(self, fd: int, request: int, arg: Any = None) -> int: ...

    def pread(self, fd: int, size: int, offset: int) -> bytes: ...

    def pwrite(self, fd: int, data: bytes, offset: int) -> int: ...

    def mmap(self, fd: int, size: int, offset: int) -> mmap.mmap | None: ...


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_libc.ioctl.restype = ctypes.c_int


class HostOs:
    """The real system calls."""

    def open(self, path: str, flags: int) -> int:
        return os.open(path, flags | os.O_CLOEXEC)

    def close(self, fd: int) -> None:
        os.close(fd)

    def ioctl(self, fd: int, request: int, arg: Any = None) -> int:
        # `arg` is None, an int, or a ctypes object passed by reference (VFIO's argsz style).
        ptr = arg if arg is None or isinstance(arg, int) else ctypes.addressof(arg)
        ret: int = _libc.ioctl(fd, request, ptr)
        if ret < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return ret

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def mmap(self, fd: int, size: int, offset: int) -> mmap.mmap | None:
        return mmap.mmap(fd, size, mmap.MAP_SHARED, offset=offset)


def _why(e: OSError) -> str:
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return e.strerror or str(e)


class DmaRegion(Protocol):
    """Guest RAM as `core.memory.RamRegion` has it: where, how big, its host mapping."""

    gpa: int
    size: int
    readonly: bool
    buf: mmap.mmap


def _host_address(buf: mmap.mmap) -> int:
    view = ctypes.c_char.from_buffer(buf)
    try:
        return ctypes.addressof(view)
    finally:
        del view  # release the buffer export, so the mmap can still be closed


class VfioRegion(BusDevice):
    """One region of the device fd (a BAR): mmap'ed when VFIO allows it, else pread/pwrite.
    Accesses beyond the region read as all-ones and are dropped, as nothing decodes them."""

    io_sizes = frozenset({1, 2, 4, 8})

    def __init__(self, dev: VfioDevice, info: abi.vfio_region_info, name: str) -> None:
        self.dev = dev
        self.offset = int(info.offset)
        self.size = int(info.size)
        self.flags = int(info.flags)
        self.name = name
        self.map: mmap.mmap | None = None
        if self.flags & abi.VFIO_REGION_INFO_FLAG_MMAP and self.size:
            try:
                self.map = dev.os.mmap(dev.fd, self.size, self.offset)
            except OSError as e:
                logger.info("%s: not mmap'ed (%s), using read/write", name, _why(e))

    def read(self, offset: int, size: int) -> int:
        if not 0 <= offset <= self.size - size or not self.flags & abi.VFIO_REGION_INFO_FLAG_READ:
            return ones(size)
        if self.map is not None:
            return int.from_bytes(self.map[offset : offset + size], "little")
        return self.dev.read_region(self.offset + offset, size, self.name)

    def write(self, offset: int, size: int, value: int) -> None:
        if not 0 <= offset <= self.size - size or not self.flags & abi.VFIO_REGION_INFO_FLAG_WRITE:
            return
        data = (value & ones(size)).to_bytes(size, "little")
        if self.map is not None:
            self.map[offset : offset + size] = data
        else:
            self.dev.write_region(self.offset + offset, data, self.name)

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None


class VfioConfigSource:
    """The config region as a `ConfigSource`: reads see the live device (through vfio-pci's
    own virtualization); what is written was already passed by the assignment's filter."""

    def __init__(self, dev: VfioDevice) -> None:
        self.device = dev
        info = dev.regions.get(abi.VFIO_PCI_CONFIG_REGION_INDEX)
        if info is None or not info.size:
            raise VfioError("VFIO reports no config region")
        self.offset = int(info.offset)
        self.size = 4096 if info.size >= 4096 else 256

    def read(self, offset: int, size: int) -> int:
        if offset < 0 or offset + size > self.size:
            return ones(size)
        return self.device.read_region(self.offset + offset, size, "config")

    def write(self, offset: int, size: int, value: int) -> None:
        if offset >= 0 and offset + size <= self.size:
            data = (value & ones(size)).to_bytes(size, "little")
            self.device.write_region(self.offset + offset, data, "config")


class VfioDevice:
    """One vfio-pci function, opened for a domain; `close()` gives it back."""

    def __init__(
        self,
        name: str,
        sysfs_path: str | os.PathLike[str],
        vfio_os: VfioOs | None = None,
        vfio_dir: str = DEFAULT_VFIO_DIR,
    ) -> None:
        self.name = name  # the sysfs name, e.g. 0000:02:00.0 (GET_DEVICE_FD wants it)
        self.os: VfioOs = vfio_os if vfio_os is not None else HostOs()
        self.log = RateLimitedLog(logger)
        self.container = self.group = self.fd = -1
        self.regions: dict[int, abi.vfio_region_info] = {}
        self.irqs: dict[int, abi.vfio_irq_info] = {}
        self.flags = 0
        self._irq: VfioInterruptSource | None = None
        self._bars: list[VfioRegion] = []
        self.dma: list[tuple[int, int]] = []  # (iova, size) mapped in the container
        try:
            self._open(Path(sysfs_path), vfio_dir)
        except BaseException:
            self.close()
            raise

    def _open(self, sysfs: Path, vfio_dir: str) -> None:
        try:
            group = os.path.basename(os.readlink(sysfs / "iommu_group"))
        except OSError:
            raise VfioError("no IOMMU group (is the IOMMU enabled, intel_iommu=on?)") from None
        self.container = self._open_node(f"{vfio_dir}/vfio", "the VFIO container")
        version = self._ioctl(self.container, abi.VFIO_GET_API_VERSION, None, "API version")
        if version != abi.VFIO_API_VERSION:
            raise VfioError(f"VFIO API version {version}, need {abi.VFIO_API_VERSION}")
        if not self._ioctl(
            self.container, abi.VFIO_CHECK_EXTENSION, abi.VFIO_TYPE1_IOMMU, "check extension"
        ):
            raise VfioError("the VFIO container lacks the type-1 IOMMU")
        self.group = self._open_node(f"{vfio_dir}/{group}", f"IOMMU group {group}")
        status = abi.vfio_group_status(ctypes.sizeof(abi.vfio_group_status))
        self._ioctl(self.group, abi.VFIO_GROUP_GET_STATUS, status, "group status")
        if not status.flags & abi.VFIO_GROUP_FLAGS_VIABLE:
            raise VfioError(
                f"IOMMU group {group} is not viable (bind every device in it to vfio-pci)"
            )
        fd = ctypes.c_int32(self.container)
        self._ioctl(self.group, abi.VFIO_GROUP_SET_CONTAINER, fd, "set container")
        self._ioctl(self.container, abi.VFIO_SET_IOMMU, abi.VFIO_TYPE1_IOMMU, "set IOMMU")
        arg = ctypes.create_string_buffer(self.name.encode())
        self.fd = self._ioctl(self.group, abi.VFIO_GROUP_GET_DEVICE_FD, arg, "get device fd")
        info = abi.vfio_device_info(ctypes.sizeof(abi.vfio_device_info))
        self._ioctl(self.fd, abi.VFIO_DEVICE_GET_INFO, info, "device info")
        if not info.flags & abi.VFIO_DEVICE_FLAGS_PCI:
            raise VfioError("not a vfio-pci device")
        self.flags = int(info.flags)
        for i in range(min(info.num_regions, abi.VFIO_PCI_NUM_REGIONS)):
            r = abi.vfio_region_info(ctypes.sizeof(abi.vfio_region_info), 0, i)
            self._ioctl(self.fd, abi.VFIO_DEVICE_GET_REGION_INFO, r, f"region {i} info")
            self.regions[i] = r
        for i in range(min(info.num_irqs, abi.VFIO_PCI_NUM_IRQS)):
            q = abi.vfio_irq_info(ctypes.sizeof(abi.vfio_irq_info), 0, i)
            self._ioctl(self.fd, abi.VFIO_DEVICE_GET_IRQ_INFO, q, f"IRQ {i} info")
            self.irqs[i] = q

    def _open_node(self, path: str, what: str) -> int:
        try:
            return self.os.open(path, os.O_RDWR)
        except FileNotFoundError:
            hint = " (is the vfio-pci module loaded?)" if path.endswith("/vfio") else ""
            raise VfioError(f"{path} missing{hint}") from None
        except OSError as e:
            raise VfioError(f"cannot open {what} {path}: {_why(e)}") from None

    def _ioctl(self, fd: int, request: int, arg: Any, what: str) -> int:
        try:
            return self.os.ioctl(fd, request, arg)
        except OSError as e:
            raise VfioError(f"VFIO {what} failed: {_why(e)}") from None

    # -- regions -------------------------------------------------------------------------
    def read_region(self, offset: int, size: int, what: str) -> int:
        try:
            data = self.os.pread(self.fd, size, offset)
        except OSError as e:
            self.log.warning(f"rd:{what}", "%s: %s read failed: %s", self.name, what, _why(e))
            data = b""
        return int.from_bytes(data.ljust(size, b"\xff"), "little")

    def write_region(self, offset: int, data: bytes, what: str) -> None:
        try:
            self.os.pwrite(self.fd, data, offset)
        except OSError as e:
            self.log.warning(f"wr:{what}", "%s: %s write failed: %s", self.name, what, _why(e))

    def config(self) -> VfioConfigSource:
        return VfioConfigSource(self)

    def bar(self, index: int) -> VfioRegion | None:
        """BAR `index` as a bus device, or None when VFIO reports it empty."""
        info = self.regions.get(index)
        if index > abi.VFIO_PCI_BAR5_REGION_INDEX or info is None or not info.size:
            return None
        region = VfioRegion(self, info, f"{self.name}.bar{index}")
        self._bars.append(region)
        return region

    def map_dma(self, regions: Iterable[DmaRegion]) -> None:
        """Map guest RAM into the device's IOMMU at guest-physical addresses (IOVA == GPA),
        so the device's DMA reaches guest memory and nothing else; ROM read-only."""
        for r in regions:
            flags = abi.VFIO_DMA_MAP_FLAG_READ | (0 if r.readonly else abi.VFIO_DMA_MAP_FLAG_WRITE)
            arg = abi.vfio_iommu_type1_dma_map(
                ctypes.sizeof(abi.vfio_iommu_type1_dma_map),
                flags,
                _host_address(r.buf),
                r.gpa,
                r.size,
            )
            try:
                self.os.ioctl(self.container, abi.VFIO_IOMMU_MAP_DMA, arg)
            except OSError as e:
                hint = (
                    " (raise the locked-memory limit, ulimit -l)" if e.errno == errno.ENOMEM else ""
                )
                raise VfioError(
                    f"cannot map guest memory 0x{r.gpa:x}+0x{r.size:x} for DMA: {_why(e)}{hint}"
                ) from None
            self.dma.append((r.gpa, r.size))

    def _unmap_dma(self) -> None:
        for iova, size in self.dma:
            arg = abi.vfio_iommu_type1_dma_unmap(
                ctypes.sizeof(abi.vfio_iommu_type1_dma_unmap), 0, iova, size
            )
            try:
                self.os.ioctl(self.container, abi.VFIO_IOMMU_UNMAP_DMA, arg)
            except OSError as e:
                self.log.warning("unmap", "%s: DMA unmap failed: %s", self.name, _why(e))
        self.dma = []

    def reset(self) -> bool:
        """VFIO_DEVICE_RESET when the device supports one; whether it was reset."""
        if not self.flags & abi.VFIO_DEVICE_FLAGS_RESET or self.fd < 0:
            return False
        try:
            self.os.ioctl(self.fd, abi.VFIO_DEVICE_RESET, None)
        except OSError as e:
            self.log.warning("reset", "%s: reset failed: %s", self.name, _why(e))
            return False
        return True

    def interrupts(self) -> VfioInterruptSource:
        if self._irq is None:
            try:
                self._irq = VfioInterruptSource(self.os, self.fd, self.irqs, self.name)
            except OSError as e:
                raise VfioError(f"VFIO interrupt setup failed: {_why(e)}") from None
        return self._irq

    def close(self) -> None:
        if self._irq is not None:
            self._irq.close()
            self._irq = None
        for bar in self._bars:
            bar.close()
        self._bars = []
        if self.container >= 0:
            self._unmap_dma()
        for attr in ("fd", "group", "container"):  # device first: the group is still set
            fd = getattr(self, attr)
            if fd >= 0:
                setattr(self, attr, -1)
                with contextlib.suppress(OSError):
                    self.os.close(fd)


def _eventfd() -> int:
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


_INTX = -1  # the tag of the INTx eventfd; MSI eventfds are tagged with their vector


class VfioInterruptSource:
    """A vfio-pci function's interrupts, with the simulated `InterruptSource`'s interface.

    Lock order: the machine's lock, then this source's (the listeners are called without
    it, since they take the machine's lock).
    """

    def __init__(
        self, vfio_os: VfioOs, device_fd: int, irqs: dict[int, abi.vfio_irq_info], name: str
    ) -> None:
        self.os = vfio_os
        self.fd = device_fd
        self.name = name
        self.log = RateLimitedLog(logger)
        self.level = False
        self.intx_listeners: list[Callable[[bool], None]] = []
        self.msi_listeners: list[Callable[[int], None]] = []
        self.msix = False  # which message kind the next enable asks VFIO for
        self.vectors = 1
        self._counts = {
            i: int(q.count) for i, q in irqs.items() if q.flags & abi.VFIO_IRQ_INFO_EVENTFD
        }
        self._msi_index: int | None = None  # the VFIO index whose eventfds are live
        self._lock = threading.Lock()
        self._tags: dict[int, int] = {}  # eventfd -> _INTX or vector
        self._epoll = select.epoll()
        self._wake = _eventfd()
        self._epoll.register(self._wake, select.EPOLLIN)
        self._stop = False
        self._intx = -1
        try:
            if self._counts.get(abi.VFIO_PCI_INTX_IRQ_INDEX, 0):
                self._intx = _eventfd()
                self._enable_intx()
        except BaseException:
            self._release_fds()
            raise
        self._thread = threading.Thread(target=self._run, name=f"vfio-irq-{name}", daemon=True)
        self._thread.start()

    # -- VFIO_DEVICE_SET_IRQS ------------------------------------------------------------
    def _set_irqs(self, index: int, flags: int, count: int, fds: list[int] | None = None) -> None:
        self.os.ioctl(self.fd, abi.VFIO_DEVICE_SET_IRQS, abi.irq_set(index, flags, 0, count, fds))

    def _enable_intx(self) -> None:
        trigger = abi.VFIO_IRQ_SET_DATA_EVENTFD | abi.VFIO_IRQ_SET_ACTION_TRIGGER
        self._set_irqs(abi.VFIO_PCI_INTX_IRQ_INDEX, trigger, 1, [self._intx])
        self._watch(self._intx, _INTX)

    def _disable(self, index: int) -> None:
        none = abi.VFIO_IRQ_SET_DATA_NONE | abi.VFIO_IRQ_SET_ACTION_TRIGGER
        try:
            self._set_irqs(index, none, 0)
        except OSError as e:
            self.log.warning(f"off:{index}", "%s: IRQ index %d off: %s", self.name, index, e)

    def _watch(self, fd: int, tag: int) -> None:
        self._tags[fd] = tag
        self._epoll.register(fd, select.EPOLLIN)

    def _unwatch(self, fd: int) -> None:
        self._tags.pop(fd, None)
        with contextlib.suppress(OSError):
            self._epoll.unregister(fd)

    # -- the interface -------------------------------------------------------------------
    def configure_msi(self, msix: bool, vectors: int) -> None:
        """Which messages the guest enabled (MSI or MSI-X) and how many vectors it has: used
        by the next enable (a switch between the two goes through disabled, as in VFIO)."""
        self.msix, self.vectors = msix, max(1, vectors)

    @property
    def msi_index(self) -> int | None:
        """The VFIO index (MSI or MSI-X) whose eventfds are live, None while INTx is."""
        return self._msi_index

    @property
    def msi_enabled(self) -> bool:
        return self._msi_index is not None

    @msi_enabled.setter
    def msi_enabled(self, on: bool) -> None:
        with self._lock:
            if on == self.msi_enabled or self._stop:
                return
            if on:
                self._to_msi()
            else:
                self._to_intx()

    def _to_msi(self) -> None:
        index = abi.VFIO_PCI_MSIX_IRQ_INDEX if self.msix else abi.VFIO_PCI_MSI_IRQ_INDEX
        count = min(self.vectors, self._counts.get(index, 0))
        if not count:
            self.log.warning(f"nomsi:{index}", "%s: VFIO offers no vectors at index %d",
                             self.name, index)  # fmt: skip
            return
        # vfio-pci refuses MSI while INTx is on (EINVAL): INTx goes first, as QEMU does.
        if self._intx >= 0:
            self._disable(abi.VFIO_PCI_INTX_IRQ_INDEX)
            self._unwatch(self._intx)
        self.level = False
        fds = [_eventfd() for _ in range(count)]
        trigger = abi.VFIO_IRQ_SET_DATA_EVENTFD | abi.VFIO_IRQ_SET_ACTION_TRIGGER
        try:
            self._set_irqs(index, trigger, count, fds)
        except OSError as e:
            self.log.warning(f"msi:{index}", "%s: MSI enable failed: %s", self.name, e)
            for fd in fds:
                os.close(fd)
            self._restore_intx()
            return
        for vector, fd in enumerate(fds):
            self._watch(fd, vector)
        self._msi_index = index

    def _to_intx(self) -> None:
        assert self._msi_index is not None
        self._disable(self._msi_index)
        self._msi_index = None
        for fd, tag in list(self._tags.items()):
            if tag != _INTX:
                self._unwatch(fd)
                os.close(fd)
        self._restore_intx()

    def _restore_intx(self) -> None:
        if self._intx < 0:
            return
        with contextlib.suppress(BlockingIOError):  # a signal from before the switch is stale
            os.eventfd_read(self._intx)
        try:
            self._enable_intx()
        except OSError as e:
            self.log.warning("intx", "%s: INTx enable failed: %s", self.name, e)

    def unmask(self) -> None:
        """The guest's EOI: VFIO unmasks the line; if the device still asserts it, the
        eventfd fires again and the listeners hear a new rising level."""
        with self._lock:
            if self._intx < 0 or self.msi_enabled or self._stop:
                return
            self.level = False
            unmask = abi.VFIO_IRQ_SET_DATA_NONE | abi.VFIO_IRQ_SET_ACTION_UNMASK
            try:
                self._set_irqs(abi.VFIO_PCI_INTX_IRQ_INDEX, unmask, 1)
            except OSError as e:
                self.log.warning("unmask", "%s: INTx unmask failed: %s", self.name, e)

    # -- the reader thread ---------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                events = self._epoll.poll()
            except InterruptedError:
                continue
            except (OSError, ValueError):  # closed under us
                return
            for fd, _mask in events:
                if fd == self._wake:
                    return
                self._deliver(fd)

    def _deliver(self, fd: int) -> None:
        with self._lock:
            tag = self._tags.get(fd)
            if tag is None or self._stop:
                return  # an eventfd retired while this event was in flight
            try:
                os.eventfd_read(fd)
            except BlockingIOError:
                return
            if tag == _INTX:
                if self.msi_enabled:
                    return
                self.level = True  # VFIO has masked the line until unmask()
        if tag == _INTX:
            for fn in list(self.intx_listeners):
                fn(True)
        else:
            for vec_fn in list(self.msi_listeners):
                vec_fn(tag)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Interrupts off at VFIO, the reader stopped, every eventfd closed."""
        with self._lock:
            if self._stop:
                return
            self._stop = True
            if self._msi_index is not None:
                self._disable(self._msi_index)
                self._msi_index = None
            if self._intx >= 0:
                self._disable(abi.VFIO_PCI_INTX_IRQ_INDEX)
            os.eventfd_write(self._wake, 1)
        if threading.current_thread() is not self._thread:
            self._thread.join()
        self._release_fds()

    def _release_fds(self) -> None:
        for fd in list(self._tags):
            self._unwatch(fd)
            if fd != self._intx:
                os.close(fd)
        if self._intx >= 0:
            os.close(self._intx)
            self._intx = -1
        if self._wake >= 0:
            os.close(self._wake)
            self._wake = -1
        self._epoll.close()


__all__ = [
    "HostOs",
    "VfioConfigSource",
    "VfioDevice",
    "VfioError",
    "VfioInterruptSource",
    "VfioOs",
    "VfioRegion",
]
