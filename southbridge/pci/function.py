"""A PCI function: config space, BARs, capabilities, INTx and MSI, save/restore.

The config model is shared by emulated functions and (later) assigned host functions: a
subclass overrides `config_read`/`config_write` to pass chosen bytes through to a host device
behind a write filter, and keeps this class's virtual BARs, command decode bits, interrupt
line and MSI/MSI-X registers (the split Xen's vPCI makes).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from southbridge.core.device import ones
from southbridge.core.irq import Sink
from southbridge.core.ratelog import RateLimitedLog
from southbridge.core.state import StateError, check_header, get_bool, get_hex, header
from southbridge.pci.bar import Bar, BarKind, Region, RomBar, next_seq
from southbridge.pci.capabilities import (
    CONFIG_CAP_START,
    EXT_CAP_START,
    Capability,
    MsiCapability,
    MsixCapability,
    link_capability,
)
from southbridge.pci.config import (
    BAR0,
    CACHE_LINE,
    CLASS,
    CMD_INTX_DISABLE,
    CMD_IO,
    CMD_MASTER,
    CMD_MEMORY,
    CMD_PARITY,
    CMD_SERR,
    COMMAND,
    DEVICE_ID,
    HEADER_MULTIFUNCTION,
    HEADER_TYPE,
    INT_LINE,
    INT_PIN,
    LATENCY,
    PCI_CONFIG_SIZE,
    PCIE_CONFIG_SIZE,
    PROG_IF,
    REVISION,
    ROM_BAR,
    ROM_BAR_BRIDGE,
    STATUS,
    STS_DEVSEL_MEDIUM,
    STS_INTERRUPT,
    STS_RW1C,
    SUBCLASS,
    SUBSYS_ID,
    SUBSYS_VENDOR,
    VENDOR_ID,
    ConfigSpace,
)
from southbridge.pci.dma import Dma

if TYPE_CHECKING:
    from southbridge.pci.bus import PciBus

logger = logging.getLogger("southbridge.pci")

COMMAND_WMASK = CMD_IO | CMD_MEMORY | CMD_MASTER | CMD_PARITY | CMD_SERR | CMD_INTX_DISABLE


class PciFunction:
    """One function; subclass it for a device (see `demo.py` for the worked example)."""

    header_type = 0
    STATE_KIND: ClassVar[str] = "pci-function"
    STATE_VERSION: ClassVar[int] = 1

    def __init__(
        self,
        vendor: int,
        device: int,
        class_code: int,
        revision: int = 0,
        subsystem: tuple[int, int] | None = None,
        pcie: bool = False,
        name: str = "",
    ) -> None:
        self.name = name or type(self).__name__
        self.config = ConfigSpace(PCIE_CONFIG_SIZE if pcie else PCI_CONFIG_SIZE)
        self.bars: list[Bar | None] = [None] * (6 if self.header_type == 0 else 2)
        self.rom: RomBar | None = None
        self.capabilities: list[Capability] = []
        self.bus: PciBus | None = None
        self.devfn = 0
        self.log = RateLimitedLog(logger)
        self._intx_request = False
        self._intx_sink: Sink | None = None
        self._intx_out = False
        self._power_on: bytes | None = None
        cs = self.config
        cs.set(VENDOR_ID, 2, vendor)
        cs.set(DEVICE_ID, 2, device)
        cs.set(REVISION, 1, revision)
        cs.set(PROG_IF, 1, class_code)
        cs.set(SUBCLASS, 1, class_code >> 8)
        cs.set(CLASS, 1, class_code >> 16)
        cs.set(HEADER_TYPE, 1, self.header_type)
        cs.set_wmask(COMMAND, 2, COMMAND_WMASK)
        cs.set(STATUS, 2, STS_DEVSEL_MEDIUM)
        cs.set_w1c(STATUS, 2, STS_RW1C)
        cs.set_dyn(STATUS, 2, STS_INTERRUPT)
        cs.set_wmask(CACHE_LINE, 1, 0xFF)
        if not pcie:
            cs.set_wmask(LATENCY, 1, 0xF8)  # 8-clock granularity, as many real chips
        cs.set_wmask(INT_LINE, 1, 0xFF)
        if subsystem is not None and self.header_type == 0:
            cs.set(SUBSYS_VENDOR, 2, subsystem[0])
            cs.set(SUBSYS_ID, 2, subsystem[1])

    # -- identity ------------------------------------------------------------------------
    @property
    def vendor_id(self) -> int:
        return self.config.get(VENDOR_ID, 2)

    @property
    def device_id(self) -> int:
        return self.config.get(DEVICE_ID, 2)

    @property
    def command(self) -> int:
        return self.config.get(COMMAND, 2)

    @property
    def slot(self) -> int:
        return self.devfn >> 3

    @property
    def function(self) -> int:
        return self.devfn & 7

    def address(self) -> str:
        bus = self.bus.number if self.bus is not None else 0
        return f"{bus:02x}:{self.slot:02x}.{self.function}"

    def set_multifunction(self, on: bool) -> None:
        self.config.set_bits(HEADER_TYPE, 1, HEADER_MULTIFUNCTION, on)

    # -- construction helpers ------------------------------------------------------------
    def add_bar(self, index: int, bar: Bar) -> Bar:
        regs = bar.registers
        if not 0 <= index <= len(self.bars) - regs:
            raise ValueError(f"BAR {index} does not fit a type {self.header_type} header")
        if any(self.bars[i] is not None for i in range(index, index + regs)):
            raise ValueError(f"BAR {index} is already in use")
        bar.index = index
        bar.name = bar.name or f"{self.name}.bar{index}"
        self.bars[index] = bar
        off = BAR0 + 4 * index
        self.config.set(off, 4 * regs, bar.type_bits())
        self.config.set_wmask(off, 4 * regs, bar.wmask())
        return bar

    def add_rom(self, rom: RomBar) -> RomBar:
        rom.name = rom.name if rom.name != "rom" else f"{self.name}.rom"
        self.rom = rom
        self.config.set_wmask(self.rom_offset, 4, rom.wmask())
        return rom

    @property
    def rom_offset(self) -> int:
        return ROM_BAR if self.header_type == 0 else ROM_BAR_BRIDGE

    def set_interrupt_pin(self, pin: int) -> None:
        """1..4 for INTA#..INTD#, 0 for none."""
        if not 0 <= pin <= 4:
            raise ValueError("interrupt pin must be 0 (none) or 1-4 (INTA-INTD)")
        self.config.set(INT_PIN, 1, pin)

    def add_capability(
        self, cap: Capability, offset: int | None = None, link: bool = True
    ) -> Capability:
        """Place `cap` at `offset` (or after the last one) and link it into its chain.

        With `link=False` the chain already holds a structure of this ID at `offset` (an
        assigned function's config copied from the host): only the registers and masks are
        installed, so the capability becomes emulated in place."""
        same = [c for c in self.capabilities if c.extended == cap.extended]
        if offset is None:
            start = EXT_CAP_START if cap.extended else CONFIG_CAP_START
            offset = max((c.offset + c.length for c in same), default=start)
            offset = (offset + 3) & ~3
        end = self.config.size if cap.extended else PCI_CONFIG_SIZE
        lo = EXT_CAP_START if cap.extended else CONFIG_CAP_START
        if offset & 3 or offset < lo or offset + cap.length > end:
            raise ValueError(f"capability 0x{cap.cap_id:x} does not fit at 0x{offset:x}")
        if cap.extended and self.config.size != PCIE_CONFIG_SIZE:
            raise ValueError("extended capabilities need a PCI Express config space")
        if any(c.covers(offset, cap.length) for c in self.capabilities):
            raise ValueError(f"capability at 0x{offset:x} overlaps another")
        cap.offset = offset
        cap.fn = self
        if link:
            link_capability(self.config, cap, same[-1] if same else None)
        else:
            width = 2 if cap.extended else 1
            if self.config.get(offset, width) != cap.cap_id:
                raise ValueError(f"no capability 0x{cap.cap_id:x} at 0x{offset:x} to adopt")
            cap.install(self.config)
        self.capabilities.append(cap)
        return cap

    def capability(self, cls: type[Capability]) -> Any:
        return next((c for c in self.capabilities if isinstance(c, cls)), None)

    @property
    def msi(self) -> MsiCapability | None:
        cap: MsiCapability | None = self.capability(MsiCapability)
        return cap

    @property
    def msix(self) -> MsixCapability | None:
        cap: MsixCapability | None = self.capability(MsixCapability)
        return cap

    # -- config access (what mechanism #1 and ECAM call) --------------------------------
    def config_read(self, offset: int, size: int) -> int:
        return self.config.read(offset, size)

    def config_write(self, offset: int, size: int, value: int) -> None:
        if size not in (1, 2, 4) or offset < 0 or offset + size > self.config.size:
            self.log.debug(
                "cfg-range", "pci %s: config write %d@0x%x ignored", self.name, size, offset
            )
            return
        value &= ones(size)
        for cap in self.capabilities:
            if cap.covers(offset, size):
                value = cap.filter_write(offset, size, value)
        value = self.filter_write(offset, size, value)
        changed = self.config.write(offset, size, value)
        if changed:
            self._after_write(offset, size)

    def filter_write(self, offset: int, size: int, value: int) -> int:
        """Subclass hook: adjust a write before the masks apply."""
        return value

    def on_config_write(self, offset: int, size: int) -> None:
        """Subclass hook: registers changed by a guest write (offset, size of the write)."""

    def _decode_range(self) -> tuple[int, int]:
        """Config bytes whose change can move or toggle a decoded region."""
        return BAR0, self.rom_offset + 4 - BAR0

    def _after_write(self, offset: int, size: int) -> None:
        touches_cmd = offset < COMMAND + 2 and offset + size > COMMAND
        lo, n = self._decode_range()
        if touches_cmd or (offset < lo + n and lo < offset + size):
            self.update_mappings()
        if touches_cmd:
            self._drive_intx()
        for cap in self.capabilities:
            if cap.covers(offset, size):
                cap.after_write(offset, size)
        self.on_config_write(offset, size)

    # -- BAR decoding --------------------------------------------------------------------
    def bar_raw(self, bar: Bar) -> int:
        off = BAR0 + 4 * bar.index
        return self.config.get(off, 4 * bar.registers)

    def bar_region(self, bar: Bar | RomBar) -> tuple[int, int] | None:
        """Where the BAR decodes now (value and command bits, not the bridges above)."""
        cmd = self.command
        if isinstance(bar, RomBar):
            if not cmd & CMD_MEMORY:
                return None
            return bar.region(self.config.get(self.rom_offset, 4))
        if not cmd & (CMD_IO if bar.kind is BarKind.IO else CMD_MEMORY):
            return None
        return bar.region(self.bar_raw(bar))

    def all_bars(self) -> list[Bar | RomBar]:
        out: list[Bar | RomBar] = [b for b in self.bars if b is not None]
        if self.rom is not None:
            out.append(self.rom)
        return out

    def regions(self) -> tuple[list[Region], list[Region]]:
        """(I/O, memory) regions this function decodes, newest-programmed first wins."""
        io: list[Region] = []
        mem: list[Region] = []
        self._refresh_decoded()
        for bar in self.all_bars():
            r = bar.decoded
            if r is None:
                continue
            region = Region(bar, r[0], r[1], bar.device, bar.name, bar.seq)
            (io if isinstance(bar, Bar) and bar.is_io else mem).append(region)
        return io, mem

    def _refresh_decoded(self) -> None:
        # A BAR whose region changed counts as newly programmed: it wins overlaps.
        for bar in self.all_bars():
            r = self.bar_region(bar)
            if r != bar.decoded:
                bar.decoded = r
                bar.seq = next_seq()

    def update_mappings(self) -> None:
        self._refresh_decoded()
        root = self.bus.root if self.bus is not None else None
        if root is not None:
            root.remap()

    # -- interrupts ----------------------------------------------------------------------
    @property
    def interrupt_pin(self) -> int:
        return self.config.get(INT_PIN, 1)

    def set_intx(self, level: bool) -> None:
        """The device's INTx request. Status bit 3 follows it; the pin is driven only while
        Interrupt Disable is clear (PCI 3.0, 6.2.2-6.2.3)."""
        self._intx_request = bool(level)
        self.config.set_bits(STATUS, 2, STS_INTERRUPT, self._intx_request)
        self._drive_intx()

    def _drive_intx(self) -> None:
        out = self._intx_request and not self.command & CMD_INTX_DISABLE
        if self.interrupt_pin == 0:
            out = False
        # Not routable yet while a bridge above is still unplugged: resolve on a later call.
        bus = self.bus
        if self._intx_sink is None and self.interrupt_pin and bus and bus.root is not None:
            self._intx_sink = bus.route_intx(self, self.interrupt_pin - 1)
        self._intx_out = out
        if self._intx_sink is not None:
            self._intx_sink(out)

    @property
    def intx_asserted(self) -> bool:
        return self._intx_out

    def send_msi(self, address: int, data: int) -> bool:
        """Deliver one message; an MSI is a memory write, so it needs bus mastering."""
        if not self.command & CMD_MASTER:
            self.log.debug("msi-master", "pci %s: MSI dropped, bus mastering off", self.name)
            return False
        root = self.bus.root if self.bus is not None else None
        if root is None:
            return False
        root.msi_sink(address, data)
        return True

    @property
    def dma(self) -> Dma:
        root = self.bus.root if self.bus is not None else None
        if root is None or root.space is None:
            raise RuntimeError(f"{self.name} is not on a bus with an address space")
        return Dma(root.space, lambda: bool(self.command & CMD_MASTER))

    # -- state ---------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        return {
            **header(self),
            "config": self.config.data.hex(),
            "intx": self._intx_request,
            "caps": [c.save() for c in self.capabilities],
            "device": self.save_device(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a saved state; a rejected one (StateError) leaves the function unchanged."""
        backup = self.save()
        try:
            self._load(state)
        except StateError:
            self._load(backup)
            raise

    def _load(self, state: dict[str, Any]) -> None:
        state = check_header(state, self)
        try:
            data = get_hex(state, "config", self.config.size)  # bound: the config space
        except StateError as e:
            raise StateError(f"{self.name}: {e}") from None
        bad = self.config.check_same_device(data)
        if bad is not None:
            raise StateError(f"{self.name}: saved config differs in read-only byte 0x{bad:x}")
        caps = state.get("caps")
        if not isinstance(caps, list) or len(caps) != len(self.capabilities):
            raise StateError(f"{self.name}: capability states do not match the device")
        if not all(isinstance(c, dict) for c in caps):
            raise StateError(f"{self.name}: capability state must be a mapping")
        intx = get_bool(state, "intx")
        dev = state.get("device")
        if not isinstance(dev, dict):
            raise StateError(f"{self.name}: device state must be a mapping")
        self.config.data[:] = data
        for cap, cs in zip(self.capabilities, caps, strict=True):
            cap.restore(cs)
        self.restore_device(dev)
        self._intx_request = intx
        self.config.set_bits(STATUS, 2, STS_INTERRUPT, intx)
        self.update_mappings()
        self._drive_intx()

    def capture_power_on(self) -> None:
        """Remember the constructed registers as the power-on state (the bus calls this when
        the function is plugged in, after the subclass has built everything)."""
        if self._power_on is None:
            self._power_on = bytes(self.config.data)

    def reset(self) -> None:
        """Power-on reset (RST#): registers back to their power-on values, decoding off, no
        interrupt asserted; the multi-function bit keeps reflecting the slot."""
        if self._power_on is not None:
            mf = self.config.get(HEADER_TYPE, 1) & HEADER_MULTIFUNCTION
            self.config.data[:] = self._power_on
            self.set_multifunction(bool(mf))
        for cap in self.capabilities:
            cap.reset()
        self._intx_request = False
        self.reset_device()
        self.config.set_bits(STATUS, 2, STS_INTERRUPT, self._intx_request)
        self.update_mappings()
        self._drive_intx()

    def reset_device(self) -> None:
        """Subclass hook: reset state outside config space (after the registers)."""

    def save_device(self) -> dict[str, Any]:
        """Subclass hook: state outside config space."""
        return {}

    def restore_device(self, state: dict[str, Any]) -> None:
        """Subclass hook: validate and load state outside config space (raise StateError)."""
