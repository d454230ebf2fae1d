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
from typing import Any, assert_never

import pyarrow as pa
from sqlalchemy import Connection, select

from abaxus.billing.commercial import Commitment, minimum_line
from abaxus.billing.plans import PlanVersion, load_version
from abaxus.billing.subscriptions import period_containing
from abaxus.billing.timeline import Timeline, load_amendments, load_timeline, subtract
from abaxus.errors import InvalidInput, NotFound
from abaxus.money import exponent, format_price, format_quantity
from abaxus.rating import AmountOverflow, FlatFee, Package, PerUnit, Terms, Tier, Tiered, Volume, rate
from abaxus.schemas.catalog import (
    Charge,
    FlatFeeCharge,
    PackageCharge,
    PerUnitCharge,
    TieredCharge,
    VolumeCharge,
    pricing_model,
)
from abaxus.store.tables import metrics, subscriptions
from abaxus.store.usage import Aggregate, MetricSpec, UsageStore

__all__ = ["Priced", "Window", "billable_windows", "choose_subscription", "load_specs", "price_windows", "terms_of"]

_DAY_MS = 86_400_000


@dataclass(frozen=True)
class Window:
    """One plan version's share of a subscription's billable window at a cutoff.

    Usage counts events in [start, end) outside ``gaps`` (pauses, and the stretches another
    version priced after a plan change). Lines of an earlier version carry ``charge_prefix``
    (``<plan_id>:v<version>:``) so charge ids stay unique on the invoice.
    """

    subscription: dict[str, Any]
    plan: PlanVersion
    period_start: int
    period_end: int  # the cutoff, to the second (inclusive to its end)
    start: int
    end: int  # exclusive
    gaps: tuple[tuple[int, int], ...] = ()
    charge_prefix: str = ""


@dataclass
class Priced:
    """A subscription's priced lines; ``window`` is its last (current-version) window."""

    window: Window
    lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(int(line["amount"]) for line in self.lines)


def billable_windows(conn: Connection, sub: dict[str, Any], cutoff_ms: int, timeline: Timeline | None = None) -> list[Window]:
    """The subscription's windows in the period holding the cutoff, one per plan version present.

    Empty when nothing of the period is billable (not started, paused throughout, cancelled
    or ended before it). Pauses cut their interval out; a plan change splits the period.
    """
    if cutoff_ms < sub["start_date"]:
        return []
    timeline = timeline or load_timeline(conn, sub)
    base = load_version(conn, sub["plan_id"], sub["plan_version"])
    period_start, _ = period_containing(sub["start_date"], base.months, cutoff_ms)
    cutoff_second = cutoff_ms // 1000 * 1000
    lo, hi = max(period_start, sub["start_date"]), min(cutoff_second + 1000, timeline.stop())
    if hi <= lo:
        return []
    pauses = timeline.pauses()
    changes = timeline.versions()
    # Each version owns [its change, the next change) of the window, less the pauses.
    owned: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for i, (since, plan_id, version) in enumerate(changes):
        until = changes[i + 1][0] if i + 1 < len(changes) else hi
        a, b = max(since, lo), min(until, hi)
        pieces = subtract(a, b, pauses) if b > a else []
        if pieces:
            owned.setdefault((plan_id, version), []).extend(pieces)
    windows = []
    last = max(owned.items(), key=lambda kv: kv[1][-1][1])[0] if owned else None
    for (plan_id, version), pieces in sorted(owned.items(), key=lambda kv: kv[1][0][0]):
        pv = base if (plan_id, version) == (base.plan_id, base.version) else load_version(conn, plan_id, version)
        start, end = pieces[0][0], pieces[-1][1]
        gaps = tuple((pieces[k][1], pieces[k + 1][0]) for k in range(len(pieces) - 1))
        prefix = "" if (plan_id, version) == last else f"{plan_id}:v{version}:"
        windows.append(Window(sub, pv, period_start, cutoff_second, start, end, gaps, prefix))
    return windows


