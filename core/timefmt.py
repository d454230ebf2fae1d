"""Time as the contract wants it: RFC 3339 in, UTC milliseconds inside, ``…Z`` out.

Everything stored is an integer count of milliseconds since the Unix epoch (UTC), so the
metadata store orders and compares instants the same way on SQLite and PostgreSQL.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, datetime

from abaxus.errors import InvalidInput

__all__ = [
    "MAX_MS",
    "add_months",
    "format_ms",
    "in_range",
    "ms_to_datetime",
    "now_ms",
    "parse_timestamp",
    "timestamp_error",
    "to_ms",
    "zoned_ms",
]

_MAX_OFFSET_HOURS, _MAX_MINUTE = 23, 59

# RFC 3339 as msgspec reads it (the events' decoder), so an instant is read alike everywhere:
# ASCII digits only (``\d`` would take full-width or Arabic-Indic digits, which int() reads),
# and the offset's colon optional as in ISO 8601 (+0200).
_RFC3339 = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:?[0-9]{2})?$"
)
_NOT_A_STRING = "Send an RFC 3339 timestamp string such as 2026-04-01T00:00:00Z."
_NOT_RFC3339 = "Send an RFC 3339 timestamp such as 2026-04-01T00:00:00Z."
_NOT_ZONED = "Add a UTC offset to the timestamp, such as Z or +02:00."
_LEAP_SECOND = 60


# Instants are accepted up to (not including) 2200-01-01T00:00:00Z. ClickHouse DateTime64(3)
# ends in 2299 and billing adds at most 12 months at a time, so every period, cutoff and end
# computed from an accepted instant stays representable everywhere it is stored.
MAX_MS = calendar.timegm((2200, 1, 1, 0, 0, 0)) * 1000
_OUT_OF_RANGE = ("The timestamp is out of range: send an instant from 1970-01-01T00:00:00Z up to "
                 "(not including) 2200-01-01T00:00:00Z.")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_timestamp(text: object, field: str) -> int:
    """Parse an RFC 3339 timestamp with an offset to UTC milliseconds.

    Fractions are rounded to the microsecond at the 7th digit (as msgspec does for events),
    then cut to the millisecond.

    Only instants in [1970, 2200) are accepted (see ``MAX_MS``); the offset is applied in
    integer seconds, so no year, however far, can overflow date arithmetic here.
    """
    if not isinstance(text, str):
        raise InvalidInput("INVALID_TIMESTAMP", _NOT_A_STRING, field)
    m = _RFC3339.match(text)
    if m is None:
        raise InvalidInput("INVALID_TIMESTAMP", _NOT_RFC3339, field)
    if m.group("offset") is None:
        raise InvalidInput("TIMESTAMP_NOT_ZONED", _NOT_ZONED, field)
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if second == _LEAP_SECOND:  # counts as :59 (61 and up name no time)
        second = 59
    frac = (m.group(7) or ".")[1:]
    micros = int((frac + "000000")[:6]) + (frac[6:7] >= "5")
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise InvalidInput("INVALID_TIMESTAMP", "The timestamp names no real date or time.", field) from None
    seconds = calendar.timegm((year, month, day, hour, minute, second)) - _offset_seconds(m.group("offset"), field)
    return in_range(seconds * 1000 + micros // 1000, field)


def in_range(ms: int, field: str) -> int:
    """``ms`` if it is an instant Abaxus accepts (see ``MAX_MS``), else the range error."""
    if not 0 <= ms < MAX_MS:
        raise InvalidInput("INVALID_TIMESTAMP", _OUT_OF_RANGE, field)
    return ms


def zoned_ms(dt: datetime, field: str) -> int:
    """A datetime a decoder already read (msgspec, on the events' fast path) to UTC milliseconds.

    The same rules as ``parse_timestamp``: an offset is required, digits past the millisecond
    are dropped, the offset is applied in integer seconds (no overflow at year 1 or 9999).
    The range is left to ``in_range``, so a caller can check tighter bounds of its own first.
    """
    offset = dt.utcoffset()
    if offset is None:
        raise InvalidInput("TIMESTAMP_NOT_ZONED", _NOT_ZONED, field)
    seconds = calendar.timegm((dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)) - int(offset.total_seconds())
    return seconds * 1000 + dt.microsecond // 1000


def timestamp_error(value: object, field: str) -> InvalidInput:
    """The error ``parse_timestamp`` gives ``value``, for a decoder that refused it itself.

    msgspec refuses what this module refuses and a leap second too (Python's datetime has no
    :60, which ``parse_timestamp`` reads as :59): that one gets the general message.
    """
    try:
        parse_timestamp(value, field)
    except InvalidInput as err:
        return err
    return InvalidInput("INVALID_TIMESTAMP", _NOT_RFC3339, field)


def _offset_seconds(offset: str, field: str) -> int:
    """``Z``, ``±hh:mm`` or ``±hhmm`` as seconds east of UTC."""
    if offset in ("Z", "z"):
        return 0
    oh, om = int(offset[1:3]), int(offset[-2:])
    if oh > _MAX_OFFSET_HOURS or om > _MAX_MINUTE:
        raise InvalidInput("INVALID_TIMESTAMP", "The UTC offset is out of range.", field)
    return (1 if offset[0] == "+" else -1) * (oh * 3600 + om * 60)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).replace(microsecond=(ms % 1000) * 1000)


def to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return calendar.timegm(dt.utctimetuple()) * 1000 + dt.microsecond // 1000


def format_ms(ms: int | None) -> str | None:
    """UTC with ``Z``; three fractional digits only when the milliseconds are non-zero."""
    if ms is None:
        return None
    seconds, millis = divmod(ms, 1000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def add_months(ms: int, months: int) -> int:
    """Add calendar months to an instant, clamping the day to the month's end (§8)."""
    dt = ms_to_datetime(ms)
    total = dt.month - 1 + months
    year, month = dt.year + total // 12, total % 12 + 1
    day = min(dt.day, calendar.monthrange(year, month)[1])
    return to_ms(dt.replace(year=year, month=month, day=day))
