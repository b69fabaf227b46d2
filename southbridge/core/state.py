"""Device state save/restore: versioned plain data, validated on load (it is attacker input).

One convention for every stateful part: the class declares `STATE_KIND` and `STATE_VERSION`,
`save()` returns `header(self) | {fields}`, and `restore(state)` starts with
`check_header(state, self)`, validates every field before it changes anything, and raises
only `StateError` for any input (a snapshot file, a QMP client or a test may hand it anything
JSON or Python can hold: huge integers, lists nested thousands deep, wrong types).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

# Error messages show at most this many characters of a saved value.
_BRIEF = 60


class StateError(ValueError):
    """A saved state the hardware cannot be in, or of an unknown version."""


@runtime_checkable
class Stateful(Protocol):
    """A part whose guest-visible state can be saved and restored."""

    STATE_KIND: ClassVar[str]
    STATE_VERSION: ClassVar[int]

    def save(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class Resettable(Stateful, Protocol):
    """A stateful part with a machine-reset (RST#) entry point."""

    def reset(self) -> None: ...


def brief(value: object) -> str:
    """A bounded description of an untrusted value for error messages: `repr` of a huge int
    raises ValueError (the int-to-str digit limit) and of a deeply nested list RecursionError,
    and either would be megabytes of text."""
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() <= 64:
            return repr(value)
        return f"<{value.bit_length()}-bit integer>"
    if isinstance(value, str | bytes | bytearray):
        text = repr(value[:_BRIEF])
        return text if len(value) <= _BRIEF else f"{text}... ({len(value)} long)"
    if isinstance(value, list | tuple | dict | set):
        return f"<{type(value).__name__} of {len(value)}>"
    return f"<{type(value).__name__}>"


def header(part: Stateful) -> dict[str, Any]:
    """The kind and version fields that open every saved state of `part`."""
    return {"kind": part.STATE_KIND, "version": part.STATE_VERSION}


def check_version(state: object, kind: str, version: int) -> dict[str, Any]:
    """Check that `state` is a mapping saved by `kind` at `version` (an int, not True or
    1.0, which compare equal to 1) and return it typed."""
    if not isinstance(state, dict):
        raise StateError(f"{kind}: state must be a mapping, not {brief(state)}")
    got = state.get("kind")
    if type(got) is not str or got != kind:
        raise StateError(f"{kind}: state is for {brief(got)}")
    v = state.get("version")
    if type(v) is not int or v != version:
        raise StateError(f"{kind}: unsupported state version {brief(v)}")
    return state


def check_header(state: object, part: Stateful) -> dict[str, Any]:
    """`check_version` against `part`'s declared kind and version."""
    return check_version(state, part.STATE_KIND, part.STATE_VERSION)


def check_keys(state: dict[str, Any], kind: str, keys: set[str] | frozenset[str]) -> None:
    """Reject a mapping whose keys are not exactly `keys`."""
    have = set(state)
    if have != keys:
        missing, unknown = sorted(keys - have), sorted(map(brief, have - keys))
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"unknown {', '.join(unknown[:8])}"] if unknown else []
        raise StateError(f"{kind}: {'; '.join(parts)}")


def get_int(state: dict[str, Any], key: str, lo: int, hi: int) -> int:
    """Fetch an integer field and check lo <= value <= hi."""
    v = state.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise StateError(f"field {key!r}={brief(v)} is not an integer in {lo}..{hi}")
    return v


def get_bool(state: dict[str, Any], key: str) -> bool:
    v = state.get(key)
    if not isinstance(v, bool):
        raise StateError(f"field {key!r}={brief(v)} is not a boolean")
    return v


def get_hex(state: dict[str, Any], key: str, size: int | None = None) -> bytes:
    """Fetch a hex-string field (of exactly `size` bytes when given) as bytes."""
    v = state.get(key)
    if type(v) is not str:
        raise StateError(f"field {key!r}={brief(v)} is not a hex string")
    # Bound: exactly 2 * size characters, checked before anything is decoded (a field
    # without a size is bounded by the file it came from).
    if size is not None and len(v) != 2 * size:
        raise StateError(f"field {key!r} holds {len(v)} hex digits, not {2 * size}")
    try:
        raw = bytes.fromhex(v)
    except ValueError:
        raise StateError(f"field {key!r}={brief(v)} is not hex") from None
    if size is not None and len(raw) != size:
        raise StateError(f"field {key!r} holds {len(raw)} bytes, not {size}")
    return raw


def get_mapping(state: dict[str, Any], key: str) -> dict[str, Any]:
    v = state.get(key)
    if not isinstance(v, dict):
        raise StateError(f"field {key!r}={brief(v)} is not a mapping")
    return v


def get_int_list(state: dict[str, Any], key: str, length: int, lo: int, hi: int) -> list[int]:
    """Fetch a list of exactly `length` integers, each in lo..hi."""
    v = state.get(key)
    if not isinstance(v, list) or len(v) != length:
        raise StateError(f"field {key!r}={brief(v)} is not a list of {length}")
    for i, x in enumerate(v):
        if not isinstance(x, int) or isinstance(x, bool) or not lo <= x <= hi:
            raise StateError(f"field {key!r}[{i}]={brief(x)} is not an integer in {lo}..{hi}")
    return list(v)
