"""The dashboard reads and writes through the app's own public API, in-process, with the signed-in key.

So every figure on a page is exactly what the API answers, and what a key may do is decided
by the API's own auth middleware: a ``read`` key asking to charge gets the API's
``403 INSUFFICIENT_SCOPE``, which the page shows. No service object is touched directly.
JSON numbers are parsed as ``Decimal`` (quantities are exact decimals, spec §4).
"""

from __future__ import annotations

import json
from decimal import Decimal
from http import HTTPStatus
from typing import Any

import httpx

__all__ = ["Api", "ApiError"]


class ApiError(Exception):
    """An API answer outside 2xx, with the contract's ``{"error": …}`` members (§3)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.field = status, code, message, field
        self.extra = extra or {}


def _decode(response: httpx.Response) -> Any:
    return json.loads(response.content, parse_float=Decimal)


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < HTTPStatus.BAD_REQUEST:
        return
    try:
        err = _decode(response)["error"]
        extra = {k: v for k, v in err.items() if k not in ("code", "message", "field")}
        raise ApiError(response.status_code, str(err["code"]), str(err["message"]), err.get("field"), extra)
    except (ValueError, KeyError, TypeError):
        raise ApiError(response.status_code, "HTTP_ERROR", response.text[:300] or response.reason_phrase) from None


class Api:
    """One signed-in key's view of the API, for the length of one dashboard request."""

    def __init__(self, app: Any, key: str) -> None:
        self._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://abaxus",
                                       headers={"Authorization": f"Bearer {key}"}, timeout=120)

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def get(self, path: str, **params: Any) -> Any:
        response = await self._http.get(path, params={k: v for k, v in params.items() if v is not None})
        _raise_for(response)
        return _decode(response)

    async def text(self, path: str) -> str:
        response = await self._http.get(path)
        _raise_for(response)
        return response.text

    async def post(self, path: str, body: dict[str, Any], idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = await self._http.post(path, content=json.dumps(body), headers={**headers,
                                         "Content-Type": "application/json"})
        _raise_for(response)
        return _decode(response)

    async def scope(self) -> str:
        """``admin`` or ``read`` as the API itself decides (an ``ingest`` key is refused both reads)."""
        await self.get("/v1/metrics", limit=1)
        try:
            await self.get("/v1/api-keys", limit=1)
        except ApiError as err:
            if err.status == HTTPStatus.FORBIDDEN:
                return "read"
            raise
        return "admin"
