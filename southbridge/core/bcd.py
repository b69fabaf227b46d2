"""Packed BCD, one decimal digit per nibble: the MC146818's clock bytes (two digits) and the
8254's BCD counting mode (four digits).

Decoding is lenient, as the chips are: a nibble above 9 counts as its value (a counter
built of such nibbles counts that way), so any byte a guest writes decodes to something.
"""

from __future__ import annotations


def to_bcd(value: int, digits: int = 2) -> int:
    """The low `digits` decimal digits of `value` (taken modulo 10**digits), packed."""
    value %= 10**digits
    return sum((value // 10**i % 10) << (4 * i) for i in range(digits))


def from_bcd(raw: int, digits: int = 2) -> int:
    """`digits` nibbles of `raw` as decimal digits (nibbles above 9 kept as their value)."""
    return sum((raw >> (4 * i) & 0xF) * 10**i for i in range(digits))


def is_bcd(raw: int, digits: int = 2) -> bool:
    """Whether each of the `digits` nibbles of `raw` is a decimal digit."""
    return all(raw >> (4 * i) & 0xF <= 9 for i in range(digits))
