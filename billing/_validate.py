"""Small validators shared by the catalog modules; each raises the contract's code."""

from __future__ import annotations

import re

from abaxus.errors import InvalidInput
from abaxus.ids import CLIENT_ID_RE, KEY_RE

__all__ = ["client_id", "email", "key", "metadata", "text"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_MAX_EMAIL = 320  # RFC 5321: 64 + 1 + 255
_MAX_METADATA_KEYS, _MAX_METADATA_KEY, _MAX_METADATA_VALUE = 50, 40, 500  # §5


def text(value: str, field: str, *, min_len: int = 1, max_len: int) -> str:
    if not (min_len <= len(value) <= max_len):
        raise InvalidInput("INVALID_FIELD", f"'{field.rsplit('.', 1)[-1]}' must be {min_len}–{max_len} characters long.", field)
    return value


def client_id(value: str, field: str) -> str:
    if not CLIENT_ID_RE.fullmatch(value):
        raise InvalidInput("INVALID_ID", "Use 1–128 characters of letters, digits, '_', '.' or '-'.", field)
    return value


def key(value: str, field: str) -> str:
    if not KEY_RE.fullmatch(value):
        raise InvalidInput("INVALID_ID", "Use 1–64 characters of lower-case letters, digits or '_'.", field)
    return value


def email(value: str | None, field: str) -> str | None:
    if value is not None and (len(value) > _MAX_EMAIL or not _EMAIL.match(value)):
        raise InvalidInput("INVALID_FIELD", "Send an e-mail address such as billing@example.com.", field)
    return value


def metadata(value: dict[str, str] | None, field: str = "metadata") -> dict[str, str]:
    value = value or {}
    if len(value) > _MAX_METADATA_KEYS:
        raise InvalidInput("INVALID_FIELD", "Send at most 50 metadata keys.", field)
    for k, v in value.items():
        if not (1 <= len(k) <= _MAX_METADATA_KEY):
            raise InvalidInput("INVALID_FIELD", "Metadata keys must be 1–40 characters.", f"{field}.{k}")
        if len(v) > _MAX_METADATA_VALUE:
            raise InvalidInput("INVALID_FIELD", "Metadata values must be at most 500 characters.", f"{field}.{k}")
    return value
