"""Small helpers shared by the ingestion and invoicing tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from abaxus.ids import event_id_array
from abaxus.pipeline.records import INTAKE_SCHEMA


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll until ``predicate`` returns a truthy value; fail with the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value {last!r})")


def event(key: str, value: Any = 1, ts: str = "2026-04-03T09:30:00Z", customer: str = "cust_acme",
          metric: str = "api_calls", **extra: Any) -> dict[str, Any]:
    return {"customer_id": customer, "metric_key": metric, "value": value, "timestamp": ts,
            "idempotency_key": key, **extra}


def compute(client: Any, customer: str = "cust_acme", start: str = "2026-04-01T00:00:00Z",
            end: str = "2026-04-30T23:59:59Z", metric: str | None = None) -> dict[str, Any]:
    body = {"customer_id": customer, "period_start": start, "period_end": end}
    if metric:
        body["metric_key"] = metric
    r = client.post("/v1/usage/compute", json=body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def quantity(client: Any, metric: str = "api_calls", **kw: Any) -> tuple[Any, int]:
    data = compute(client, metric=metric, **kw)["data"]
    return (data[0]["quantity"], data[0]["event_count"]) if data else (0, 0)


def intake_batch(keys: list[str], with_ids: bool = True) -> pa.RecordBatch:
    """An intake record's batch of ``keys`` (other columns null); without ids the dedup step hashes the keys."""
    cols = {f.name: pa.nulls(len(keys), f.type) for f in INTAKE_SCHEMA}
    cols["idempotency_key"] = pa.array(keys, pa.string())
    if with_ids:
        cols["event_id"] = event_id_array(keys)
    return pa.RecordBatch.from_pydict(cols, schema=INTAKE_SCHEMA)
