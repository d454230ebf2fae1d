"""Replays retried writes (§16): the same key and request return the stored response.

The key comes from the body field ``idempotency_key`` (it wins) or the ``Idempotency-Key``
header. Requests compare as parsed JSON, numbers exactly, so reformatting a body is no
change while any different value is.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from functools import partial
from http import HTTPStatus
from typing import Any

import anyio.to_thread
import msgspec
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, HTTPRequestEvent, Message, Receive, ReceiveMessage, Scope, Send
from sqlalchemy import Engine

from abaxus.billing.idempotency import claim, complete, release
from abaxus.clock import Clock, SystemClock
from abaxus.errors import InvalidInput

__all__ = ["IdempotencyMiddleware"]

_MAX_KEY_LENGTH = 255  # §16

_loose = msgspec.json.Decoder(float_hook=Decimal)
_canonical = msgspec.json.Encoder(decimal_format="number", order="sorted")


def _applies(method: str, path: str) -> bool:
    return method in ("POST", "PATCH") and path.startswith("/v1/") and not (
        path.startswith("/v1/events") or path.startswith("/v1/webhooks"))


def _fingerprint(method: str, path: str, body: bytes) -> tuple[str, Any]:
    """The request's digest and its parsed body (``None`` if it is not JSON).

    A body that does not parse (not JSON, not UTF-8, nested too deep to decode) is hashed as
    sent; the route then refuses it with its own error, which is what gets replayed.
    """
    try:
        parsed = _loose.decode(body) if body.strip() else {}
        canonical = _canonical.encode(parsed)
    except (msgspec.MsgspecError, TypeError, RecursionError):
        parsed, canonical = None, body
    digest = hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()
    return digest, parsed


async def _read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class IdempotencyMiddleware(ASGIMiddleware):
    """Claims, completes and releases keys in the metadata store (``engine``); ``clock`` dates claims."""

    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock: Clock = clock or SystemClock()

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope["type"] != ScopeType.HTTP or not _applies(scope["method"], scope["path"]):
            await next_app(scope, receive, send)
            return
        body = await _read_all(receive)
        sent = False

        async def replay_receive() -> ReceiveMessage:
            nonlocal sent
            if not sent:
                sent = True
                first: HTTPRequestEvent = {"type": "http.request", "body": body, "more_body": False}
                return first
            return await receive()

        fingerprint, parsed = _fingerprint(scope["method"], scope["path"], body)
        key = parsed.get("idempotency_key") if isinstance(parsed, dict) else None
        if key is None:
            for name, value in scope["headers"]:
                if name == b"idempotency-key":
                    key = value.decode("latin-1")
        if key is None:
            await next_app(scope, replay_receive, send)
            return
        api_key = scope["state"]["api_key"]
        if not isinstance(key, str) or not (1 <= len(key) <= _MAX_KEY_LENGTH):
            raise InvalidInput("IDEMPOTENCY_KEY_INVALID", "An idempotency key is 1–255 characters.", "idempotency_key")
        replay = await anyio.to_thread.run_sync(partial(claim, self.engine, api_key.id, key, fingerprint, clock=self.clock))
        if replay is not None:
            await send({"type": "http.response.start", "status": replay.status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(replay.body)).encode()),
                (b"idempotent-replayed", b"true")]})
            await send({"type": "http.response.body", "body": replay.body, "more_body": False})
            return
        status = 500
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await next_app(scope, replay_receive, capture)
        finally:
            if status < HTTPStatus.INTERNAL_SERVER_ERROR:
                await anyio.to_thread.run_sync(complete, self.engine, api_key.id, key, status, b"".join(chunks))
            else:
                await anyio.to_thread.run_sync(release, self.engine, api_key.id, key)
