"""Time as the contract wants it: RFC 3339 in, UTC milliseconds inside, ``…Z`` out.

Everything stored is an integer count of milliseconds since the Unix epoch (UTC), so the
metadata store orders and compares instants the same way on SQLite and PostgreSQL.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, datetime, timedelta

from abaxus.errors import InvalidInput

__all__ = [
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


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_timestamp(text: object, field: str) -> int:
    """Parse an RFC 3339 timestamp with an offset to UTC milliseconds (extra digits dropped)."""
    if not isinstance(text, str):
        raise InvalidInput("INVALID_TIMESTAMP", "Send an RFC 3339 timestamp string such as 2026-04-01T00:00:00Z.", field)
    m = _RFC3339.match(text)
    if m is None:
        raise InvalidInput("INVALID_TIMESTAMP", "Send an RFC 3339 timestamp such as 2026-04-01T00:00:00Z.", field)
    if m.group("offset") is None:
        raise InvalidInput("TIMESTAMP_NOT_ZONED", "Add a UTC offset to the timestamp, such as Z or +02:00.", field)
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    frac = (m.group(7) or ".0")[1:]
    millis = int((frac + "000")[:3])
    offset = m.group("offset").upper()
    try:
        base = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    except ValueError:
        raise InvalidInput("INVALID_TIMESTAMP", "The timestamp names no real date or time.", field) from None
    if offset != "Z":
        sign = 1 if offset[0] == "+" else -1
        oh, om = int(offset[1:3]), int(offset[4:6])
        if oh > 23 or om > 59:
            raise InvalidInput("INVALID_TIMESTAMP", "The UTC offset is out of range.", field)
        base -= sign * timedelta(hours=oh, minutes=om)
    ms = int(base.timestamp()) * 1000 + millis
    if ms < 0:
        raise InvalidInput("INVALID_TIMESTAMP", "Timestamps before 1970-01-01T00:00:00Z are not accepted.", field)
    return ms


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
