"""Usage (§10): the summary and exact compute, which agree once the pipeline caught up."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from sqlalchemy import Engine

from abaxus.api.contract import StrictBody, errors
from abaxus.api.routes import run, typed
from abaxus.api.routes.events import From, Instant, time_range
from abaxus.billing.customers import load_customer
from abaxus.billing.usage import resolve_metric, summary_rows, usage_rows
from abaxus.errors import InvalidInput
from abaxus.pipeline.service import Ingestion
from abaxus.schemas.events import UsageComputeIn
from abaxus.schemas.responses import UsageCompute, UsageSummary
from abaxus.store.usage import UsageStore
from abaxus.timefmt import format_ms, parse_timestamp

__all__ = ["ROUTES"]


def _check_customer(engine: Engine, customer_id: str) -> None:
    with engine.connect() as conn:
        load_customer(conn, customer_id, "customer_id")


# Exact usage waits (this long at most) for events acknowledged before the request.
COMPUTE_CATCH_UP_S = 10.0


@get("/v1/usage/summary", tags=["usage"], responses=errors())
async def summary(request: Request[Any, Any, Any], engine: Engine, ingestion: Ingestion, usage: UsageStore,
                  customer_id: str | None = None,
                  metric_key: str | None = None, from_: From = None,
                  to: Instant = None) -> Response[UsageSummary]:
    """Pre-aggregated usage; ``customer_id``, ``from`` and ``to`` are required (read as sent)."""
    q = request.query_params
    if not q.get("customer_id"):
        raise InvalidInput("MISSING_FIELD", "Add the query parameter 'customer_id'.", "customer_id")
    for name in ("from", "to"):  # present but empty is INVALID_TIMESTAMP, from time_range
        if name not in q:
            raise InvalidInput("MISSING_FIELD", f"Add the query parameter '{name}'.", name)
    customer_id = q["customer_id"]
    await run(_check_customer, engine, customer_id)
    start, end = time_range(request)
    assert start is not None
    assert end is not None
    metrics = ingestion.metrics()
    keys = resolve_metric(metrics, q.get("metric_key"))
    rows = await run(summary_rows, usage, metrics, customer_id, keys, start, end)
    return typed({"customer_id": customer_id, "from": format_ms(start), "to": format_ms(end - 1000),
                  "data": rows, "meta": {"lag_seconds": round(ingestion.lag_seconds(), 3)}}, UsageSummary)


@post("/v1/usage/compute", tags=["usage"], status_code=200, dto=StrictBody[UsageComputeIn], return_dto=None,
      responses=errors(400, 409, 413, 415))
async def compute(data: UsageComputeIn, engine: Engine, ingestion: Ingestion,
                  usage: UsageStore) -> Response[UsageCompute]:
    """Exact usage from raw events, as of a watermark that has seen every event acknowledged before."""
    body = data
    start = parse_timestamp(body.period_start, "period_start")
    end_inclusive = parse_timestamp(body.period_end, "period_end")
    end = end_inclusive // 1000 * 1000 + 1000
    if start >= end:
        raise InvalidInput("INVALID_DATE_RANGE", "period_start must not be after period_end.", "period_start")
    await run(_check_customer, engine, body.customer_id)
    metrics = ingestion.metrics()
    keys = resolve_metric(metrics, body.metric_key)
    as_of = await run(ingestion.caught_up_as_of, COMPUTE_CATCH_UP_S)

    def work() -> tuple[list[dict[str, Any]], int, tuple[int, int]]:
        rows, total = usage_rows(usage, metrics, body.customer_id, keys, start, end, as_of,
                                 with_checksum=True, only_with_events=keys is None)
        metric_keys = keys or list(metrics)
        meta = usage.window_meta(body.customer_id, metric_keys, start, end, end - 1)
        return rows, total, meta

    rows, total, (late, dups) = await run(work)
    return typed({
        "customer_id": body.customer_id, "period_start": format_ms(start), "period_end": format_ms(end_inclusive),
        "data": rows,
        "meta": {"event_count": total, "late_event_count": late, "duplicate_count": dups, "usage_as_of": format_ms(as_of)},
    }, UsageCompute)


ROUTES = [summary, compute]
