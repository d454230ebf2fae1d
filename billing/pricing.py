"""From a subscription and a cutoff to priced line items (§11, §12).

Usage comes from ClickHouse (one query per window, grouped by customer and metric), prices
from the pure ``rating`` functions (one vectorised call per charge across all subscriptions
being priced). Lines are built in charge order, deterministically, so pricing the same data
again gives the same bytes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow as pa
from sqlalchemy import Connection, select

from abaxus.billing.plans import Charge, PlanVersion, load_version
from abaxus.billing.subscriptions import period_containing
from abaxus.errors import InvalidInput, NotFound
from abaxus.money import exponent, format_price, format_quantity
from abaxus.rating import AmountOverflow, ChargeTerms, Tier, rate
from abaxus.store.tables import metrics, subscriptions
from abaxus.store.usage import Aggregate, MetricSpec, UsageStore

__all__ = ["Priced", "Window", "billable_window", "choose_subscription", "load_specs", "price_windows", "terms_of"]


@dataclass(frozen=True)
class Window:
    """One subscription's billable window at a cutoff: [start, end) plus its period."""

    subscription: dict[str, Any]
    plan: PlanVersion
    period_start: int
    period_end: int  # the cutoff, to the second (inclusive to its end)
    start: int
    end: int  # exclusive


@dataclass
class Priced:
    window: Window
    lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(int(line["amount"]) for line in self.lines)


def billable_window(conn: Connection, sub: dict[str, Any], cutoff_ms: int) -> Window | None:
    """The subscription's window in the period holding the cutoff, or None if empty."""
    if cutoff_ms < sub["start_date"]:
        return None
    pv = load_version(conn, sub["plan_id"], sub["plan_version"])
    period_start, _ = period_containing(sub["start_date"], pv.months, cutoff_ms)
    cutoff_second = cutoff_ms // 1000 * 1000
    end = cutoff_second + 1000
    if sub["end_date"] is not None:
        end = min(end, sub["end_date"])
    start = max(period_start, sub["start_date"])
    if end <= start:
        return None
    return Window(sub, pv, period_start, cutoff_second, start, end)


def choose_subscription(conn: Connection, customer_id: str, cutoff_ms: int, subscription_id: str | None) -> Window:
    rows = [dict(r) for r in conn.execute(select(subscriptions).where(subscriptions.c.customer_id == customer_id)
                                          .order_by(subscriptions.c.created_at)).mappings()]
    if subscription_id is not None:
        rows = [r for r in rows if r["id"] == subscription_id]
        if not rows:
            raise NotFound("SUBSCRIPTION_NOT_FOUND", f"Customer '{customer_id}' has no subscription '{subscription_id}'.",
                           "subscription_id")
    windows = [w for w in (billable_window(conn, r, cutoff_ms) for r in rows) if w is not None]
    if not windows:
        raise InvalidInput("NO_ACTIVE_SUBSCRIPTION", "No subscription of this customer is billable at the cutoff.", "cutoff_date")
    if len(windows) > 1:
        raise InvalidInput("SUBSCRIPTION_ID_REQUIRED", "The customer has several billable subscriptions; name one.", "subscription_id")
    return windows[0]


def terms_of(charge: Charge) -> ChargeTerms:
    return ChargeTerms(
        pricing_model=charge.pricing_model, unit_price=charge.unit_price,
        tiers=tuple(Tier(t.up_to, t.unit_price, t.flat_amount) for t in charge.tiers or ()),
        package_size=charge.package_size, package_price=charge.package_price, amount=charge.amount)


def load_specs(conn: Connection, windows: list[Window]) -> list[MetricSpec]:
    """The metric definitions the windows' charges need (read before pricing, in a short transaction)."""
    keys = {c.metric_key for w in windows for c in w.plan.charges if c.metric_key}
    rows = conn.execute(select(metrics).where(metrics.c.key.in_(sorted(keys)))).mappings()
    return [MetricSpec(r["key"], r["aggregation"], r["property"],
                       Decimal(r["percentile"]) if r["percentile"] is not None else None) for r in rows]


