"""The two struct bases: request bodies (sent) and response bodies (received).

Both are frozen and keyword-only. Responses never forbid unknown fields, so fields a newer
server adds are ignored instead of failing the decode (forward compatibility). Request
fields left ``UNSET`` are not sent at all, which is how "leave it alone" differs from ``None``
("clear it") on a PATCH.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

__all__ = ["UNSET", "DecimalLike", "Page", "Request", "Response", "Timestamp", "UnsetType"]

T = TypeVar("T")

#: A price or quantity as sent: exact (``Decimal("0.0001")``, ``49``, ``"49.00"``), never a float.
DecimalLike = Decimal | int | str
#: A request timestamp: RFC 3339 text with an offset, or a timezone-aware datetime.
Timestamp = str | datetime


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """A request body. Naive datetimes are refused at construction, naming the field."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime) and value.utcoffset() is None:
                raise ValueError(f"{name}: pass a timezone-aware datetime (e.g. tzinfo=timezone.utc); Abaxus "
                                 "refuses timestamps without an offset (TIMESTAMP_NOT_ZONED).")


class Response(msgspec.Struct, frozen=True, kw_only=True):
    """A response body. Timestamps stay the server's RFC 3339 strings (UTC, ``Z``): exact and
    round-trippable as filters; ``abaxus_client.parse_timestamp`` turns one into a datetime."""


class Page(Response, Generic[T], frozen=True, kw_only=True):
    """One page of a list (spec §1): ``data`` and the cursor of the next page (None at the end)."""

    data: list[T]
    next_cursor: str | None = None


def drop_unset(values: dict[str, Any]) -> dict[str, Any]:
    """Query parameters without the ones left unset or None."""
    return {k: v for k, v in values.items() if v is not None and v is not UNSET}
