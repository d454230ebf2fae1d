"""Shared field types of the contract.

``Quantity``: an exact decimal that responses write as a plain JSON number (§4); ``DecimalIn``:
a price or quantity a request may send as a number or a decimal string (parsed exactly). The
markers in their metadata tell the OpenAPI generator how to document them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

__all__ = ["DecimalIn", "JsonNumber", "NumberOrString", "Quantity"]


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