def choose_subscription(conn: Connection, customer_id: str, cutoff_ms: int, subscription_id: str | None) -> list[Window]:
    """The windows of the one subscription billable at the cutoff (§12 rule 1)."""
    rows = [dict(r) for r in conn.execute(select(subscriptions).where(subscriptions.c.customer_id == customer_id)
                                          .order_by(subscriptions.c.created_at)).mappings()]
    if subscription_id is not None:
        rows = [r for r in rows if r["id"] == subscription_id]
        if not rows:
            raise NotFound("SUBSCRIPTION_NOT_FOUND", f"Customer '{customer_id}' has no subscription '{subscription_id}'.",
                           "subscription_id")
    timelines = load_amendments(conn, [r["id"] for r in rows])
    billable = [ws for ws in (billable_windows(conn, r, cutoff_ms, Timeline(r, timelines[r["id"]])) for r in rows) if ws]
    if not billable:
        raise InvalidInput("NO_ACTIVE_SUBSCRIPTION", "No subscription of this customer is billable at the cutoff.", "cutoff_date")
    if len(billable) > 1:
        raise InvalidInput("SUBSCRIPTION_ID_REQUIRED", "The customer has several billable subscriptions; name one.",
                           "subscription_id")
    return billable[0]


def terms_of(charge: Charge) -> Terms:
    """A stored charge as the pure rating core's terms (it cannot import the schemas)."""
    match charge:
        case PerUnitCharge():
            return PerUnit(charge.unit_price)
        case TieredCharge():
            return Tiered(tuple(Tier(t.up_to, t.unit_price, t.flat_amount) for t in charge.tiers))
        case VolumeCharge():
            return Volume(tuple(Tier(t.up_to, t.unit_price, t.flat_amount) for t in charge.tiers))
        case PackageCharge():
            return Package(charge.package_size, charge.package_price)
        case FlatFeeCharge():
            return FlatFee(charge.amount)
        case _:
            assert_never(charge)


def load_specs(conn: Connection, windows: list[Window]) -> list[MetricSpec]:
    """The metric definitions the windows' charges need (read before pricing, in a short transaction)."""
    keys = {c.metric_key for w in windows for c in w.plan.charges if c.metric_key}
    rows = conn.execute(select(metrics).where(metrics.c.key.in_(sorted(keys)))).mappings()
    return [MetricSpec(r["key"], r["aggregation"], r["property"],
                       Decimal(r["percentile"]) if r["percentile"] is not None else None) for r in rows]


def usage_for(usage: UsageStore, windows: list[Window], specs: list[MetricSpec],
              as_of_ms: int | None) -> dict[tuple[str, str, int], Aggregate]:
    """Aggregates keyed by (subscription id, metric key, window start): one query per distinct window."""
    groups: dict[tuple[int, int, tuple[tuple[int, int], ...]], list[Window]] = defaultdict(list)
    for w in windows:
        groups[(w.start, w.end, w.gaps)].append(w)
    out: dict[tuple[str, str, int], Aggregate] = {}
    for (start, end, gaps), group in groups.items():
        found = usage.aggregate_many(sorted({w.subscription["customer_id"] for w in group}), specs, start, end, as_of_ms,
                                     gaps=gaps)
        for w in group:
            for spec in specs:
                out[(w.subscription["id"], spec.key, w.start)] = found[(w.subscription["customer_id"], spec.key)]
    return out


