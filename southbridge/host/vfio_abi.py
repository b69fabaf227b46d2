"""The VFIO ABI as ctypes: ioctl numbers, constants and structures from linux/vfio.h.

Only what southbridge uses. `tests/test_vfio.py` compiles a C program against the system's
linux/vfio.h and checks every size, offset, ioctl number and constant here against it.
"""

from __future__ import annotations

import ctypes
import struct

c_u32 = ctypes.c_uint32
c_u64 = ctypes.c_uint64
c_s32 = ctypes.c_int32

VFIO_API_VERSION = 0
VFIO_TYPE = ord(";")
VFIO_BASE = 100


def _io(nr: int) -> int:
    # Every VFIO ioctl is _IO(VFIO_TYPE, VFIO_BASE + n): the argument size is in argsz.
    return (VFIO_TYPE << 8) | (VFIO_BASE + nr)


VFIO_GET_API_VERSION = _io(0)
VFIO_CHECK_EXTENSION = _io(1)
VFIO_SET_IOMMU = _io(2)
VFIO_GROUP_GET_STATUS = _io(3)
VFIO_GROUP_SET_CONTAINER = _io(4)
VFIO_GROUP_UNSET_CONTAINER = _io(5)
VFIO_GROUP_GET_DEVICE_FD = _io(6)
VFIO_DEVICE_GET_INFO = _io(7)
VFIO_DEVICE_GET_REGION_INFO = _io(8)
VFIO_DEVICE_GET_IRQ_INFO = _io(9)
VFIO_DEVICE_SET_IRQS = _io(10)
VFIO_DEVICE_RESET = _io(11)
VFIO_IOMMU_MAP_DMA = _io(13)
VFIO_IOMMU_UNMAP_DMA = _io(14)

VFIO_TYPE1_IOMMU = 1

VFIO_DMA_MAP_FLAG_READ = 1 << 0
VFIO_DMA_MAP_FLAG_WRITE = 1 << 1

VFIO_GROUP_FLAGS_VIABLE = 1 << 0
VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1

VFIO_DEVICE_FLAGS_RESET = 1 << 0
VFIO_DEVICE_FLAGS_PCI = 1 << 1

VFIO_REGION_INFO_FLAG_READ = 1 << 0
VFIO_REGION_INFO_FLAG_WRITE = 1 << 1
VFIO_REGION_INFO_FLAG_MMAP = 1 << 2
VFIO_REGION_INFO_FLAG_CAPS = 1 << 3

VFIO_IRQ_INFO_EVENTFD = 1 << 0
VFIO_IRQ_INFO_MASKABLE = 1 << 1
VFIO_IRQ_INFO_AUTOMASKED = 1 << 2
VFIO_IRQ_INFO_NORESIZE = 1 << 3

VFIO_IRQ_SET_DATA_NONE = 1 << 0
VFIO_IRQ_SET_DATA_BOOL = 1 << 1
VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2
VFIO_IRQ_SET_ACTION_MASK = 1 << 3
VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4
VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5
VFIO_IRQ_SET_DATA_TYPE_MASK = 0x7
VFIO_IRQ_SET_ACTION_TYPE_MASK = 0x38

# enum in vfio.h: region and IRQ indexes of a vfio-pci device
VFIO_PCI_BAR0_REGION_INDEX = 0
VFIO_PCI_BAR1_REGION_INDEX = 1
VFIO_PCI_BAR2_REGION_INDEX = 2
VFIO_PCI_BAR3_REGION_INDEX = 3
VFIO_PCI_BAR4_REGION_INDEX = 4
VFIO_PCI_BAR5_REGION_INDEX = 5
VFIO_PCI_ROM_REGION_INDEX = 6
VFIO_PCI_CONFIG_REGION_INDEX = 7
VFIO_PCI_VGA_REGION_INDEX = 8
VFIO_PCI_NUM_REGIONS = 9

VFIO_PCI_INTX_IRQ_INDEX = 0
VFIO_PCI_MSI_IRQ_INDEX = 1
VFIO_PCI_MSIX_IRQ_INDEX = 2
VFIO_PCI_ERR_IRQ_INDEX = 3
VFIO_PCI_REQ_IRQ_INDEX = 4
VFIO_PCI_NUM_IRQS = 5


class vfio_group_status(ctypes.Structure):
    _fields_ = [("argsz", c_u32), ("flags", c_u32)]


class vfio_device_info(ctypes.Structure):
    _fields_ = [
        ("argsz", c_u32),
        ("flags", c_u32),
        ("num_regions", c_u32),
        ("num_irqs", c_u32),
        ("cap_offset", c_u32),
    ]


class vfio_region_info(ctypes.Structure):
    _fields_ = [
        ("argsz", c_u32),
        ("flags", c_u32),
        ("index", c_u32),
        ("cap_offset", c_u32),
        ("size", c_u64),
        ("offset", c_u64),
    ]


class vfio_irq_info(ctypes.Structure):
    _fields_ = [("argsz", c_u32), ("flags", c_u32), ("index", c_u32), ("count", c_u32)]


class vfio_irq_set(ctypes.Structure):
    """The header; `data[]` (eventfds as s32, or bools as u8) follows it."""

    _fields_ = [
        ("argsz", c_u32),
        ("flags", c_u32),
        ("index", c_u32),
        ("start", c_u32),
        ("count", c_u32),
    ]


class vfio_iommu_type1_dma_map(ctypes.Structure):
    _fields_ = [
        ("argsz", c_u32),
        ("flags", c_u32),
        ("vaddr", c_u64),
        ("iova", c_u64),
        ("size", c_u64),
    ]


class vfio_iommu_type1_dma_unmap(ctypes.Structure):
    _fields_ = [("argsz", c_u32), ("flags", c_u32), ("iova", c_u64), ("size", c_u64)]


def irq_set(
    index: int, flags: int, start: int, count: int, fds: list[int] | None = None
) -> ctypes.Array[ctypes.c_char]:
    """A SET_IRQS argument: the header, then one s32 eventfd per vector for DATA_EVENTFD
    (-1 de-assigns that vector) or nothing for DATA_NONE (count 0 with ACTION_TRIGGER turns
    the index off; count 1 with ACTION_UNMASK unmasks INTx)."""
    payload = b"" if fds is None else struct.pack(f"<{len(fds)}i", *fds)
    if fds is not None and len(fds) != count:
        raise ValueError(f"{len(fds)} eventfds for {count} vectors")
    size = ctypes.sizeof(vfio_irq_set) + len(payload)
    hdr = vfio_irq_set(size, flags, index, start, count)
    return ctypes.create_string_buffer(bytes(hdr) + payload, size)


def decode_irq_set(raw: bytes) -> tuple[int, int, int, int, list[int]]:
    """(index, flags, start, count, eventfds) of a SET_IRQS argument (for tests and traces)."""
    hdr = vfio_irq_set.from_buffer_copy(raw[: ctypes.sizeof(vfio_irq_set)])
    fds: list[int] = []
    if hdr.flags & VFIO_IRQ_SET_DATA_EVENTFD:
        body = raw[ctypes.sizeof(vfio_irq_set) : ctypes.sizeof(vfio_irq_set) + 4 * hdr.count]
        fds = list(struct.unpack(f"<{hdr.count}i", body))
    return hdr.index, hdr.flags, hdr.start, hdr.count, fds
