"""Entitlements (§15): resolved grants for a customer, and a single-feature check."""

from __future__ import annotations

from decimal import Decimal

import msgspec
from litestar import Response, get
from sqlalchemy import Engine

from abaxus.api.contract import errors
from abaxus.api.routes import run, typed
from abaxus.billing.entitlements import UsageSince, live_sources, resolve, resolve_feature
from abaxus.billing.usage import summary_rows
from abaxus.pipeline.service import Ingestion
from abaxus.schemas.responses import EntitlementCheck, Entitlements
from abaxus.settings import Settings
from abaxus.store.usage import UsageStore

__all__ = ["ROUTES"]


def _usage_since(ingestion: Ingestion, usage: UsageStore, customer_id: str) -> UsageSince:
    metrics = ingestion.metrics()

    def usage_since(metric_key: str, start_ms: int, end_ms: int) -> Decimal:
        if metric_key not in metrics:
            return Decimal(0)
        rows = summary_rows(usage, metrics, customer_id, [metric_key], start_ms, end_ms)
        return Decimal(rows[0]["quantity"]) if rows else Decimal(0)

    return usage_since


@get("/v1/entitlements", tags=["entitlements"], responses=errors())
async def list_entitlements(customer_id: str, engine: Engine, ingestion: Ingestion,
                            usage: UsageStore, settings: Settings) -> Response[Entitlements]:
    now = settings.clock.now_ms()

    def work() -> Entitlements:
        found = resolve(customer_id, live_sources(engine, customer_id, now), _usage_since(ingestion, usage, customer_id), now)
        return msgspec.convert(found, Entitlements)

    return typed(await run(work), Entitlements)


@get("/v1/entitlements/check", tags=["entitlements"], responses=errors())
async def check_entitlement(customer_id: str, feature_key: str, engine: Engine, ingestion: Ingestion,
                            usage: UsageStore, settings: Settings) -> Response[EntitlementCheck]:
    now = settings.clock.now_ms()

    def work() -> EntitlementCheck:
        sources = live_sources(engine, customer_id, now).get(feature_key, [])
        out = resolve_feature(feature_key, sources, _usage_since(ingestion, usage, customer_id))
        out.pop("source_plans", None)
        return msgspec.convert(out, EntitlementCheck)

    return typed(await run(work), EntitlementCheck)


ROUTES = [list_entitlements, check_entitlement]
