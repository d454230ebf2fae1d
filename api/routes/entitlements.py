"""Entitlements (§15): resolved grants for a customer, and a single-feature check."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from litestar import Request, Response, get

from abaxus.api.responses import json_response
from abaxus.api.routes import run
from abaxus.api.state import Services
from abaxus.billing.entitlements import UsageSince, live_sources, resolve, resolve_feature
from abaxus.billing.usage import summary_rows
from abaxus.errors import InvalidInput
from abaxus.timefmt import now_ms


def _required(request: Request[Any, Any, Any], *names: str) -> list[str]:
    values = []
    for name in names:
        value = request.query_params.get(name)
        if not value:
            raise InvalidInput("MISSING_FIELD", f"Add the query parameter '{name}'.", name)
        values.append(value)
    return values


def _usage_since(svc: Services, customer_id: str) -> UsageSince:
    view = svc.intake.view
    view.refresh_if_stale()

    def usage_since(metric_key: str, start_ms: int, end_ms: int) -> Decimal:
        if metric_key not in view.metrics:
            return Decimal(0)
        rows = summary_rows(svc.intake.usage, view.metrics, customer_id, [metric_key], start_ms, end_ms)
        return Decimal(rows[0]["quantity"]) if rows else Decimal(0)

    return usage_since


@get("/v1/entitlements", tags=["entitlements"])
async def list_entitlements(request: Request[Any, Any, Any], svc: Services) -> Response[dict[str, Any]]:
    (customer_id,) = _required(request, "customer_id")
    now = now_ms()

    def work() -> dict[str, Any]:
        return resolve(customer_id, live_sources(svc.engine, customer_id, now), _usage_since(svc, customer_id), now)

    return json_response(await run(work))


@get("/v1/entitlements/check", tags=["entitlements"])
async def check_entitlement(request: Request[Any, Any, Any], svc: Services) -> Response[dict[str, Any]]:
    customer_id, feature_key = _required(request, "customer_id", "feature_key")
    now = now_ms()

    def work() -> dict[str, Any]:
        sources = live_sources(svc.engine, customer_id, now).get(feature_key, [])
        out = resolve_feature(feature_key, sources, _usage_since(svc, customer_id))
        out.pop("source_plans", None)
        return out

    return json_response(await run(work))


ROUTES = [list_entitlements, check_entitlement]
