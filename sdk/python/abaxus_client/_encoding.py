"""JSON in and out: one encoder, cached typed decoders, and the time and event-id helpers.

Decimals leave as JSON numbers written exactly (``0.00005``, never a binary float), which the
server parses from the text (spec §4). Responses decode into frozen structs; unknown fields
are ignored so a newer server never breaks an older client.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Hashable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar, cast

import msgspec

__all__ = ["decode", "encode", "event_id_for", "parse_timestamp", "to_timestamp"]

T = TypeVar("T")

_encoder = msgspec.json.Encoder(decimal_format="number")


def encode(body: Any) -> bytes:
    return _encoder.encode(body)


@lru_cache(maxsize=256)
def _decoder(type_: Hashable) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(type_)


def decode(raw: bytes, type_: type[T]) -> T:
    decoder: msgspec.json.Decoder[T] = _decoder(cast(Hashable, type_))
    return decoder.decode(raw)


def to_timestamp(value: str | datetime, name: str = "timestamp") -> str:
    """RFC 3339 text for a request; a naive datetime is refused here rather than by the server."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: pass a timezone-aware datetime (e.g. tzinfo=timezone.utc); "
                         "Abaxus refuses timestamps without an offset (TIMESTAMP_NOT_ZONED).")
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_timestamp(value: str) -> datetime:
    """A response timestamp (``2026-04-30T23:59:59Z``) as an aware UTC datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def event_id_for(idempotency_key: str) -> str:
    """The event id the server gives an idempotency key (spec §1), computed locally: no lookup."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).digest()
    return "evt_" + base64.b32encode(digest).decode("ascii").lower()[:26]
