"""Naming the member of a JSON body that is nested too deeply to decode.

msgspec decodes recursively and raises ``RecursionError`` on JSON nested about a thousand
levels deep (it only gets there through raw or untyped members: typed ones refuse a wrong
shape at once). No Abaxus body nests more than a few levels, so such a body is bad input,
answered ``422``. Requests never pay for this: it runs only after a decoder gave up, and
reads at most ``SCAN_BYTES`` of the body, so even the error path stays cheap.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from msgspec import inspect as mi

from abaxus.errors import InvalidInput

__all__ = ["MAX_DEPTH", "deep_path", "too_deep"]

MAX_DEPTH = 64  # deeper than any body of the API, far below where decoding fails
SCAN_BYTES = 256_000
# A string (escapes included) or one structural character; everything else is skipped.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]')


def deep_path(body: bytes, limit: int = MAX_DEPTH) -> list[str | int] | None:
    """Keys (``str``) and indexes (``int``) down to the first container opened deeper than ``limit``."""
    # One entry per open container: [is_object, current key or index, expecting a key].
    stack: list[list[Any]] = []
    for m in _TOKEN.finditer(body, 0, SCAN_BYTES):
        tok = m.group()
        first = tok[:1]
        if first in (b"{", b"["):
            if len(stack) >= limit:
                return _path_of(stack)
            stack.append([first == b"{", None if first == b"{" else 0, first == b"{"])
        elif first in (b"}", b"]"):
            if stack:
                stack.pop()
        elif first == b",":
            if stack:
                top = stack[-1]
                if top[0]:
                    top[2] = True
                else:
                    top[1] += 1
        elif stack and stack[-1][0] and stack[-1][2]:
            stack[-1][1], stack[-1][2] = _key_text(tok), False
    return None


def _path_of(stack: list[list[Any]]) -> list[str | int]:
    path: list[str | int] = []
    for _, part, _ in stack:
        if part is None:  # a container where a key belongs: the JSON is broken there
            break
        path.append(part)
    return path


def _key_text(token: bytes) -> str:
    try:
        return str(msgspec.json.decode(token))
    except msgspec.DecodeError:  # a lone surrogate escape: name it as written
        return token[1:-1].decode("utf-8", "replace")


def _schema_prefix(shape: Any, path: list[str | int]) -> list[str]:
    """The part of ``path`` the schema types: down to the first member that is not a struct or list.

    That member (``metadata``, ``events.0.properties``) is the field a client must fix; the
    keys below it are only the runaway nesting itself.
    """
    info: Any = mi.type_info(shape)
    out: list[str] = []
    for part in path:
        if isinstance(info, mi.UnionType):  # of a tagged union, the member that has this key
            members = [t for t in info.types if isinstance(t, (mi.StructType, mi.ListType))]
            info = next((t for t in members if isinstance(t, mi.StructType) and isinstance(part, str)
                         and any(f.encode_name == part for f in t.fields)), members[0] if members else None)
        if isinstance(info, mi.StructType) and isinstance(part, str):
            out.append(part)
            info = next((f.type for f in info.fields if f.encode_name == part), None)
        elif isinstance(info, mi.ListType) and isinstance(part, int):
            out.append(str(part))
            info = info.item_type
        else:
            break
    return out


def too_deep(body: bytes, shape: Any) -> InvalidInput:
    """The ``422`` for a body that decoding gave up on, naming the deep member when it is found."""
    path = deep_path(body)
    if path is None:
        return InvalidInput("INVALID_FIELD", "The body nests JSON too deeply to decode; no Abaxus field nests more "
                                             "than a few levels: send flat values.", None)
    field = ".".join(_schema_prefix(shape, path)) or None
    return InvalidInput("INVALID_FIELD", f"This value nests JSON more than {MAX_DEPTH} levels deep; no Abaxus field "
                                         "nests that deep: send a flat value.", field)
