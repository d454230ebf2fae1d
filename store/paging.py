"""Keyset pagination shared by every list endpoint: newest first, opaque cursors.

A cursor encodes the last row's sort key plus the list it belongs to, so a cursor from
another list is refused (``INVALID_CURSOR``) instead of silently skipping rows.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import Column, Connection, Select, and_, or_

from abaxus.errors import InvalidInput

__all__ = ["Page", "event_cursor", "fetch_page", "parse_event_cursor"]


class Page(msgspec.Struct):
    rows: list[Any]
    next_cursor: str | None


def _encode(kind: str, values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode([kind, *values])).decode().rstrip("=")


def _decode(kind: str, cursor: str, width: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = msgspec.json.decode(raw)
    except Exception:  # noqa: BLE001 - any undecodable cursor is refused below
        data = None
    if not isinstance(data, list) or len(data) != width + 1 or data[0] != kind:
        raise InvalidInput("INVALID_CURSOR", "Pass back the next_cursor this list returned, unchanged.", "cursor")
    return data[1:]


def event_cursor(row: dict[str, Any]) -> str:
    """The cursor after one raw event of a usage-store list (ordered by timestamp, then key)."""
    return _encode("events", [row["timestamp"], row["idempotency_key"]])


def parse_event_cursor(cursor: str) -> tuple[int, str]:
    ts, key = _decode("events", cursor, 2)
    if not isinstance(ts, int) or not isinstance(key, str):
        raise InvalidInput("INVALID_CURSOR", "Pass back the next_cursor this list returned, unchanged.", "cursor")
    return ts, key


def fetch_page(
    conn: Connection,
    query: Select[Any],
    order: Sequence[Column[Any]],
    *,
    kind: str,
    limit: int,
    cursor: str | None,
    descending: bool = True,
) -> Page:
    """Run ``query`` ordered by ``order`` (unique together), one page after ``cursor``."""
    if cursor:
        values = _decode(kind, cursor, len(order))
        # Lexicographic "row after the cursor" without tuple comparison (portable to SQLite).
        clauses = []
        for i, col in enumerate(order):
            eq = [order[j] == values[j] for j in range(i)]
            step = col < values[i] if descending else col > values[i]
            clauses.append(and_(*eq, step))
        query = query.where(or_(*clauses))
    query = query.order_by(*[c.desc() if descending else c.asc() for c in order]).limit(limit + 1)
    rows = list(conn.execute(query).mappings())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = _encode(kind, [last[c.name] for c in order])
    return Page(rows=rows, next_cursor=next_cursor)