def _line(charge: Charge, currency: str, quantity: Decimal, amount: int, rated: Any, i: int,
          agg: Aggregate | None, prefix: str) -> dict[str, Any]:
    match charge:  # the line's one price: per unit, per package or the fee; tiers have their own
        case PerUnitCharge():
            unit_price: Decimal | None = charge.unit_price
        case PackageCharge():
            unit_price = charge.package_price
        case FlatFeeCharge():
            unit_price = charge.amount
        case _:
            unit_price = None
    line: dict[str, Any] = {
        "charge_id": f"{prefix}{charge.id}", "description": charge.description, "pricing_model": pricing_model(charge),
        "metric_key": charge.metric_key, "quantity": format_quantity(quantity),
        "unit_price": format_price(unit_price, currency) if unit_price is not None else None, "amount": amount,
    }
    if isinstance(charge, PackageCharge):
        line["packages"] = rated.packages[i].as_py()
    if isinstance(charge, (TieredCharge, VolumeCharge)):
        graduated = isinstance(charge, TieredCharge)
        breakdown = []
        lower = 0
        applied = rated.applied_tier[i].as_py() if rated.applied_tier is not None else None
        for k, tier in enumerate(charge.tiers):
            row = {"tier": k + 1, "from": lower, "up_to": tier.up_to,
                   "quantity": format_quantity(rated.tier_quantity[k][i].as_py()) if graduated
                   else format_quantity(max(quantity, Decimal(0))),
                   "unit_price": format_price(tier.unit_price, currency),
                   "flat_amount": format_price(tier.flat_amount, currency), "amount": rated.tier_amount[k][i].as_py()}
            if graduated or k == applied:
                breakdown.append(row)
            lower = tier.up_to if tier.up_to is not None else lower
        line["tier_breakdown"] = breakdown
    line["event_count"] = agg.event_count if agg else 0
    line["events_checksum"] = agg.events_checksum if agg else None
    return line


def price_windows(usage: UsageStore, windows: list[Window], specs: list[MetricSpec],  # noqa: PLR0912 - one pass, every charge kind
                  as_of_ms: int | None,
                  quantities: dict[tuple[str, str, int], Decimal] | None = None) -> list[Priced]:
    """Price every window; each charge is rated in one vectorised call across windows.

    A subscription's windows (from ``billable_windows``) must be adjacent in ``windows``.
    """
    aggregates = usage_for(usage, windows, specs, as_of_ms) if quantities is None else {}
    # Group (window, charge) rows by identical terms so each group is one rating call.
    by_terms: dict[tuple[str, int, str | None, str], list[tuple[int, Window, Charge]]] = defaultdict(list)
    for wi, w in enumerate(windows):
        for charge in w.plan.charges:
            by_terms[(w.plan.plan_id, w.plan.version, charge.id, w.plan.currency)].append((wi, w, charge))
    lines: dict[tuple[int, str | None], dict[str, Any]] = {}  # charge ids: always set once stored
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
            line = _line(c, currency, qs[i], amounts[i], rated, i, agg, w.charge_prefix)
            if quantities is not None:  # a preview: no events behind any line
                line["event_count"], line["events_checksum"] = None, None
            lines[(wi, c.id)] = line
    # A subscription's windows (one per plan version) make one Priced, earlier versions first.
    out: list[Priced] = []
    spans: list[list[Window]] = []
    for wi, w in enumerate(windows):
        window_lines = [lines[(wi, c.id)] for c in w.plan.charges]
        if out and out[-1].window.subscription["id"] == w.subscription["id"]:
            out[-1].window = w
            out[-1].lines.extend(window_lines)
            spans[-1].append(w)
        else:
            out.append(Priced(w, window_lines))
            spans.append([w])
    for priced, span in zip(out, spans, strict=True):
        true_up = _minimum(priced, span, full_period=quantities is not None)
        if true_up is not None:
            priced.lines.append(true_up)
    return out


def _minimum(priced: Priced, span: list[Window], full_period: bool) -> dict[str, Any] | None:
    """The minimum true-up after a subscription's usage and flat lines (``billing.commercial``).

    Each version with a minimum commits the whole days it was billable in the period (its
    window less pauses and the other versions' stretches) out of the period's days; a preview
    prices a whole period.
    """
    if not any(w.plan.minimum for w in span):
        return None
    last = span[-1]
    if full_period:
        days, commitments = 1, [Commitment(w.plan.minimum.amount, 1) for w in span if w.plan.minimum]
    else:
        start, end = period_containing(last.subscription["start_date"], last.plan.months, last.period_start)
        days = (end - start) // _DAY_MS
        commitments = [Commitment(w.plan.minimum.amount, (w.end - w.start - sum(b - a for a, b in w.gaps)) // _DAY_MS)
                       for w in span if w.plan.minimum]
    return minimum_line(priced.lines, last.plan.currency, commitments, days)
