"""The seven aggregations in ClickHouse SQL against the spec's worked example and an oracle."""

from __future__ import annotations

import hashlib
import itertools
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abaxus.ids import event_ids_for
from abaxus.settings import Settings
from abaxus.store.usage import EVENT_SCHEMA, MetricSpec, UsageStore
from oracle import aggregate

D = Decimal
AGGS = ["sum", "count", "max", "min", "last", "unique_count", "percentile"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    s = UsageStore(Settings(data_dir=Path(tmp_path_factory.mktemp("agg"))))
    yield s
    s.close()


def _rows(customer: str, events: list[dict], ingested_ms: int) -> pa.Table:  # type: ignore[type-arg]
    ts = pa.timestamp("ms", tz="UTC")
    n = len(events)
    keys = [e["key"] for e in events]
    return pa.table({
        "event_id": event_ids_for(keys), "idempotency_key": keys, "customer_id": [customer] * n,
        "metric_key": ["m"] * n, "value": pa.array([e["value"] for e in events], pa.decimal128(38, 10)),
        "timestamp": pa.array([e["ts"] for e in events], pa.int64()).cast(ts),
        "properties": pa.array([list(e["props"].items()) for e in events], pa.map_(pa.string(), pa.string())),
        "ingested_at": pa.array([ingested_ms + e["seq"] for e in events], pa.int64()).cast(ts),
        "voided": pa.array([False] * n), "voided_at": pa.array([0] * n, pa.int64()).cast(ts),
        "void_reason": [""] * n}, schema=EVENT_SCHEMA)


def _checksum(keys: list[str]) -> str:
    x = 0
    for k in keys:
        x ^= int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "big")
    return f"{x:016x}"


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_the_spec_worked_example(store):
    rows = [("ex-001", "2026-04-02T10:00Z", "5", "u_1"), ("ex-002", "2026-04-05T12:00Z", "2.5", "u_2"),
            ("ex-003", "2026-04-09T08:30Z", "9", "u_1"), ("ex-004", "2026-04-12T16:45Z", "4", None),
            ("ex-006", "2026-04-28T23:00Z", "3", "u_2"), ("ex-005", "2026-04-20T09:15Z", "7", "u_3"),
            ("ex-008", "2026-05-01T00:00Z", "8", "u_5")]
    events = [{"key": k, "ts": _ms(t.replace("Z", ":00Z")), "value": D(v), "props": {"user_id": u} if u else {}, "seq": i}
              for i, (k, t, v, u) in enumerate(rows)]
    store.insert_events(_rows("worked", events, 1_800_000_000_000))
    start, end = _ms("2026-04-01T00:00:00Z"), _ms("2026-05-01T00:00:00Z")
    expected = {"sum": D("30.5"), "count": 6, "max": 9, "min": D("2.5"), "last": 3, "unique_count": 3, "percentile": 9}
    for agg, value in expected.items():
        spec = MetricSpec("m", agg, "user_id" if agg == "unique_count" else None, D(95) if agg == "percentile" else None)
        got = store.aggregate("worked", [spec], start, end, None)["m"]
        assert (got.quantity, got.event_count, got.events_checksum) == (value, 6, "f37344ef1776e892"), agg
    p50 = store.aggregate("worked", [MetricSpec("m", "percentile", None, D(50))], start, end, None)["m"]
    assert p50.quantity == 4
    empty = store.aggregate("nobody", [MetricSpec("m", a, "user_id", D(95)) for a in ["sum"]], start, end, None)["m"]
    assert (empty.quantity, empty.event_count, empty.events_checksum) == (0, 0, "0000000000000000")


def test_percentile_rank_is_exact_where_floating_point_is_not(store):
    events = [{"key": f"p{i}", "ts": 1_775_000_000_000 + i, "value": D(i + 1), "props": {}, "seq": i} for i in range(100)]
    store.insert_events(_rows("pct", events, 1_800_000_000_000))
    got = store.aggregate("pct", [MetricSpec("m", "percentile", None, D(55))], 0, 2_000_000_000_000, None)["m"]
    assert got.quantity == 55  # ⌈0.55 × 100⌉ = 55; floating point gives 56


_counter = itertools.count()
values = st.decimals(min_value=D("-1e6"), max_value=D("1e6"), places=3, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(data=st.lists(st.tuples(values, st.integers(0, 20), st.sampled_from(["a", "b", "c", None])), min_size=0, max_size=40),
       p=st.decimals(min_value=D("0.0001"), max_value=D(100), places=4))
def test_sql_aggregations_match_the_oracle(store, data, p):
    customer = f"prop{next(_counter)}"
    events = [{"key": f"{customer}-{i}", "ts": 1_775_000_000_000 + ts * 1000, "value": v,
               "props": {"u": u} if u else {}, "seq": i} for i, (v, ts, u) in enumerate(data)]
    if events:
        store.insert_events(_rows(customer, events, 1_800_000_000_000))
    specs = [MetricSpec("m", a, "u" if a == "unique_count" else None, p if a == "percentile" else None) for a in AGGS]
    for spec in specs:
        got = store.aggregate(customer, [spec], 0, 2_000_000_000_000, None)["m"]
        assert got.quantity == aggregate(spec.aggregation, events, "u", p), spec.aggregation
        assert got.event_count == len(events)
        assert got.events_checksum == _checksum([e["key"] for e in events])
