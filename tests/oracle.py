"""A plain, obviously-correct Decimal reference for the aggregations and pricing models.

Used only by tests: the SQL aggregations and the vectorised rating must agree with it.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any


def aggregate(aggregation: str, events: list[dict[str, Any]], prop: str | None = None, p: Decimal | None = None) -> Decimal:  # noqa: PLR0911 - one return per aggregation, as the spec lists them
    """events: dicts with value, ts, seq (ingestion order), key, props; already deduplicated."""
    if not events:
        return Decimal(0)
    values = [e["value"] for e in events]
    if aggregation == "sum":
        return sum(values, Decimal(0))
    if aggregation == "count":
        return Decimal(len(events))
    if aggregation == "max":
        return max(values)
    if aggregation == "min":
        return min(values)
    if aggregation == "last":
        return max(events, key=lambda e: (e["ts"], e["seq"], e["key"]))["value"]
    if aggregation == "unique_count":
        return Decimal(len({e["props"][prop] for e in events if prop in e["props"]}))
    if aggregation == "percentile":
        assert p is not None
        rank = math.ceil(p * len(values) / 100)  # Decimal arithmetic: exact
        return sorted(values)[max(rank, 1) - 1]
    raise ValueError(aggregation)


def minor(amount: Decimal, exponent: int) -> int:
    return int((amount * Decimal(10) ** exponent).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def price(model: str, q: Decimal, terms: dict[str, Any], exponent: int) -> tuple[int, list[int]]:
    """(line amount, per-tier amounts) for one quantity."""
    q = max(q, Decimal(0))
    if model == "flat_fee":
        return minor(terms["amount"], exponent), []
    if model == "per_unit":
        return minor(q * terms["unit_price"], exponent), []
    if model == "package":
        packages = math.ceil(q / terms["package_size"]) if q > 0 else 0
        return minor(packages * terms["package_price"], exponent), []
    tiers = terms["tiers"]
    lowers = [Decimal(0)] + [Decimal(t[0]) for t in tiers[:-1]]
    if model == "tiered":
        amounts = []
        for (up_to, unit, flat), lo in zip(tiers, lowers, strict=True):
            units = max(q - lo, Decimal(0))
            if up_to is not None:
                units = min(units, Decimal(up_to) - lo)
            amounts.append(minor(units * unit + (flat if units > 0 else 0), exponent))
        return sum(amounts), amounts
    if model == "volume":
        if q == 0:
            return 0, []
        for (up_to, unit, flat), lo in zip(tiers, lowers, strict=True):
            if lo < q and (up_to is None or q <= up_to):
                a = minor(q * unit + flat, exponent)
                return a, [a]
    raise ValueError(model)


# ---- commercial terms (minimum, discounts, credits) ----------------------------------------
# Restated from docs/commercial-terms.md with plain Decimal loops (80 digits: every division
# here is either exact or far from a half), not from billing.commercial's fractions.
USAGE_MODELS = ("per_unit", "tiered", "volume", "package", "flat_fee")


def half_up(x: Decimal) -> int:
    return int(x.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def minimum_true_up(lines: list[dict[str, Any]], exponent: int, commitments: list[tuple[Decimal, int]],
                    period_days: int) -> int:
    """Minimum − (usage and flat lines), or 0; the minimum pro-rated by whole days, rounded once."""
    if not commitments:
        return 0
    with localcontext() as ctx:
        ctx.prec = 80
        committed = Decimal(0)
        for amount, days in commitments:
            committed += amount * Decimal(10) ** exponent * days
        minimum = half_up(committed / period_days)
    billed = sum(li["amount"] for li in lines if li["pricing_model"] in USAGE_MODELS)
    return max(minimum - billed, 0)


def discounts(lines: list[dict[str, Any]], coupons: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(coupon id, amount taken) per coupon that takes something, each on what earlier ones left."""
    left = [li["amount"] if (li["pricing_model"] in USAGE_MODELS or li["pricing_model"] == "minimum_true_up")
            and li["amount"] > 0 else 0 for li in lines]
    out = []
    for coupon in coupons:
        targets = [i for i, li in enumerate(lines) if left[i] > 0 and (
            coupon["applies_to"] is None or li["charge_id"].split(":")[-1] in coupon["applies_to"])]
        base = sum(left[i] for i in targets)
        if base == 0:
            continue
        if coupon["percent_off"] is not None:
            taken = half_up(Decimal(base) * coupon["percent_off"] / 100)
        else:
            taken = min(coupon["amount_off"], base)
        if taken == 0:
            continue
        out.append((coupon["id"], taken))
        for i in targets:  # the discount is taken from its lines in invoice order
            step = min(left[i], taken)
            left[i] -= step
            taken -= step
    return out


def credits(total_before: int, grants: list[dict[str, Any]], at: int) -> list[tuple[str, int]]:
    """(grant id, amount drawn) in drawdown order until the total is 0."""
    usable = [g for g in grants if g["remaining"] > 0 and g["effective_at"] <= at
              and (g["expires_at"] is None or at < g["expires_at"])]
    never = 2 ** 63
    usable.sort(key=lambda g: (g["priority"], never if g["expires_at"] is None else g["expires_at"], g["created_at"], g["id"]))
    due = max(total_before, 0)
    out = []
    for g in usable:
        take = min(due, g["remaining"])
        if take == 0:
            break
        out.append((g["id"], take))
        due -= take
    return out
