"""A plain, obviously-correct Decimal reference for the aggregations and pricing models.

Used only by tests: the SQL aggregations and the vectorised rating must agree with it.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any


def aggregate(aggregation: str, events: list[dict[str, Any]], prop: str | None = None, p: Decimal | None = None) -> Decimal:
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
        for (up_to, unit, flat), lo in zip(tiers, lowers):
            units = max(q - lo, Decimal(0))
            if up_to is not None:
                units = min(units, Decimal(up_to) - lo)
            amounts.append(minor(units * unit + (flat if units > 0 else 0), exponent))
        return sum(amounts), amounts
    if model == "volume":
        if q == 0:
            return 0, []
        for (up_to, unit, flat), lo in zip(tiers, lowers):
            if lo < q and (up_to is None or q <= up_to):
                a = minor(q * unit + flat, exponent)
                return a, [a]
    raise ValueError(model)
