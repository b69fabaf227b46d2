"""Packed BCD (core/bcd.py), the one helper for the RTC's clock bytes and the 8254's BCD
mode: every value of both chips' ranges, against the datasheets' digit-per-nibble rule."""

from __future__ import annotations

from southbridge.core.bcd import from_bcd, is_bcd, to_bcd


def test_two_digits_as_the_mc146818_stores_them() -> None:
    # MC146818A "Time, calendar and alarm data modes": BCD 0-59 seconds is 0x00-0x59.
    for v in range(100):
        assert to_bcd(v) == (v // 10) << 4 | v % 10
        assert from_bcd(to_bcd(v)) == v and is_bcd(to_bcd(v))
    assert to_bcd(59) == 0x59 and to_bcd(123) == 0x23  # two digits: modulo 100


def test_decoding_is_lenient_for_every_byte() -> None:
    for b in range(256):
        assert from_bcd(b) == (b >> 4) * 10 + (b & 0xF)
        assert is_bcd(b) == ((b >> 4) <= 9 and (b & 0xF) <= 9)


def test_four_digits_as_the_8254_bcd_counter_counts() -> None:
    """8254 datasheet, control word bit 0: a BCD counter of 4 decades (0-9999)."""
    for raw in range(1 << 16):
        digits = [(raw >> shift) & 0xF for shift in (12, 8, 4, 0)]
        assert from_bcd(raw, 4) == digits[0] * 1000 + digits[1] * 100 + digits[2] * 10 + digits[3]
    for v in range(20000):
        w = v % 10000
        assert to_bcd(v, 4) == w // 1000 << 12 | w // 100 % 10 << 8 | w // 10 % 10 << 4 | w % 10
    assert to_bcd(9999, 4) == 0x9999 and from_bcd(0x1234, 4) == 1234
