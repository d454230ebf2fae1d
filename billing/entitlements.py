"""Entitlements (§15): what a customer may use now, resolved over its live subscriptions.

A feature is resolved across every subscription that has started and is not paused,
cancelled or ended (amendments count from their ``effective_at``): booleans
grant if any plan grants, custom values come from the most recently started subscription,
and limits add up, measured against the usage summary since the current period of the
oldest contributing subscription began. Subscriptions stay pinned to their plan versions,
so a new plan version changes nothing for an existing customer until a plan_change moves it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import Engine, select

from abaxus.billing.customers import load_customer
from abaxus.billing.plans import Entitlement, load_version
from abaxus.billing.subscriptions import period_containing
from abaxus.billing.timeline import Timeline, load_amendments
from abaxus.money import format_quantity
from abaxus.store.tables import subscriptions
from abaxus.timefmt import format_ms

__all__ = ["FeatureSource", "UsageSince", "live_sources", "resolve", "resolve_feature"]

UsageSince = Callable[[str, int, int], Decimal]
"""``usage_since(metric_key, start_ms, end_exclusive_ms)``: the summary quantity (§10)."""


class FeatureSource(msgspec.Struct, frozen=True):
    """One subscription's definition of a feature, with what ordering and measuring need."""

    plan_id: str
    plan_version: int
    start_date: int
    created_at: int
    period_start: int
    period_end: int
    entitlement: Entitlement


def live_sources(engine: Engine, customer_id: str, now: int) -> dict[str, list[FeatureSource]]:
    """Every live subscription's entitlements, grouped by feature key, oldest subscription first."""
    with engine.connect() as conn:
        load_customer(conn, customer_id, "customer_id")
        rows = conn.execute(
            select(subscriptions).where(subscriptions.c.customer_id == customer_id)
            .where(subscriptions.c.start_date <= now)
            .order_by(subscriptions.c.start_date, subscriptions.c.created_at, subscriptions.c.id)
        ).mappings().all()
        changes = load_amendments(conn, [r["id"] for r in rows])
        by_feature: dict[str, list[FeatureSource]] = {}
        for row in rows:
            timeline = Timeline(dict(row), changes[row["id"]]).upto(now)
            if timeline.status_at(now) != "active":  # paused, cancelled or ended: no entitlements
                continue
            pv = load_version(conn, *timeline.version_at(now))
            period_start, period_end = period_containing(row["start_date"], pv.months, now)
            for e in pv.entitlements:
                by_feature.setdefault(e.feature_key, []).append(FeatureSource(
                    plan_id=pv.plan_id, plan_version=pv.version, start_date=row["start_date"],
                    created_at=row["created_at"], period_start=period_start, period_end=period_end, entitlement=e))
    return by_feature


def resolve_feature(feature_key: str, sources: list[FeatureSource], usage_since: UsageSince) -> dict[str, Any]:
    """One feature's grant. When plans disagree on its type, the most recently started wins."""
    if not sources:
        return {"feature_key": feature_key, "type": None, "granted": False}
    newest = max(sources, key=lambda s: (s.start_date, s.created_at))
    kind = newest.entitlement.type
    same = [s for s in sources if s.entitlement.type == kind]
    out: dict[str, Any] = {"feature_key": feature_key, "type": kind}
    if kind == "boolean":
        out["granted"] = out["value"] = any(s.entitlement.value is True for s in same)
    elif kind == "custom":
        out["granted"], out["value"] = True, newest.entitlement.value
    else:
        limit = sum(int(s.entitlement.value or 0) for s in same)
        oldest = same[0]  # sources come oldest first
        metric_key = newest.entitlement.metric_key or ""
        used = usage_since(metric_key, oldest.period_start, oldest.period_end)
        out.update(granted=used < limit, limit=limit, current_usage=format_quantity(used),
                   remaining=format_quantity(max(Decimal(limit) - used, Decimal(0))), exceeded=used > limit)
    out["source_plans"] = [{"plan_id": s.plan_id, "plan_version": s.plan_version} for s in same]
    return out


def resolve(customer_id: str, sources: dict[str, list[FeatureSource]], usage_since: UsageSince,
            now: int) -> dict[str, Any]:
    """``GET /v1/entitlements``: every feature any live subscription defines, by feature key."""
    return {"customer_id": customer_id, "resolved_at": format_ms(now),
            "entitlements": [resolve_feature(key, sources[key], usage_since) for key in sorted(sources)]}
