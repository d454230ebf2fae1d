"""JSON decoding into strict structs, with msgspec's errors mapped to the contract's codes.

msgspec reports one problem per decode with a JSON path (``$.charges[0].tiers[2].up_to``);
this module turns it into the spec's dotted ``field`` (``charges.0.tiers.2.up_to``) and code.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from functools import cache
from typing import Any, TypeVar, cast

import msgspec
from msgspec import inspect as mi

from abaxus.errors import AbaxusError, InvalidInput
from abaxus.schemas.nesting import too_deep

__all__ = ["decode_json", "empty_body_error", "encode_json", "json_path_to_field", "require_utf8", "validation_error"]

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


@cache
def _decoder(tp: Hashable) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(tp)


def _join(base: str | None, name: str) -> str:
    return f"{base}.{name}" if base else name


def decode_json(body: bytes, tp: type[T], *, shape: Any = None) -> T:
    """Decode a request body into ``tp`` or raise the contract's error for the first problem.

    An empty body stands for ``{}`` (§1), but only where ``{}`` is a valid body: elsewhere
    it is ``400 MALFORMED_JSON``, since a client that sent nothing sent no object at all.
    ``shape`` names the field in a too-deep error where ``tp`` keeps members as raw JSON
    (the batch envelope); it defaults to ``tp``.
    """
    decoder: msgspec.json.Decoder[T] = _decoder(cast(Hashable, tp))  # mypy does not see a class as Hashable
    if not body.strip():
        try:
            return decoder.decode(b"{}")
        except msgspec.ValidationError as exc:
            raise empty_body_error(validation_error(str(exc)).field) from None
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        err = validation_error(str(exc))
        raise (_other_variants_field(body, tp, err) or err) from None
    except msgspec.DecodeError:
        raise AbaxusError("MALFORMED_JSON", "Send a JSON object encoded as UTF-8.", None, status=400) from None
    except RecursionError:
        raise too_deep(body, shape if shape is not None else tp) from None


def _other_variants_field(body: bytes, tp: Any, err: AbaxusError) -> InvalidInput | None:
    """``INVALID_FIELD`` for a field that another member of a tagged union defines.

    ``tiers`` on a ``per_unit`` charge is a field of the contract, just not of that model, so
    it is named as misplaced rather than unknown (``UNKNOWN_FIELD`` is for names no member has).
    """
    if err.code != "UNKNOWN_FIELD" or not err.field:
        return None
    *parts, name = err.field.split(".")
    found = _at(body, tp, parts)
    if found is None or not isinstance(found[0], mi.UnionType):
        return None
    union, value = found
    chosen = _member(union, value)
    if not isinstance(chosen, mi.StructType) or chosen.tag_field is None:
        return None
    others = {f.encode_name for t in union.types if isinstance(t, mi.StructType) and t is not chosen for f in t.fields}
    if name not in others:
        return None
    return InvalidInput("INVALID_FIELD", f"'{name}' is not used when {chosen.tag_field} is '{chosen.tag}'; remove it.",
                        err.field)


def _at(body: bytes, tp: Any, parts: list[str]) -> tuple[Any, Any] | None:
    """The declared type and the sent value at ``parts`` of the body, or None if it cannot be followed."""
    try:
        value: Any = msgspec.json.decode(body)
        info: Any = mi.type_info(tp)
        for part in parts:
            info = _member(info, value)
            if isinstance(info, mi.StructType):
                info, value = next(f.type for f in info.fields if f.encode_name == part), value[part]
            elif isinstance(info, mi.ListType):
                info, value = info.item_type, value[int(part)]
            else:
                return None
    except (msgspec.DecodeError, LookupError, ValueError, TypeError, StopIteration, RecursionError):
        return None
    return info, value


def _member(info: Any, value: Any) -> Any:
    """The member of a union ``value`` decodes as: by its tag, else the one struct or list member."""
    if not isinstance(info, mi.UnionType):
        return info
    members = [t for t in info.types if isinstance(t, (mi.StructType, mi.ListType))]
    tagged = [t for t in members if isinstance(t, mi.StructType) and t.tag_field is not None]
    if tagged and isinstance(value, dict):
        return next((t for t in tagged if value.get(t.tag_field) == t.tag), None)
    return members[0] if len(members) == 1 else None


def empty_body_error(required: str | None) -> AbaxusError:
    """``400`` for an empty body where ``{}`` would not do; ``required`` is a field it lacks."""
    needs = f"this request needs '{required}' and the other required fields" if required else "this request has required fields"
    return AbaxusError("MALFORMED_JSON", f"Send a JSON object body: {needs} (an empty body stands for {{}} only where "
                                         "{} is a valid body).", None, status=400)


def require_utf8(body: bytes) -> None:
    """Refuse a body that is not UTF-8 (§3), for decodes that keep members as raw JSON.

    msgspec checks UTF-8 only in the strings it decodes; raw members pass through as bytes.
    """
    if body.isascii():
        return
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise AbaxusError("MALFORMED_JSON", "Send the body encoded as UTF-8.", None, status=400) from None


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
    if "matching regex" in text:  # only ids and keys carry patterns (schemas.types)
        return InvalidInput("INVALID_ID", "Use only the characters this id allows: 1–128 of letters, digits, '_', '.', "
                            "'-' (metric and feature keys: 1–64 of a–z, 0–9, '_').", field)
    if "decimal" in text:
        return InvalidInput("INVALID_DECIMAL", "Send a finite number or a decimal string such as \"0.0001\".", field)
    return InvalidInput("INVALID_FIELD", f"{text.rstrip('.')}.", field)

