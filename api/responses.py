"""JSON responses and list pages, encoded once with the contract's number formats."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response

from abaxus.errors import InvalidInput
from abaxus.schemas.codec import encode_json

__all__ = ["encoded_json_response", "json_response", "list_response", "page_params"]

_MAX_LIMIT = 1000  # the page size bound (§1)


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response[Any]:
    """``content`` encoded once; the handler's annotation names the contract struct it stands for."""
    return Response(content=encode_json(content), status_code=status, media_type="application/json", headers=headers)


def encoded_json_response(body: bytes, status: int = 200) -> Response[Any]:
    """A body already encoded as the contract's JSON (the intake's columnar answer)."""
    return Response(content=body, status_code=status, media_type="application/json")


def list_response(data: list[Any], next_cursor: str | None) -> Response[bytes]:
    return json_response({"data": data, "next_cursor": next_cursor})


def page_params(request: Request[Any, Any, Any]) -> tuple[int, str | None]:
    """``limit`` (1–1000, default 100) and ``cursor`` from the query string."""
    raw = request.query_params.get("limit")
    limit = 100
    if raw is not None:
        if not raw.isdigit() or not (1 <= int(raw) <= _MAX_LIMIT):
            raise InvalidInput("INVALID_FIELD", "limit must be a whole number from 1 to 1000.", "limit")
        limit = int(raw)
    return limit, request.query_params.get("cursor") or None
