"""JSON decoding into strict structs, with msgspec's errors mapped to the contract's codes.

msgspec reports one problem per decode with a JSON path (``$.charges[0].tiers[2].up_to``);
this module turns it into the spec's dotted ``field`` (``charges.0.tiers.2.up_to``) and code.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, TypeVar

import msgspec

from abaxus.errors import AbaxusError, InvalidInput

__all__ = ["decode_json", "encode_json", "json_path_to_field"]

T = TypeVar("T")

_encoder = msgspec.json.Encoder(decimal_format="number")
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
# `[...]` marks a mapping value whose key msgspec does not report: the mapping is the field.
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")


def encode_json(obj: Any) -> bytes:
    """Encode a response; ``Decimal`` quantities become plain JSON numbers."""
    return _encoder.encode(obj)


def json_path_to_field(path: str) -> str | None:
    parts = [m.group(1) or m.group(2) for m in _PATH_PART.finditer(path) if m.group(1) or m.group(2)]
    return ".".join(parts) or None


@lru_cache(maxsize=None)
def _decoder(tp: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(tp)


def _join(base: str | None, name: str) -> str:
    return f"{base}.{name}" if base else name


def decode_json(body: bytes, tp: type[T]) -> T:
    """Decode a request body into ``tp`` or raise the contract's error for the first problem."""
    if not body.strip():
        body = b"{}"
    try:
        return _decoder(tp).decode(body)
    except msgspec.ValidationError as exc:
        raise validation_error(str(exc)) from None
    except msgspec.DecodeError:
        raise AbaxusError("MALFORMED_JSON", "Send a JSON object encoded as UTF-8.", None, status=400) from None


def validation_error(message: str) -> AbaxusError:
    m = _AT.search(message)
    field = json_path_to_field(m.group("path")) if m else None
    text = message[: m.start()] if m else message
    if text.startswith("Object missing required field"):
        name = text.split("`")[1]
        return InvalidInput("MISSING_FIELD", f"Add the required field '{name}'.", _join(field, name))
    if text.startswith("Object contains unknown field"):
        name = text.split("`")[1]
        return InvalidInput("UNKNOWN_FIELD", f"Remove '{name}': it is not a field of this object.", _join(field, name))
    if field is None and text.startswith("Expected `object`"):
        return AbaxusError("MALFORMED_JSON", "The body must be a JSON object.", None, status=400)
    if "decimal" in text:
        return InvalidInput("INVALID_DECIMAL", "Send a finite number or a decimal string such as \"0.0001\".", field)
    return InvalidInput("INVALID_FIELD", f"{text.rstrip('.')}.", field)