def usage_for(usage: UsageStore, windows: list[Window], specs: list[MetricSpec],
              as_of_ms: int | None) -> dict[tuple[str, str, int], Aggregate]:
    """Aggregates keyed by (subscription id, metric key, window start): one query per distinct window."""
    groups: dict[tuple[int, int], list[Window]] = defaultdict(list)
    for w in windows:
        groups[(w.start, w.end)].append(w)
    out: dict[tuple[str, str, int], Aggregate] = {}
    for (start, end), group in groups.items():
        found = usage.aggregate_many(sorted({w.subscription["customer_id"] for w in group}), specs, start, end, as_of_ms)
        for w in group:
            for spec in specs:
                out[(w.subscription["id"], spec.key, w.start)] = found[(w.subscription["customer_id"], spec.key)]
    return out


def _line(charge: Charge, currency: str, quantity: Decimal, amount: int, rated: Any, i: int,
          agg: Aggregate | None) -> dict[str, Any]:
    unit_price = charge.unit_price if charge.pricing_model == "per_unit" else (
        charge.package_price if charge.pricing_model == "package" else charge.amount)
    line: dict[str, Any] = {
        "charge_id": charge.id, "description": charge.description, "pricing_model": charge.pricing_model,
        "metric_key": charge.metric_key, "quantity": format_quantity(quantity),
        "unit_price": format_price(unit_price, currency) if unit_price is not None else None, "amount": amount,
    }
    if charge.pricing_model == "package":
        line["packages"] = rated.packages[i].as_py()
    if charge.pricing_model in ("tiered", "volume"):
        breakdown = []
        lower = 0
        applied = rated.applied_tier[i].as_py() if rated.applied_tier is not None else None
        for k, tier in enumerate(charge.tiers or []):
            row = {"tier": k + 1, "from": lower, "up_to": tier.up_to,
                   "quantity": format_quantity(rated.tier_quantity[k][i].as_py()) if charge.pricing_model == "tiered"
                   else format_quantity(max(quantity, Decimal(0))),
                   "unit_price": format_price(tier.unit_price, currency),
                   "flat_amount": format_price(tier.flat_amount, currency), "amount": rated.tier_amount[k][i].as_py()}
            if charge.pricing_model == "tiered" or k == applied:
                breakdown.append(row)
            lower = tier.up_to if tier.up_to is not None else lower
        line["tier_breakdown"] = breakdown
    line["event_count"] = agg.event_count if agg else 0
    line["events_checksum"] = agg.events_checksum if agg else None
    return line


def price_windows(usage: UsageStore, windows: list[Window], specs: list[MetricSpec], as_of_ms: int | None,
                  quantities: dict[tuple[str, str, int], Decimal] | None = None) -> list[Priced]:
    """Price every window; each charge is rated in one vectorised call across windows."""
    aggregates = usage_for(usage, windows, specs, as_of_ms) if quantities is None else {}
    # Group (window, charge) rows by identical terms so each group is one rating call.
    by_terms: dict[tuple[str, int, str, str], list[tuple[int, Window, Charge]]] = defaultdict(list)
    for wi, w in enumerate(windows):
        for charge in w.plan.charges:
            by_terms[(w.plan.plan_id, w.plan.version, charge.id, w.plan.currency)].append((wi, w, charge))
    lines: dict[tuple[int, str], dict[str, Any]] = {}
    for (_, _, _, currency), rows in by_terms.items():
        charge = rows[0][2]
        qs: list[Decimal] = []
        for _, w, c in rows:
            if c.metric_key is None:
                qs.append(Decimal(1))
            elif quantities is not None:
                qs.append(quantities.get((w.subscription["id"], c.metric_key, w.start), Decimal(0)))
            else:
                qs.append(aggregates[(w.subscription["id"], c.metric_key, w.start)].quantity)
        try:
            rated = rate(pa.array(qs, pa.decimal128(38, 10)), terms_of(charge), exponent(currency))
        except AmountOverflow:
            raise InvalidInput("VALUE_OUT_OF_RANGE", f"Charge '{charge.id}' prices to more than a 64-bit count of minor units.",
                               None) from None
        amounts = rated.amount.to_pylist()
        for i, (wi, w, c) in enumerate(rows):
            agg = aggregates.get((w.subscription["id"], c.metric_key, w.start)) if c.metric_key and quantities is None else None
            line = _line(c, currency, qs[i], amounts[i], rated, i, agg)
            if quantities is not None:  # a preview: no events behind any line
                line["event_count"], line["events_checksum"] = None, None
            lines[(wi, c.id)] = line
    return [Priced(w, [lines[(wi, c.id)] for c in w.plan.charges]) for wi, w in enumerate(windows)]
