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
    "ms_to_datetime",
    "now_ms",
    "parse_timestamp",
    "to_ms",
]

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?$"
)


# Instants are accepted up to (not including) 2200-01-01T00:00:00Z. ClickHouse DateTime64(3)
# ends in 2299 and billing adds at most 12 months at a time, so every period, cutoff and end
# computed from an accepted instant stays representable everywhere it is stored.
MAX_MS = calendar.timegm((2200, 1, 1, 0, 0, 0)) * 1000
_OUT_OF_RANGE = ("The timestamp is out of range: send an instant from 1970-01-01T00:00:00Z up to "
                 "(not including) 2200-01-01T00:00:00Z.")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_timestamp(text: object, field: str) -> int:
    """Parse an RFC 3339 timestamp with an offset to UTC milliseconds (extra digits dropped).

    Only instants in [1970, 2200) are accepted (see ``MAX_MS``); the offset is applied in
    integer seconds, so no year, however far, can overflow date arithmetic here.
    """
    if not isinstance(text, str):
        raise InvalidInput("INVALID_TIMESTAMP", "Send an RFC 3339 timestamp string such as 2026-04-01T00:00:00Z.", field)
    m = _RFC3339.match(text)
    if m is None:
        raise InvalidInput("INVALID_TIMESTAMP", "Send an RFC 3339 timestamp such as 2026-04-01T00:00:00Z.", field)
    if m.group("offset") is None:
        raise InvalidInput("TIMESTAMP_NOT_ZONED", "Add a UTC offset to the timestamp, such as Z or +02:00.", field)
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    second = min(second, 59)  # a leap second counts as :59
    frac = (m.group(7) or ".0")[1:]
    millis = int((frac + "000")[:3])
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise InvalidInput("INVALID_TIMESTAMP", "The timestamp names no real date or time.", field) from None
    seconds = calendar.timegm((year, month, day, hour, minute, second)) - _offset_seconds(m.group("offset"), field)
    ms = seconds * 1000 + millis
    if not 0 <= ms < MAX_MS:
        raise InvalidInput("INVALID_TIMESTAMP", _OUT_OF_RANGE, field)
    return ms


def _offset_seconds(offset: str, field: str) -> int:
    """``Z`` or ``±hh:mm`` as seconds east of UTC."""
    if offset in ("Z", "z"):
        return 0
    oh, om = int(offset[1:3]), int(offset[4:6])
    if oh > 23 or om > 59:
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
