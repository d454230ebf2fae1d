"""Reading request bodies: media type, size and strict decoding into a schema struct."""

from __future__ import annotations

from typing import Any, TypeVar

from litestar import Request

from abaxus.errors import AbaxusError
from abaxus.schemas.codec import decode_json

__all__ = ["read_body", "read_raw"]

T = TypeVar("T")
ONE_MB = 1_000_000
FIVE_MB = 5_000_000


async def read_raw(request: Request[Any, Any, Any], limit: int = ONE_MB) -> bytes:
    body = await request.body()
    if len(body) > limit:
        raise AbaxusError("PAYLOAD_TOO_LARGE", f"The body is {len(body):,} bytes; send at most {limit:,}.", status=413)
    if body.strip():
        ctype = request.headers.get("content-type", "")
        media, _, params = ctype.partition(";")
        charset = params.strip().lower().replace(" ", "")
        if media.strip().lower() != "application/json" or charset not in ("", "charset=utf-8"):
            raise AbaxusError("UNSUPPORTED_MEDIA_TYPE", "Send the body as Content-Type: application/json (UTF-8).",
                              status=415)
    return body


async def read_body(request: Request[Any, Any, Any], tp: type[T], limit: int = ONE_MB) -> T:
    """Decode the body into ``tp``; an empty body counts as ``{}``."""
    return decode_json(await read_raw(request, limit), tp)
