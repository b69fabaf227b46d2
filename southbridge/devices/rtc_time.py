"""Calendar arithmetic for the MC146818 RTC: BCD, register encodings, DSE, alarm matching.

The RTC keeps a linear guest time in seconds since 1970-01-01 ("standard time", no leap
seconds, proleptic Gregorian). Everything here is a pure function of that number and of the
register-format bits, so the device can compute what its registers show at any instant
instead of ticking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from southbridge.core.bcd import from_bcd as from_bcd  # re-exported: the RTC's 2-digit BCD
from southbridge.core.bcd import is_bcd as is_bcd
from southbridge.core.bcd import to_bcd as to_bcd
from southbridge.core.clock import NS_PER_SEC

NS = NS_PER_SEC  # the clock's nanoseconds per second, under the name rtc.py uses
DAY = 86_400
HOUR = 3_600

# Bank 0 indexes of the clock and calendar bytes (MC146818A "Address map"), plus the PC
# century byte (the ACPI FADT century index QEMU and every PC BIOS use).
SECONDS, SECONDS_ALARM, MINUTES, MINUTES_ALARM, HOURS, HOURS_ALARM = 0, 1, 2, 3, 4, 5
DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR = 6, 7, 8, 9
CENTURY = 0x32
TIME_INDEXES = (SECONDS, MINUTES, HOURS, DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR, CENTURY)

PM = 0x80  # bit 7 of the hours byte in 12-hour mode
DONT_CARE = 0xC0  # alarm bytes with both top bits set match any value


@dataclass(frozen=True)
class Format:
    """Register B's data-mode bits: DM (binary instead of BCD) and 24/12 (24-hour)."""

    binary: bool
    h24: bool


def encode(v: int, fmt: Format) -> int:
    return v if fmt.binary else to_bcd(v)


def decode(b: int, fmt: Format) -> int:
    return b if fmt.binary else from_bcd(b)


def encode_hour(h: int, fmt: Format) -> int:
    if fmt.h24:
        return encode(h, fmt)
    h12 = h % 12 or 12
    return encode(h12, fmt) | (PM if h >= 12 else 0)


def decode_hour(b: int, fmt: Format) -> int:
    v = decode(b & 0x7F, fmt)
    return v if fmt.h24 else v % 12 + (12 if b & PM else 0)


