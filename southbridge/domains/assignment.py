"""Who gets which host device: the privileged domain sees every visible device; hidden ones
go to the user domain the configuration names, else to the first user domain that starts."""

from __future__ import annotations

from dataclasses import dataclass, field

from southbridge.host.inventory import HostDevice, HostInventory
from southbridge.host.pciaddr import PciAddress


class AssignmentError(ValueError):
    pass


@dataclass
class Assignments:
    """The ledger of hidden devices and their owners; one owner at a time."""

    inventory: HostInventory
    hidden: list[PciAddress]
    reserved: dict[PciAddress, str] = field(default_factory=dict)  # named in configuration
    owner: dict[PciAddress, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for addr in self.hidden:
            if self.inventory.get(addr) is None:
                # Reported by the caller (one line on stderr), kept here as data.
                self.warnings.append(f"hide: {addr} does not exist on this host; ignored")
        self.hidden = [a for a in self.hidden if self.inventory.get(a) is not None]

    def is_hidden(self, addr: PciAddress) -> bool:
        return addr in self.hidden

    def visible(self) -> list[HostDevice]:
        """What the privileged domain sees: every host device not hidden."""
        return [d for d in self.inventory if d.addr not in self.hidden]

    def reserve(self, addr: PciAddress, domain: str) -> None:
        if addr not in self.hidden:
            raise AssignmentError(f"{addr} is not hidden; only hidden devices can be assigned")
        self.reserved[addr] = domain

    def claim(self, domain: str) -> list[HostDevice]:
        """A user domain starts: it takes the hidden devices reserved for it and every hidden
        device nobody reserved and nobody owns yet."""
        taken: list[HostDevice] = []
        for addr in self.hidden:
            if addr in self.owner:
                continue
            who = self.reserved.get(addr)
            if who is not None and who != domain:
                continue
            self.owner[addr] = domain
            dev = self.inventory.get(addr)
            assert dev is not None
            taken.append(dev)
        return taken

    def release(self, domain: str) -> list[PciAddress]:
        """The domain shut down: its devices become free for the next user domain."""
        freed = [a for a, d in self.owner.items() if d == domain]
        for a in freed:
            del self.owner[a]
        return freed

    def status(self, addr: PciAddress) -> str:
        if addr not in self.hidden:
            return "visible"
        who = self.owner.get(addr)
        if who is not None:
            return f"assigned to {who}"
        who = self.reserved.get(addr)
        return f"hidden (for {who})" if who else "hidden"
