"""Firmware set-up shared by `southbridge run` and the domains: the BIOS image mapped like a
PC's flash, with the PAM registers given their effect on the shadow area."""

from __future__ import annotations

from southbridge.kvm.loader import map_bios
from southbridge.machine.pam import PamShadow
from southbridge.machine.pc import PcMachine

# The bundled guest (southbridge/guests/) a run gets when it names no firmware or kernel.
DEFAULT_GUEST = "tour"


def prepare_firmware(machine: PcMachine, image: bytes) -> PamShadow:
    """Map the BIOS image and give the PAM registers their effect on 0xC0000-0xFFFFF
    (firmware shadows itself there; the pc machine already filled CMOS). Point the returned
    shadow's `on_change` at the KVM session's `sync_memory`."""
    map_bios(machine, image)
    shadow = PamShadow(machine.memory)
    machine.i440fx.on_pam.append(shadow.set_pam)
    return shadow