# -- civil calendar (H. Hinnant's days_from_civil / civil_from_days) ------------------------
def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01; month and day outside their ranges carry like timegm()."""
    y += (m - 1) // 12
    m = (m - 1) % 12 + 1
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468 + (d - 1)


def civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def days_in_month(y: int, m: int) -> int:
    return days_from_civil(y, m + 1, 1) - days_from_civil(y, m, 1)


def weekday(days: int) -> int:
    """0 = Sunday for a day number since 1970-01-01 (a Thursday)."""
    return (days + 4) % 7


# -- daylight saving (MC146818A register B, DSE) ---------------------------------------------
# The datasheet: "On the last Sunday in April the time increments from 1:59:59 AM to 3:00:00
# AM. On the last Sunday in October when the time first reaches 1:59:59 AM it changes to
# 1:00:00 AM." The chip knows Sunday only from its day-of-week register, so "Sunday" here is
# the day the register shows as 1, which `wday_adj` relates to the true weekday.
def last_sunday(y: int, m: int, wday_adj: int) -> int:
    last = days_in_month(y, m)
    base = days_from_civil(y, m, 1)
    for d in range(last, last - 7, -1):
        if (weekday(base + d - 1) + wday_adj) % 7 == 0:
            return d
    raise AssertionError("a week always has a Sunday")


def dst_window(y: int, wday_adj: int) -> tuple[int, int]:
    """[start, end) of daylight time in year y, in standard-time seconds.

    Spring: standard 02:00:00 shows as 03:00:00. Autumn: the tick after daylight 01:59:59
    (standard 00:59:59) shows 01:00:00 again, so daylight time ends at standard 01:00:00.
    """
    start = days_from_civil(y, 4, last_sunday(y, 4, wday_adj)) * DAY + 2 * HOUR
    end = days_from_civil(y, 10, last_sunday(y, 10, wday_adj)) * DAY + 1 * HOUR
    return start, end


def dst_shift(s: int, dse: bool, wday_adj: int) -> int:
    """Seconds the registers run ahead of standard time `s` (3600 inside daylight time)."""
    if not dse:
        return 0
    start, end = dst_window(civil_from_days(s // DAY)[0], wday_adj)
    return HOUR if start <= s < end else 0


def next_dst_change(s: int, wday_adj: int) -> int:
    """The first standard second after `s` at which the daylight shift changes."""
    y = civil_from_days(s // DAY)[0]
    for year in (y, y + 1):
        for edge in dst_window(year, wday_adj):
            if edge > s:
                return edge
    raise AssertionError("a year has both DST edges")


def from_display(t: int, dse: bool, wday_adj: int) -> int:
    """Standard time for a displayed time the guest wrote.

    In the repeated autumn hour the first (daylight) reading is chosen: the chip has not yet
    "first reached 1:59:59". A time inside the skipped spring hour is taken as standard time
    (it shows an hour later), as a counter set to it would jump at once.
    """
    if dse and dst_shift(t - HOUR, dse, wday_adj):
        return t - HOUR
    return t


# -- time <-> registers -----------------------------------------------------------------------
def render(s: int, fmt: Format, dse: bool, wday_adj: int) -> dict[int, int]:
    """The clock bytes (index -> value) for standard time `s`."""
    t = s + dst_shift(s, dse, wday_adj)
    days, sod = divmod(t, DAY)
    y, m, d = civil_from_days(days)
    return {
        SECONDS: encode(sod % 60, fmt),
        MINUTES: encode(sod // 60 % 60, fmt),
        HOURS: encode_hour(sod // HOUR, fmt),
        DAY_OF_WEEK: encode((weekday(days) + wday_adj) % 7 + 1, fmt),
        DAY_OF_MONTH: encode(d, fmt),
        MONTH: encode(m, fmt),
        YEAR: encode(y % 100, fmt),
        CENTURY: encode(y // 100 % 100, fmt),
    }


@dataclass(frozen=True)
class Parsed:
    seconds: int  # standard time
    wday_adj: int
    valid: bool  # every byte was in range for its field (else the values carried over)


def parse(regs: Mapping[int, int], fmt: Format, dse: bool) -> Parsed:
    """Read clock bytes back into a time; out-of-range values carry like timegm()."""
    sec = decode(regs[SECONDS], fmt)
    mnt = decode(regs[MINUTES], fmt)
    hb = regs[HOURS]
    hour = decode_hour(hb, fmt)
    wday = decode(regs[DAY_OF_WEEK], fmt)
    mday = decode(regs[DAY_OF_MONTH], fmt)
    mon = decode(regs[MONTH], fmt)
    year = decode(regs[CENTURY], fmt) * 100 + decode(regs[YEAR], fmt)
    h12 = decode(hb & 0x7F, fmt)
    valid = (
        sec < 60
        and mnt < 60
        and (not hb & PM and hour < 24 if fmt.h24 else 1 <= h12 <= 12)
        and 1 <= wday <= 7
        and 1 <= mon <= 12
        and 1 <= mday <= days_in_month(year, mon)
        and (fmt.binary or all(is_bcd(regs[i] & (0x7F if i == HOURS else 0xFF)) for i in regs))
    )
    days = days_from_civil(year, mon, mday)
    t = days * DAY + hour * HOUR + mnt * 60 + sec
    # The weekday register counts on its own; remember how far it is from the true weekday.
    adj = (wday - 1 - weekday(t // DAY)) % 7
    return Parsed(from_display(t, dse, adj), adj, valid)


# -- alarm --------------------------------------------------------------------------------------
def alarm_candidates(
    alarm: tuple[int, int, int], fmt: Format
) -> tuple[list[int], list[int], list[int]] | None:
    """Hours, minutes and seconds whose register bytes the alarm bytes match.

    The chip compares bytes: a don't-care byte (0xC0-0xFF) matches anything, any other byte
    matches the values that encode to it in the current format (none for an impossible byte).
    """
    a_sec, a_min, a_hour = alarm

    def match(a: int, n: int, enc: Sequence[int]) -> list[int]:
        if a & DONT_CARE == DONT_CARE:
            return list(range(n))
        return [v for v in range(n) if enc[v] == a]

    enc60 = [encode(v, fmt) for v in range(60)]
    hours = match(a_hour, 24, [encode_hour(h, fmt) for h in range(24)])
    mins = match(a_min, 60, enc60)
    secs = match(a_sec, 60, enc60)
    if not (hours and mins and secs):
        return None
    return hours, mins, secs


def _next_in_day(sod: int, cands: tuple[list[int], list[int], list[int]]) -> int | None:
    """Smallest second-of-day >= sod whose h:m:s are all candidates, if any today."""
    hours, mins, secs = cands
    h0, m0, s0 = sod // HOUR, sod // 60 % 60, sod % 60
    for h in hours:
        if h < h0:
            continue
        for m in mins:
            if h == h0 and m < m0:
                continue
            for s in secs:
                if h == h0 and m == m0 and s < s0:
                    continue
                return h * HOUR + m * 60 + s
    return None


def next_display_match(t: int, cands: tuple[list[int], list[int], list[int]]) -> int:
    """Smallest displayed time >= t whose h:m:s match (always within a day and a second)."""
    days, sod = divmod(t, DAY)
    found = _next_in_day(sod, cands)
    if found is not None:
        return days * DAY + found
    first = cands[0][0] * HOUR + cands[1][0] * 60 + cands[2][0]
    return (days + 1) * DAY + first


def next_alarm(
    s: int, cands: tuple[list[int], list[int], list[int]], dse: bool, wday_adj: int
) -> int:
    """The first standard second >= s whose displayed time matches the alarm.

    With DSE the display is piecewise linear: search each stretch of constant shift in turn
    (a match lost in the skipped spring hour moves to the next day's; the repeated autumn
    hour matches twice, as on the chip).
    """
    while True:
        shift = dst_shift(s, dse, wday_adj)
        t = next_display_match(s + shift, cands) - shift
        if not dse:
            return t
        change = next_dst_change(s, wday_adj)
        if t < change:
            return t
        s = change
