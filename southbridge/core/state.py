"""Device state save/restore: versioned plain data, validated on load (it is attacker input)."""

from __future__ import annotations

from typing import Any


class StateError(ValueError):
    """A saved state the hardware cannot be in, or of an unknown version."""


def check_version(state: dict[str, Any], kind: str, version: int) -> None:
    if not isinstance(state, dict):
        raise StateError(f"{kind}: state must be a mapping")
    if state.get("kind") != kind:
        raise StateError(f"{kind}: state is for {state.get('kind')!r}")
    if state.get("version") != version:
        raise StateError(f"{kind}: unsupported state version {state.get('version')!r}")


def get_int(state: dict[str, Any], key: str, lo: int, hi: int) -> int:
    """Fetch an integer field and check lo <= value <= hi."""
    v = state.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise StateError(f"field {key!r}={v!r} is not an integer in {lo}..{hi}")
    return v


def get_bool(state: dict[str, Any], key: str) -> bool:
    v = state.get(key)
    if not isinstance(v, bool):
        raise StateError(f"field {key!r}={v!r} is not a boolean")
    return v
