"""Invoicing speed (issue 5): single invoice, bulk run, vectorised rating vs a Decimal loop.

Generates N events (default 10M) over C customers (default 10k; customer 0 is a whale with
1M events) straight into an embedded usage store, then measures, in one run:

* the single invoice calculation for the whale (target < 200 ms),
* a bulk run invoicing every customer (target < 10 s),
* rating 1M charge rows with ``abaxus.rating`` against a plain-Python Decimal loop (target ≥ 20×).

    python benchmarks/invoice.py [--events 10000000 --customers 10000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import insert

from abaxus.billing.invoices import Invoicing
from abaxus.billing.jobs import BulkInvoicing
from abaxus.billing.metrics import create_metric
from abaxus.billing.plans import create_plan_version
from abaxus.clock import SystemClock
from abaxus.rating import Tier, Tiered, rate
from abaxus.schemas.catalog import MetricCreate, PlanCreate
from abaxus.schemas.codec import decode_json
from abaxus.settings import Settings
from abaxus.store.metadata import migrate, open_engine
from abaxus.store.tables import customers, subscriptions
from abaxus.store.usage import EVENT_SCHEMA, UsageStore

PLAN = b"""{"id": "plan_growth", "name": "Growth", "currency": "usd", "billing_period": "monthly",
 "effective_from": "2026-01-01T00:00:00Z", "charges": [
 {"metric_key": "api_calls", "pricing_model": "tiered", "tiers": [
  {"up_to": 1000, "unit_price": 0}, {"up_to": 100000, "unit_price": "0.0001"}, {"up_to": null, "unit_price": "0.00005"}]},
 {"metric_key": null, "pricing_model": "flat_fee", "amount": "49.00"}]}"""
TIERS = (Tier(1000, Decimal(0)), Tier(100000, Decimal("0.0001")), Tier(None, Decimal("0.00005")))
APRIL = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp() * 1000)


def generate(usage: UsageStore, n: int, n_customers: int, whale: int) -> float:
    rng = np.random.default_rng(7)
    ts = pa.timestamp("ms", tz="UTC")
    names = pa.array([f"cust_{i:05d}" for i in range(n_customers)])
    started = time.perf_counter()
    for off in range(0, n, 1_000_000):
        m = min(1_000_000, n - off)
        idx = np.arange(off, off + m)
        cust = np.where(idx < whale, 0, rng.integers(1, n_customers, m))
        keys = pc.binary_join_element_wise("e", pa.array(idx).cast(pa.string()), "")
        table = pa.table({
            "event_id": keys, "idempotency_key": keys, "customer_id": pc.take(names, pa.array(cust)),
            "metric_key": pa.repeat(pa.scalar("api_calls"), m),
            "value": pa.array(rng.integers(1, 10, m)).cast(pa.decimal128(38, 10)),
            "timestamp": pa.array(APRIL + rng.integers(0, 29 * 86_400_000, m)).cast(ts),
            "properties": pa.array([[]] * m, pa.map_(pa.string(), pa.string())),
            "ingested_at": pa.repeat(pa.scalar(APRIL + 30 * 86_400_000, pa.int64()), m).cast(ts),
            "voided": pa.repeat(pa.scalar(False), m), "voided_at": pa.repeat(pa.scalar(0, pa.int64()), m).cast(ts),
            "void_reason": pa.repeat(pa.scalar(""), m)}, schema=EVENT_SCHEMA)
        usage.insert_events(table)
    return time.perf_counter() - started


def decimal_loop(quantities: list[Decimal]) -> list[int]:
    out = []
    lowers = [Decimal(0), Decimal(1000), Decimal(100000)]
    for q in quantities:
        total = 0
        for (up_to, price), lo in zip([(1000, Decimal(0)), (100000, Decimal("0.0001")), (None, Decimal("0.00005"))], lowers,
                                  strict=True):
            units = max(q - lo, Decimal(0))
            if up_to is not None:
                units = min(units, Decimal(up_to) - lo)
            total += int((units * price * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        out.append(total)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--whale", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        engine = open_engine(settings.resolved_database_url)
        migrate(engine)
        usage = UsageStore(settings)
        create_metric(engine, MetricCreate(key="api_calls", name="API Calls", aggregation="sum"), clock=SystemClock())
        create_plan_version(engine, decode_json(PLAN, PlanCreate), clock=SystemClock())
        now = int(time.time() * 1000)
        with engine.begin() as conn:
            conn.execute(insert(customers), [{"id": f"cust_{i:05d}", "name": f"C{i}", "metadata": "{}", "created_at": now,
                                              "updated_at": now} for i in range(args.customers)])
            conn.execute(insert(subscriptions), [{"id": f"sub_{i:05d}", "customer_id": f"cust_{i:05d}", "plan_id": "plan_growth",
                                                  "plan_version": 1, "start_date": APRIL, "end_date": None, "created_at": now}
                                                 for i in range(args.customers)])
        gen = generate(usage, args.events, args.customers, args.whale)
        usage.client.command("OPTIMIZE TABLE abaxus.events FINAL")
        invoicing = Invoicing(engine, usage, lambda: int(time.time() * 1000))
        cutoff = APRIL + 30 * 86_400_000 - 1000
        invoicing.calculate("cust_00000", cutoff, None)  # warm-up
        single = []
        for _ in range(5):
            t0 = time.perf_counter()
            calc = invoicing.calculate("cust_00000", cutoff, None)
            single.append(time.perf_counter() - t0)
        bulk = BulkInvoicing(engine, invoicing)
        t0 = time.perf_counter()
        job = bulk.enqueue(cutoff, "benchmark")
        bulk.join(600)
        bulk_s = time.perf_counter() - t0
        result = bulk.get(job["job_id"])
        usage.close()

    rng = np.random.default_rng(3)
    qs = [Decimal(int(x)) for x in rng.integers(0, 2_000_000, 1_000_000)]
    arr = pa.array(qs, pa.decimal128(38, 10))
    t0 = time.perf_counter()
    vec = rate(arr, Tiered(TIERS), 2).amount
    vec_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = decimal_loop(qs)
    loop_s = time.perf_counter() - t0
    assert vec.to_pylist() == loop, "vectorised and Decimal results differ"

    print(f"events generated and inserted    {args.events:>12,} in {gen:.1f} s ({args.customers:,} customers)")
    print(f"single invoice, 1M-event whale   {statistics.median(single) * 1000:>9.0f} ms (median of 5; "
          f"{calc['line_items'][0]['event_count']:,} events)   target < 200 ms")
    print(f"bulk run over all customers      {bulk_s:>9.2f} s  created {result['invoices_created']:,}, "
          f"errors {len(result['errors'])}   target < 10 s")
    print(f"rating 1M tiered rows: vectorised {vec_s * 1000:>8.0f} ms   Decimal loop {loop_s * 1000:,.0f} ms   "
          f"speed-up ×{loop_s / vec_s:.0f}   target ≥ ×20")


if __name__ == "__main__":
    main()
