"""Authentication, scopes and per-key rate limiting, as one middleware (§2, §17).

Scope rules live in ``allowed_scopes`` alone, so route modules never check keys themselves.
"""

from __future__ import annotations

import threading
import time

import anyio.to_thread
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from sqlalchemy import Engine

from abaxus.billing.api_keys import AuthenticatedKey, authenticate
from abaxus.errors import AbaxusError, Forbidden, Unauthenticated

__all__ = ["AuthMiddleware", "RateLimiter", "allowed_scopes"]

PUBLIC_PATHS = ("/healthz", "/readyz", "/v1/webhooks/stripe")
_READ_POSTS = ("/v1/usage/compute", "/v1/pricing/calculate", "/v1/pricing/preview")


def allowed_scopes(method: str, path: str) -> frozenset[str]:
    if path.startswith("/v1/events"):
        return frozenset({"admin", "ingest", "read"} if method == "GET" else {"admin", "ingest"})
    if method in ("GET", "HEAD"):
        return frozenset({"admin"} if path.startswith("/v1/api-keys") else {"admin", "read"})
    if path in _READ_POSTS:
        return frozenset({"admin", "read"})
    return frozenset({"admin"})


class RateLimiter:
    """Fixed one-minute windows per key; a batch counts as one request."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}

    def hit(self, key_id: str) -> tuple[bool, int, int]:
        """(allowed, remaining, window end in Unix seconds)."""
        window = int(time.time()) // 60
        with self._lock:
            start, count = self._windows.get(key_id, (window, 0))
            if start != window:
                start, count = window, 0
            count += 1
            self._windows[key_id] = (start, count)
        reset = (window + 1) * 60
        return count <= self.per_minute, max(self.per_minute - count, 0), reset


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path == "/schema" or path.startswith("/schema/")


class AuthMiddleware(ASGIMiddleware):
    """Finds the key in the metadata store (``engine``), counts the request in ``limiter``, checks the scope."""

    def __init__(self, engine: Engine, limiter: RateLimiter) -> None:
        self.engine = engine
        self.limiter = limiter

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope["type"] != "http" or _is_public(scope["path"]):
            await next_app(scope, receive, send)
            return
        key = await self._authenticate(scope)
        allowed, remaining, reset = self.limiter.hit(key.id)
        limit_headers = [
            (b"x-ratelimit-limit", str(self.limiter.per_minute).encode()),
            (b"x-ratelimit-remaining", str(remaining).encode()),
            (b"x-ratelimit-reset", str(reset).encode()),
        ]
        if not allowed:
            retry = max(reset - int(time.time()), 1)
            raise AbaxusError("RATE_LIMITED", f"Over {self.limiter.per_minute} requests this minute; retry in {retry} s.",
                              status=429, headers={"Retry-After": str(retry), **{k.decode(): v.decode() for k, v in limit_headers}})
        if scope["method"] not in ("OPTIONS",) and key.scope not in allowed_scopes(scope["method"], scope["path"]):
            raise Forbidden("INSUFFICIENT_SCOPE", f"This key's scope '{key.scope}' does not allow {scope['method']} {scope['path']}.")
        scope.setdefault("state", {})["api_key"] = key

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *limit_headers]
            await send(message)

        await next_app(scope, receive, send_with_headers)

    async def _authenticate(self, scope: Scope) -> AuthenticatedKey:
        header = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthenticated()
        key = await anyio.to_thread.run_sync(authenticate, self.engine, secret.strip())
        if key is None:
            raise Unauthenticated()
        return key
