"""Moved to `southbridge.machine.pam` (the PAM decode changes the machine's memory map; the
KVM session only re-syncs its slots through `on_change`); kept so existing imports work."""

from southbridge.machine.pam import RE, SEGMENTS, WE, WINDOW_BASE, WINDOW_END, PamShadow

__all__ = ["RE", "SEGMENTS", "WE", "WINDOW_BASE", "WINDOW_END", "PamShadow"]
