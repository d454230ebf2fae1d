"""Usage of a customer's metrics over a window, exact, from the usage store (§10)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from abaxus.errors import InvalidInput, NotFound
from abaxus.money import format_quantity
from abaxus.store.usage import MetricSpec, UsageStore
from abaxus.timefmt import format_ms

__all__ = ["event_out", "metric_specs", "resolve_metric", "summary_rows", "usage_rows"]


def metric_specs(metrics: dict[str, dict[str, Any]], keys: list[str] | None) -> list[MetricSpec]:
    chosen = list(metrics.values()) if keys is None else [metrics[k] for k in keys]
    return [MetricSpec(m["key"], m["aggregation"], m["property"],
                       Decimal(m["percentile"]) if m["percentile"] is not None else None) for m in chosen]


def resolve_metric(metrics: dict[str, dict[str, Any]], metric_key: str | None, field: str = "metric_key") -> list[str] | None:
    if metric_key is None:
        return None
    if metric_key not in metrics:
        raise NotFound("METRIC_NOT_FOUND", f"No metric '{metric_key}'.", field)
    return [metric_key]


def usage_rows(usage: UsageStore, metrics: dict[str, dict[str, Any]], customer_id: str, keys: list[str] | None,
               start_ms: int, end_exclusive_ms: int, as_of_ms: int | None, *, with_checksum: bool,
               only_with_events: bool) -> tuple[list[dict[str, Any]], int]:
    """One entry per metric: quantity, event_count (and events_checksum)."""
    if end_exclusive_ms <= start_ms:
        raise InvalidInput("INVALID_DATE_RANGE", "The start must not be after the end.", "period_end" if with_checksum else "to")
    specs = metric_specs(metrics, keys)
    aggregates = usage.aggregate(customer_id, specs, start_ms, end_exclusive_ms, as_of_ms)
    rows: list[dict[str, Any]] = []
    total = 0
    for spec in specs:
        agg = aggregates[spec.key]
        if only_with_events and agg.event_count == 0:
            continue
        total += agg.event_count
        row: dict[str, Any] = {"metric_key": spec.key, "aggregation": spec.aggregation,
                               "quantity": format_quantity(agg.quantity), "event_count": agg.event_count}
        if with_checksum:
            row["events_checksum"] = agg.events_checksum
        rows.append(row)
    return rows, total


def summary_rows(usage: UsageStore, metrics: dict[str, dict[str, Any]], customer_id: str, keys: list[str] | None,
                 start_ms: int, end_exclusive_ms: int) -> list[dict[str, Any]]:
    """The summary (§10): sum and count metrics from pre-aggregated hours, others from raw events."""
    specs = metric_specs(metrics, keys)
    summed = [s.key for s in specs if s.aggregation in ("sum", "count")]
    pre = usage.summary_sums(customer_id, summed, start_ms, end_exclusive_ms) if summed else {}
    others = [s for s in specs if s.aggregation not in ("sum", "count")]
    raw = usage.aggregate(customer_id, others, start_ms, end_exclusive_ms, None) if others else {}
    rows = []
    for spec in specs:
        if spec.key in pre or spec.aggregation in ("sum", "count"):
            total, n = pre.get(spec.key, (Decimal(0), 0))
            quantity = total if spec.aggregation == "sum" else Decimal(n)
        else:
            quantity, n = raw[spec.key].quantity, raw[spec.key].event_count
        if keys is None and n == 0:
            continue
        rows.append({"metric_key": spec.key, "aggregation": spec.aggregation, "quantity": format_quantity(quantity),
                     "event_count": n})
    return rows


def event_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": row["event_id"], "idempotency_key": row["idempotency_key"], "customer_id": row["customer_id"],
        "metric_key": row["metric_key"], "value": format_quantity(Decimal(row["value"])),
        "timestamp": format_ms(row["timestamp"]), "properties": dict(row["properties"]),
        "ingested_at": format_ms(row["ingested_at"]), "voided": bool(row["voided"]),
        "voided_at": format_ms(row["voided_at"]) if row["voided"] else None,
        "void_reason": row["void_reason"] if row["voided"] else None,
    }
