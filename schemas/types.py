"""Shared field types of the contract.

``Quantity``: an exact decimal that responses write as a plain JSON number (§4); ``DecimalIn``:
a price or quantity a request may send as a number or a decimal string (parsed exactly). The
markers in their metadata tell the OpenAPI generator how to document them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from msgspec import Meta

__all__ = ["ClientId", "DecimalIn", "JsonNumber", "MetricKey", "NumberOrString", "Quantity", "text"]


class JsonNumber:
    """Marks a ``Decimal`` that is encoded as a JSON number, not a string."""

    def __repr__(self) -> str:
        return "JsonNumber()"


class NumberOrString:
    """Marks a ``Decimal`` input that may be sent as a JSON number or a decimal string."""

    def __repr__(self) -> str:
        return "NumberOrString()"


Quantity = Annotated[Decimal, JsonNumber()]
DecimalIn = Annotated[Decimal, NumberOrString()]

# Constraints checked in C while decoding and published in the OpenAPI document. A pattern
# miss is INVALID_ID, a length miss INVALID_FIELD (see ``schemas.codec``); the billing
# validators still check ids in full (a trailing newline passes a ``$`` pattern).
ClientId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.\-]{1,128}$", description="1–128 of [A-Za-z0-9_.-]")]
MetricKey = Annotated[str, Meta(pattern=r"^[a-z0-9_]{1,64}$", description="1–64 of [a-z0-9_]")]


def text(max_length: int, min_length: int = 1) -> object:
    """A bounded text field's constraint, for ``Annotated[str, text(200)]``."""
    return Meta(min_length=min_length, max_length=max_length)
