"""The virtio PCI transport (virtio 1.2, 4.1): a transitional device, modern and legacy.

Layout (the same as QEMU's transitional devices, so drivers see familiar offsets):
  BAR0  I/O, the legacy register block (4.1.4.10) followed by the device configuration.
  BAR1  32-bit memory, 4 KiB: the MSI-X table (0x000) and PBA (0x800).
  BAR4  64-bit prefetchable memory, 16 KiB: common configuration at 0x0000, ISR status at
        0x1000, device configuration at 0x2000, notifications at 0x3000 (queue n at n * 4).
Vendor-specific capabilities (4.1.4) point at the BAR4 structures; a VIRTIO_PCI_CAP_PCI_CFG
window reaches them through config space for firmware that cannot map the BAR.

Interrupts: with MSI-X enabled, the config vector and each queue's vector (NO_VECTOR
suppresses); otherwise the ISR bits and INTA#, deasserted by reading the ISR (4.1.4.5).
Guest mistakes on a queue set DEVICE_NEEDS_RESET and a configuration interrupt (2.1.2); the
device then ignores that queue until the driver resets it.
"""

from __future__ import annotations

from typing import Any

from southbridge.core.device import BusDevice
from southbridge.core.state import StateError, get_bool, get_int
from southbridge.pci.bar import Bar, BarKind
from southbridge.pci.capabilities import Capability, MsixCapability, MsixRegion
from southbridge.pci.config import ConfigSpace
from southbridge.pci.dma import Dma, DmaError
from southbridge.pci.function import PciFunction
from southbridge.virtio import device as vd
from southbridge.virtio.queue import QueueError, SplitQueue

VIRTIO_VENDOR = 0x1AF4
# Transitional PCI device IDs (4.1.2.1), by virtio device ID.
TRANSITIONAL_IDS = {
    vd.ID_NET: 0x1000,
    vd.ID_BLOCK: 0x1001,
    vd.ID_CONSOLE: 0x1003,
    vd.ID_RNG: 0x1005,
}
NO_VECTOR = 0xFFFF

CAP_VENDOR = 0x09
CFG_COMMON = 1
CFG_NOTIFY = 2
CFG_ISR = 3
CFG_DEVICE = 4
CFG_PCI = 5

MODERN_BAR = 4
MSIX_BAR = 1
LEGACY_BAR = 0
COMMON_OFF, COMMON_LEN = 0x0000, 0x38
ISR_OFF, ISR_LEN = 0x1000, 0x1
DEVICE_OFF, DEVICE_LEN = 0x2000, 0x1000
NOTIFY_OFF = 0x3000
NOTIFY_MULT = 4
MODERN_SIZE = 0x4000

ISR_QUEUE = 1
ISR_CONFIG = 2

# Legacy register block (4.1.4.10).
L_HOST_FEATURES = 0x00
L_GUEST_FEATURES = 0x04
L_QUEUE_PFN = 0x08
L_QUEUE_NUM = 0x0C
L_QUEUE_SEL = 0x0E
L_QUEUE_NOTIFY = 0x10
L_STATUS = 0x12
L_ISR = 0x13
L_CONFIG_VECTOR = 0x14
L_QUEUE_VECTOR = 0x16

TRANSPORT_FEATURES = vd.F_VERSION_1 | vd.F_RING_INDIRECT_DESC | vd.F_RING_EVENT_IDX


class VirtioCap(Capability):
    """struct virtio_pci_cap (4.1.4): read-only, `extra` appended (notify multiplier)."""

    cap_id = CAP_VENDOR

    def __init__(self, cfg_type: int, bar: int, offset: int, length: int, extra: bytes = b""):
        super().__init__()
        self.cfg_type = cfg_type
        self.body = (
            bytes([16 + len(extra), cfg_type, bar, 0, 0, 0])
            + offset.to_bytes(4, "little")
            + length.to_bytes(4, "little")
            + extra
        )

    @property
    def length(self) -> int:
        return len(self.body) + 2

    def install(self, cs: ConfigSpace) -> None:
        cs.data[self.offset + 2 : self.offset + 2 + len(self.body)] = self.body


