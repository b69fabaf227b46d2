"""Where a host function's config space comes from: a sysfs config file, a simulated
device, or an inventory snapshot (an lspci dump). All of them are `ConfigSource`s.

Writes to a sysfs file happen only when the caller says the tree is a fake one: nothing in
this project ever writes the real /sys (HACKING.md), so a real source drops and logs them.
"""

from __future__ import annotations

import logging
import os

from southbridge.core.device import ones
from southbridge.core.ratelog import RateLimitedLog
from southbridge.host.inventory import HostDevice
from southbridge.host.simulated import SimulatedHost
from southbridge.host.vfio import VfioDevice, VfioOs
from southbridge.pci.config import PCI_CONFIG_SIZE, PCIE_CONFIG_SIZE
from southbridge.pci.passthrough import ConfigSource

logger = logging.getLogger("southbridge.domains")


def _config_size(n: int) -> int:
    # A non-root reader sees 64 bytes of a real device: the model still wants a full
    # conventional space, and the unreadable bytes read as all-ones.
    return PCIE_CONFIG_SIZE if n >= PCIE_CONFIG_SIZE else PCI_CONFIG_SIZE


class SysfsConfigSource:
    """A sysfs `config` file read with pread (so reads see the device's live registers)."""

    def __init__(self, path: str | os.PathLike[str], writable: bool = False) -> None:
        self.path = os.fspath(path)
        self.fd = os.open(self.path, os.O_RDWR if writable else os.O_RDONLY)
        self.writable = writable
        self.readable = os.fstat(self.fd).st_size or len(os.pread(self.fd, 4096, 0))
        self.size = _config_size(self.readable)
        self.log = RateLimitedLog(logger)

    def read(self, offset: int, size: int) -> int:
        if offset < 0 or offset + size > self.size:
            return ones(size)
        try:
            data = os.pread(self.fd, size, offset)
        except OSError:
            data = b""
        return int.from_bytes(data.ljust(size, b"\xff"), "little")

    def write(self, offset: int, size: int, value: int) -> None:
        if not self.writable or offset < 0 or offset + size > self.size:
            self.log.warning(
                f"ro:{self.path}",
                "%s: config write at 0x%x not made (read-only)",
                self.path,
                offset,
            )
            return
        os.pwrite(self.fd, (value & ones(size)).to_bytes(size, "little"), offset)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class SnapshotConfigSource:
    """The bytes an inventory captured (an lspci dump): reads only; writes are dropped."""

    def __init__(self, config: bytes) -> None:
        self.data = bytes(config)
        self.size = _config_size(len(self.data))

    def read(self, offset: int, size: int) -> int:
        if offset < 0 or offset + size > self.size:
            return ones(size)
        chunk = self.data[offset : offset + size]
        return int.from_bytes(chunk.ljust(size, b"\xff"), "little")

    def write(self, offset: int, size: int, value: int) -> None:
        return None

    def close(self) -> None:
        return None


def source_for(
    dev: HostDevice,
    sim: SimulatedHost | None = None,
    vfio: bool = False,
    vfio_os: VfioOs | None = None,
) -> ConfigSource:
    """The live source of `dev`'s config space: its simulated device when the host is
    simulated; with `vfio` (a user domain's assignment) the VFIO config region of a device
    bound to vfio-pci (a `VfioConfigSource`, whose `device` also gives BARs and interrupts;
    `VfioError` when VFIO cannot open it); else its sysfs file (read-only), else the
    inventory's snapshot."""
    if sim is not None:
        live = sim.get(dev.addr)
        if live is not None:
            return live
    if vfio and dev.driver == "vfio-pci" and dev.sysfs_path is not None:
        vdev = VfioDevice(str(dev.addr), dev.sysfs_path, vfio_os)
        try:
            return vdev.config()
        except BaseException:
            vdev.close()
            raise
    if dev.sysfs_path is not None:
        try:
            return SysfsConfigSource(dev.sysfs_path / "config")
        except OSError:
            pass
    return SnapshotConfigSource(dev.config)
