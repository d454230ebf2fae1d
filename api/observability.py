"""Request latency into ``abaxus_http_request_duration_seconds{method,route,status}``."""

from __future__ import annotations

import time

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from abaxus.api.errors import as_abaxus_error
from abaxus.telemetry import Telemetry

__all__ = ["LatencyMiddleware"]


class LatencyMiddleware(ASGIMiddleware):
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope["type"] != ScopeType.HTTP:
            await next_app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, record)
        except Exception as exc:
            # Middleware inside this one (auth, idempotency) answers by raising: the error
            # becomes a response only outside, so its status is the one it will be sent with.
            if status is None:
                status = as_abaxus_error(exc, scope["method"], scope["path"]).status
            raise
        finally:
            route = scope.get("path_template") or "unmatched"
            self.telemetry.http_duration.labels(scope["method"], route, str(status or 500)).observe(time.perf_counter() - started)