class PciCfgCap(VirtioCap):
    """VIRTIO_PCI_CAP_PCI_CFG (4.1.4.9): bar/offset/length select a BAR4 access made by
    reading or writing pci_cfg_data."""

    def __init__(self) -> None:
        super().__init__(CFG_PCI, 0, 0, 0, bytes(4))

    def install(self, cs: ConfigSpace) -> None:
        super().install(cs)
        cs.set_wmask(self.offset + 4, 1, 0xFF)
        cs.set_wmask(self.offset + 8, 4, 0xFFFFFFFF)
        cs.set_wmask(self.offset + 12, 4, 0xFFFFFFFF)
        cs.set_wmask(self.offset + 16, 4, 0xFFFFFFFF)

    @property
    def data_off(self) -> int:
        return self.offset + 16


class _ModernRegion(BusDevice):
    """BAR4: the four modern structures."""

    io_sizes = frozenset({1, 2, 4})

    def __init__(self, t: VirtioPci) -> None:
        self.t = t
        self.name = f"{t.name}-modern"

    def read(self, offset: int, size: int) -> int:
        t = self.t
        if offset < COMMON_OFF + COMMON_LEN:
            return t.common_read(offset, size)
        if offset == ISR_OFF:
            return t.read_isr()
        if DEVICE_OFF <= offset < DEVICE_OFF + DEVICE_LEN:
            return t.device_config_read(offset - DEVICE_OFF, size)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        t = self.t
        if offset < COMMON_OFF + COMMON_LEN:
            t.common_write(offset, size, value)
        elif DEVICE_OFF <= offset < DEVICE_OFF + DEVICE_LEN:
            t.device_config_write(offset - DEVICE_OFF, size, value)
        elif offset >= NOTIFY_OFF:
            t.notify((offset - NOTIFY_OFF) // NOTIFY_MULT)


class _LegacyRegion(BusDevice):
    """BAR0: the legacy register block, then the device configuration."""

    io_sizes = frozenset({1, 2, 4})

    def __init__(self, t: VirtioPci) -> None:
        self.t = t
        self.name = f"{t.name}-legacy"

    def read(self, offset: int, size: int) -> int:
        return self.t.legacy_read(offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.t.legacy_write(offset, size, value)


def _field(offset: int, size: int, value: int, base: int, width: int) -> int | None:
    """The bytes of a `width`-byte field at `base` that an access covers, or None."""
    if offset < base or offset + size > base + width:
        return None
    return (value >> (8 * (offset - base))) & ((1 << (8 * size)) - 1)


class VirtioPci(PciFunction):
    """A virtio device on PCI (see the module docstring for the layout)."""

    kind = "virtio-pci"

    def __init__(self, dev: vd.VirtioDevice, name: str = "") -> None:
        vid = dev.device_id
        super().__init__(
            VIRTIO_VENDOR,
            TRANSITIONAL_IDS.get(vid, 0x1040 + vid),
            dev.pci_class,
            revision=0,
            subsystem=(VIRTIO_VENDOR, vid),
            name=name or dev.name,
        )
        self.dev = dev
        dev.transport = self
        self.queues = [SplitQueue(i, n) for i, n in enumerate(dev.queue_sizes)]
        self.set_interrupt_pin(1)
        legacy_size = 32
        while legacy_size < 0x18 + len(dev.config()):
            legacy_size *= 2
        self.add_bar(LEGACY_BAR, Bar(BarKind.IO, legacy_size, _LegacyRegion(self)))
        msix = MsixCapability(vectors=len(self.queues) + 1, bar=MSIX_BAR, pba_offset=0x800)
        self.add_capability(msix)
        self.add_bar(MSIX_BAR, Bar(BarKind.MEM32, 0x1000, MsixRegion(msix)))
        self.add_bar(
            MODERN_BAR,
            Bar(BarKind.MEM64, MODERN_SIZE, _ModernRegion(self), prefetchable=True),
        )
        b = MODERN_BAR
        self.add_capability(VirtioCap(CFG_COMMON, b, COMMON_OFF, COMMON_LEN))
        self.add_capability(VirtioCap(CFG_ISR, b, ISR_OFF, ISR_LEN))
        self.add_capability(VirtioCap(CFG_DEVICE, b, DEVICE_OFF, DEVICE_LEN))
        notify_len = NOTIFY_MULT * len(self.queues)
        mult = NOTIFY_MULT.to_bytes(4, "little")
        self.add_capability(VirtioCap(CFG_NOTIFY, b, NOTIFY_OFF, notify_len, mult))
        self.pci_cfg = PciCfgCap()
        self.add_capability(self.pci_cfg)
        self._modern = _ModernRegion(self)
        self._generation = 0  # completion tokens: a reset invalidates requests in flight
        self.virtio_reset()

    # -- state the driver sees -----------------------------------------------------------
    def virtio_reset(self) -> None:
        """Device reset (2.4): every register and queue back to its initial value."""
        self.status = 0
        self.device_feature_select = 0
        self.driver_feature_select = 0
        self.driver_features = 0
        self.msix_config = NO_VECTOR
        self.queue_select = 0
        self.isr = 0
        self.config_generation = 0
        self.legacy = False
        for q in self.queues:
            q.reset()
        self._generation += 1
        self.dev.reset()
        self.set_intx(False)

    @property
    def generation(self) -> int:
        return self._generation

    def device_features(self) -> int:
        return self.dev.features() | TRANSPORT_FEATURES

    def negotiated(self, bit: int) -> bool:
        return bool(self.driver_features & bit)

    @property
    def driver_ok(self) -> bool:
        return bool(self.status & vd.S_DRIVER_OK) and not self.status & vd.S_NEEDS_RESET

    @property
    def memory(self) -> Dma:
        return self.dma

    # -- interrupts ----------------------------------------------------------------------
    def _interrupt(self, vector: int, isr_bit: int) -> None:
        msix = self.msix
        if msix is not None and msix.enabled:
            if vector != NO_VECTOR:
                msix.notify(vector)
            return
        self.isr |= isr_bit
        self.set_intx(True)

    def used(self, q: SplitQueue) -> None:
        """Buffers were returned on `q`: interrupt unless the driver suppressed it."""
        try:
            if q.should_interrupt(self.dma):
                self._interrupt(q.msix_vector, ISR_QUEUE)
        except (QueueError, DmaError, RuntimeError) as e:
            self.needs_reset(str(e))

    def config_changed(self) -> None:
        self.config_generation = (self.config_generation + 1) & 0xFF
        if self.status & vd.S_DRIVER_OK:
            self._interrupt(self.msix_config, ISR_CONFIG)

    def needs_reset(self, why: str) -> None:
        """The driver broke a rule (2.1.2): stop and ask for a reset, VMM unharmed."""
        self.log.warning("virtio-needs-reset", "virtio %s: %s; needs reset", self.name, why)
        if self.status & vd.S_NEEDS_RESET:
            return
        self.status |= vd.S_NEEDS_RESET
        self._interrupt(self.msix_config, ISR_CONFIG)

    def read_isr(self) -> int:
        value = self.isr
        self.isr = 0
        self.set_intx(False)
        return value

    # -- queue notifications -------------------------------------------------------------
    def notify(self, index: int) -> None:
        if not 0 <= index < len(self.queues):
            self.log.debug("virtio-notify", "virtio %s: notify of queue %d", self.name, index)
            return
        q = self.queues[index]
        if not self.driver_ok or not q.enabled:
            return
        try:
            q.check_layout(self.dma)
            self.dev.notify(q)
        except (QueueError, DmaError, RuntimeError) as e:
            self.needs_reset(str(e))

    def _apply_features(self) -> None:
        for q in self.queues:
            q.event_idx = self.negotiated(vd.F_RING_EVENT_IDX)
            q.indirect = self.negotiated(vd.F_RING_INDIRECT_DESC)

    def write_status(self, value: int) -> None:
        value &= 0xFF
        if value == 0:
            self.virtio_reset()
            return
        old = self.status
        new = (value & ~vd.S_NEEDS_RESET) | (old & vd.S_NEEDS_RESET)
        if new & vd.S_FEATURES_OK and not old & vd.S_FEATURES_OK and not self.legacy:
            # 3.1.1: the device refuses features it does not offer, or a modern driver
            # that did not accept VERSION_1; FEATURES_OK then reads back clear.
            bad = self.driver_features & ~self.device_features()
            if bad or not self.negotiated(vd.F_VERSION_1):
                new &= ~vd.S_FEATURES_OK
            else:
                self._apply_features()
        self.status = new
        if new & vd.S_DRIVER_OK and not old & vd.S_DRIVER_OK:
            if self.legacy:
                self._apply_features()
            self.dev.activate()

    # -- common configuration (4.1.4.3) --------------------------------------------------
    def _selected(self) -> SplitQueue | None:
        i = self.queue_select
        return self.queues[i] if i < len(self.queues) else None

    def common_read(self, offset: int, size: int) -> int:
        q = self._selected()
        sel = self.device_feature_select
        feats = (self.device_features() >> (32 * sel)) & 0xFFFFFFFF if sel < 2 else 0
        dsel = self.driver_feature_select
        dfeats = (self.driver_features >> (32 * dsel)) & 0xFFFFFFFF if dsel < 2 else 0
        fields: list[tuple[int, int, int]] = [
            (0x00, 4, self.device_feature_select),
            (0x04, 4, feats),
            (0x08, 4, self.driver_feature_select),
            (0x0C, 4, dfeats),
            (0x10, 2, self.msix_config),
            (0x12, 2, len(self.queues)),
            (0x14, 1, self.status),
            (0x15, 1, self.config_generation),
            (0x16, 2, self.queue_select),
        ]
        if q is not None:
            fields += [
                (0x18, 2, q.size),
                (0x1A, 2, q.msix_vector),
                (0x1C, 2, int(q.enabled)),
                (0x1E, 2, q.index),
                (0x20, 8, q.desc),
                (0x28, 8, q.driver),
                (0x30, 8, q.device),
            ]
        for base, width, value in fields:
            got = _field(offset, size, value, base, width)
            if got is not None:
                return got
        return 0

    def common_write(self, offset: int, size: int, value: int) -> None:
        value &= (1 << (8 * size)) - 1
        whole = (offset, size)
        if whole == (0x00, 4):
            self.device_feature_select = value
        elif whole == (0x08, 4):
            self.driver_feature_select = value
        elif whole == (0x0C, 4):
            if self.driver_feature_select < 2 and not self.status & vd.S_FEATURES_OK:
                shift = 32 * self.driver_feature_select
                keep = self.driver_features & ~(0xFFFFFFFF << shift)
                self.driver_features = keep | (value << shift)
        elif whole == (0x10, 2):
            self.msix_config = self._vector(value)
        elif whole == (0x14, 1):
            self.write_status(value)
        elif whole == (0x16, 2):
            self.queue_select = value
        elif (q := self._selected()) is None:
            return
        elif whole == (0x1A, 2):
            q.msix_vector = self._vector(value)
        elif q.enabled:
            return  # 4.1.4.3.2: the queue's layout is fixed once enabled
        elif whole == (0x18, 2):
            q.size = value
        elif whole == (0x1C, 2):
            if value == 1:
                self._enable(q)
        elif 0x20 <= offset < 0x38 and size == 4 and offset % 4 == 0:
            attr = ("desc", "driver", "device")[(offset - 0x20) // 8]
            shift = 32 * ((offset - 0x20) % 8 // 4)
            old = getattr(q, attr)
            setattr(q, attr, (old & ~(0xFFFFFFFF << shift)) | (value << shift))
        else:
            self.log.debug(
                "virtio-common", "virtio %s: common write %d@0x%x", self.name, size, offset
            )

    def _vector(self, value: int) -> int:
        """4.1.5.1.2: a vector the table cannot hold reads back NO_VECTOR."""
        msix = self.msix
        return value if msix is not None and value < msix.vectors else NO_VECTOR

    def _enable(self, q: SplitQueue) -> None:
        try:
            q.check_layout(self.dma)
        except (QueueError, DmaError, RuntimeError) as e:
            self.needs_reset(str(e))
            return
        q.enabled = True

    # -- device configuration ------------------------------------------------------------
    def device_config_read(self, offset: int, size: int) -> int:
        data = self.dev.config()
        return int.from_bytes(data[offset : offset + size].ljust(size, b"\0"), "little")

    def device_config_write(self, offset: int, size: int, value: int) -> None:
        data = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        if 0 <= offset < len(self.dev.config()):
            self.dev.config_write(offset, data)

    # -- legacy interface (4.1.4.10) -----------------------------------------------------
    def _legacy_config_base(self) -> int:
        msix = self.msix
        return 0x18 if msix is not None and msix.enabled else 0x14

    def legacy_read(self, offset: int, size: int) -> int:
        base = self._legacy_config_base()
        if offset >= base:
            return self.device_config_read(offset - base, size)
        q = self._selected()
        fields: list[tuple[int, int, int]] = [
            (L_HOST_FEATURES, 4, self.device_features() & 0xFFFFFFFF),
            (L_GUEST_FEATURES, 4, self.driver_features & 0xFFFFFFFF),
            (L_QUEUE_SEL, 2, self.queue_select),
            (L_STATUS, 1, self.status),
        ]
        if q is not None:
            fields += [(L_QUEUE_PFN, 4, q.desc >> 12 if q.enabled else 0)]
            fields += [(L_QUEUE_NUM, 2, q.max_size), (L_QUEUE_VECTOR, 2, q.msix_vector)]
        if base == 0x18:
            fields.append((L_CONFIG_VECTOR, 2, self.msix_config))
        if (offset, size) == (L_ISR, 1):
            return self.read_isr()
        for fbase, width, value in fields:
            got = _field(offset, size, value, fbase, width)
            if got is not None:
                return got
        return 0

    def legacy_write(self, offset: int, size: int, value: int) -> None:
        value &= (1 << (8 * size)) - 1
        base = self._legacy_config_base()
        if offset >= base:
            self.device_config_write(offset - base, size, value)
            return
        whole = (offset, size)
        q = self._selected()
        if whole == (L_GUEST_FEATURES, 4):
            if not self.status & vd.S_DRIVER_OK:
                self.legacy = True
                self.driver_features = value & self.device_features() & 0xFFFFFFFF
        elif whole == (L_QUEUE_SEL, 2):
            self.queue_select = value
        elif whole == (L_QUEUE_NOTIFY, 2):
            self.notify(value)
        elif whole == (L_STATUS, 1):
            self.legacy = True
            self.write_status(value)
        elif whole == (L_CONFIG_VECTOR, 2) and base == 0x18:
            self.msix_config = self._vector(value)
        elif q is None:
            return
        elif whole == (L_QUEUE_PFN, 4):
            self.legacy = True
            if value == 0:
                q.reset()
                return
            q.set_legacy_pfn(value)
            q.enabled = False
            self._enable(q)
        elif whole == (L_QUEUE_VECTOR, 2) and base == 0x18:
            q.msix_vector = self._vector(value)

    # -- the PCI configuration access window (4.1.4.9) -----------------------------------
    def _pci_cfg_target(self, size: int) -> int | None:
        cs, o = self.config, self.pci_cfg.offset
        bar, off, length = cs.get(o + 4, 1), cs.get(o + 8, 4), cs.get(o + 12, 4)
        if bar != MODERN_BAR or length not in (1, 2, 4) or size < length:
            return None
        if off % length or off + length > MODERN_SIZE:
            return None
        return off

    def config_read(self, offset: int, size: int) -> int:
        d = self.pci_cfg.data_off
        if offset == d and (off := self._pci_cfg_target(size)) is not None:
            length = self.config.get(self.pci_cfg.offset + 12, 4)
            return self._modern.read(off, length)
        return super().config_read(offset, size)

    def config_write(self, offset: int, size: int, value: int) -> None:
        d = self.pci_cfg.data_off
        if offset == d and (off := self._pci_cfg_target(size)) is not None:
            length = self.config.get(self.pci_cfg.offset + 12, 4)
            self._modern.write(off, length, value & ((1 << (8 * length)) - 1))
            return
        super().config_write(offset, size, value)

    # -- PCI-level hooks -----------------------------------------------------------------
    def reset_device(self) -> None:
        self.virtio_reset()

    def save_device(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "device_feature_select": self.device_feature_select,
            "driver_feature_select": self.driver_feature_select,
            "driver_features": self.driver_features,
            "msix_config": self.msix_config,
            "queue_select": self.queue_select,
            "isr": self.isr,
            "config_generation": self.config_generation,
            "legacy": self.legacy,
            "queues": self._save_queues(),
            "virtio": self.dev.save(),
        }

    def _save_queues(self) -> list[dict[str, Any]]:
        out = []
        back = self.dev.rewind()
        for q in self.queues:
            qs = q.save()
            qs["last_avail"] = (q.last_avail - back.get(q.index, 0)) & 0xFFFF
            out.append(qs)
        return out

    def restore_device(self, state: dict[str, Any]) -> None:
        u16, u32 = 0xFFFF, 0xFFFFFFFF
        vals = {
            "status": get_int(state, "status", 0, 0xFF),
            "device_feature_select": get_int(state, "device_feature_select", 0, u32),
            "driver_feature_select": get_int(state, "driver_feature_select", 0, u32),
            "driver_features": get_int(state, "driver_features", 0, 2**64 - 1),
            "msix_config": get_int(state, "msix_config", 0, u16),
            "queue_select": get_int(state, "queue_select", 0, u16),
            "isr": get_int(state, "isr", 0, ISR_QUEUE | ISR_CONFIG),
            "config_generation": get_int(state, "config_generation", 0, 0xFF),
        }
        legacy = get_bool(state, "legacy")
        if vals["driver_features"] & ~self.device_features():
            raise StateError(f"{self.name}: saved driver features the device does not offer")
        queues = state.get("queues")
        if not isinstance(queues, list) or len(queues) != len(self.queues):
            raise StateError(f"{self.name}: queue states do not match the device")
        if not all(isinstance(q, dict) for q in queues):
            raise StateError(f"{self.name}: queue state must be a mapping")
        dev = state.get("virtio")
        if not isinstance(dev, dict):
            raise StateError(f"{self.name}: virtio device state must be a mapping")
        checked = [q.check_state(qs) for q, qs in zip(self.queues, queues, strict=True)]
        # Vectors: NO_VECTOR or an index into the MSI-X table (< its vector count), what
        # `_vector` lets a driver write; anything else no device can hold.
        saved_vectors = [vals["msix_config"], *(qs.get("msix_vector") for qs in queues)]
        if any(v != self._vector(v) for v in saved_vectors if isinstance(v, int)):
            raise StateError(f"{self.name}: an MSI-X vector beyond the table")
        self.dev.restore(dev)  # validates first, then loads (raises StateError unchanged)
        self._generation += 1  # completions of requests from before are not ours
        for k, v in vals.items():
            setattr(self, k, v)
        self.legacy = legacy
        for load in checked:
            load()
