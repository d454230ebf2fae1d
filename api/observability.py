"""Request latency into ``abaxus_http_request_duration_seconds{method,route,status}``."""

from __future__ import annotations

import time

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LatencyMiddleware"]


class LatencyMiddleware(ASGIMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope["type"] != "http":
            await next_app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, record)
        finally:
            telemetry = scope["litestar_app"].state.services.telemetry
            route = scope.get("path_template") or "unmatched"
            telemetry.http_duration.labels(scope["method"], route, str(status)).observe(time.perf_counter() - started)
