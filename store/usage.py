"""The usage store: ClickHouse through clickhouse-connect, embedded (chDB) or a server.

The same SQL runs on both engines. ``abaxus.events`` and ``abaxus.events_dedup`` are the
analysts' public contract (§18); ``event_duplicates`` records refused submissions (for
``duplicate_count``) and ``pending_voids`` voids that arrived before their event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import clickhouse_connect
import pyarrow as pa

from abaxus.settings import Settings
from abaxus.store import usage_migrations
from abaxus.store.usage_migrations import DB

__all__ = ["DB", "EVENTS_INSERT_SETTINGS", "EVENT_SCHEMA", "Aggregate", "MetricSpec", "UsageStore", "data_path",
           "migrate_usage", "open_usage_client"]

# The dataflow never writes one key twice in a block, so collapsing at insert time
# (optimize_on_insert) is pure cost: ~15-30 % of the insert, measured. Reads use FINAL.
# benchmarks/ingest.py measures its ceiling with the same settings.
EVENTS_INSERT_SETTINGS = {"optimize_on_insert": 0}
PROBE_TIMEOUT_S = 2.0  # a health probe over HTTP: a server that has not answered by then is not ready
EVENT_SCHEMA = pa.schema([
    ("event_id", pa.string()),
    ("idempotency_key", pa.string()),
    ("customer_id", pa.string()),
    ("metric_key", pa.string()),
    ("value", pa.decimal128(38, 10)),
    ("timestamp", pa.timestamp("ms", tz="UTC")),
    ("properties", pa.map_(pa.string(), pa.string())),
    ("ingested_at", pa.timestamp("ms", tz="UTC")),
    ("voided", pa.bool_()),
    ("voided_at", pa.timestamp("ms", tz="UTC")),
    ("void_reason", pa.string()),
])

def open_usage_client(settings: Settings, timeout_s: float | None = None) -> Any:
    """A new clickhouse-connect client: chDB under the data dir, or the configured server (``timeout_s``: per request)."""
    if settings.clickhouse_url:
        if timeout_s is None:
            return clickhouse_connect.get_client(dsn=settings.clickhouse_url, tz_mode="aware")
        return clickhouse_connect.get_client(dsn=settings.clickhouse_url, tz_mode="aware", connect_timeout=timeout_s,
                                             send_receive_timeout=timeout_s)
    path = (settings.data_dir / "chdb").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=f"chdb:///{path}", tz_mode="aware")


def migrate_usage(settings: Settings) -> list[int]:
    """Apply the usage-schema steps this store lacks (``usage_migrations``); the versions applied."""
    client = open_usage_client(settings)
    try:
        return usage_migrations.migrate(client)
    finally:
        client.close()


@dataclass(frozen=True)
class MetricSpec:
    key: str
    aggregation: str
    property: str | None = None
    percentile: Decimal | None = None


@dataclass(frozen=True)
class Aggregate:
    metric_key: str
    quantity: Decimal
    event_count: int
    events_checksum: str


def window_filter(gaps: Sequence[tuple[int, int]] = ()) -> str:
    """SQL for ``timestamp`` in [%(s)s, %(e)s) outside each [a, b) gap (pauses, other versions)."""
    clauses = ["timestamp >= fromUnixTimestamp64Milli(%(s)s, 'UTC')", "timestamp < fromUnixTimestamp64Milli(%(e)s, 'UTC')"]
    return " AND ".join(clauses + [_outside(a, b) for a, b in gaps])


def _outside(a: int, b: int) -> str:
    return (f"NOT (timestamp >= fromUnixTimestamp64Milli({int(a)}, 'UTC') "
            f"AND timestamp < fromUnixTimestamp64Milli({int(b)}, 'UTC'))")


def _checksum(value: int | None) -> str:
    return f"{int(value or 0):016x}"


def _literal_list(values: Sequence[str]) -> str:
    return "[" + ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values) + "]"


class UsageStore:
    """Queries and writes of the usage store. Thread-safe: one client per thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        migrate_usage(settings)

    @property
    def client(self) -> Any:
        return self._thread_client("client")

    def _thread_client(self, kind: str, timeout_s: float | None = None) -> Any:
        client = getattr(self._local, kind, None)
        if client is None:
            client = open_usage_client(self.settings, timeout_s)
            setattr(self._local, kind, client)
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        """Close every client; embedded, this shuts chDB down and frees the data directory."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
        self._local = threading.local()

    def healthy(self) -> bool:
        """Whether the store answers ``SELECT 1``; over HTTP within ``PROBE_TIMEOUT_S`` (a hung server is not ready)."""
        try:
            probe = self._thread_client("probe", PROBE_TIMEOUT_S) if self.settings.clickhouse_url else self.client
            return bool(probe.command("SELECT 1") == 1)
        except Exception:  # noqa: BLE001 - a health probe: any failure means not ready
            return False

    # ---- writes ------------------------------------------------------------------------
    def insert_events(self, table: pa.Table) -> None:
        self.client.insert_arrow(f"{DB}.events", table, settings=EVENTS_INSERT_SETTINGS)

    def insert_duplicates(self, table: pa.Table) -> None:
        self.client.insert_arrow(f"{DB}.event_duplicates", table)

    def existing_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` the store already holds (a batched lookup on a filter hit)."""
        found: set[str] = set()
        for start in range(0, len(keys), 5000):
            chunk = list(keys[start:start + 5000])
            rows = self.client.query("SELECT DISTINCT idempotency_key FROM abaxus.events WHERE idempotency_key IN %(k)s",
                                     parameters={"k": chunk}).result_rows
            found.update(r[0] for r in rows)
        return found

    def count_events(self) -> int:
        """Stored event rows (re-sent copies not yet merged included): sizes the dedup filter."""
        return int(self.client.query("SELECT count() FROM abaxus.events").result_rows[0][0])

    def iter_all_event_ids(self) -> Iterator[pa.Array]:
        """Every stored event id (one per key ever stored), in Arrow chunks: rebuilds the dedup filter at start."""
        stream = self.client.query_arrow_stream(f"SELECT event_id FROM {DB}.events") \
            if hasattr(self.client, "query_arrow_stream") else None
        if stream is None:
            yield pa.array([r[0] for r in self.client.query(f"SELECT event_id FROM {DB}.events").result_rows], pa.string())
            return
        with stream:
            for batch in stream:
                yield batch.column(0).cast(pa.string())

    def pending_voids(self) -> dict[str, tuple[str, int]]:
        rows = self.client.query("SELECT idempotency_key, reason, toUnixTimestamp64Milli(voided_at) "
                                 "FROM abaxus.pending_voids FINAL").result_rows
        return {k: (reason, at) for k, reason, at in rows}

    def add_pending_voids(self, items: list[tuple[str, str, int]]) -> None:
        if items:
            self.client.insert(f"{DB}.pending_voids",
                               [[k, r, datetime.fromtimestamp(at / 1000, tz=UTC)] for k, r, at in items],
                               column_names=["idempotency_key", "reason", "voided_at"])

    # ---- the Kafka intake's progress (split topology) ------------------------------------
    def record_offsets(self, topic: str, next_offsets: dict[int, int], at_ms: int) -> None:
        """The usage store now holds every message of ``topic`` below these offsets, by partition."""
        if next_offsets:
            at = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
            self.client.insert(f"{DB}.intake_offsets", [[topic, p, o, at] for p, o in sorted(next_offsets.items())],
                               column_names=["topic", "partition", "next_offset", "updated_at"])

    def stored_offsets(self, topic: str) -> dict[int, int]:
        """Per partition of ``topic``: the offset below which every message is stored (absent: none yet)."""
        rows = self.client.query(f"SELECT partition, max(next_offset) FROM {DB}.intake_offsets WHERE topic = %(t)s "
                                 "GROUP BY partition", parameters={"t": topic}).result_rows
        return {int(p): int(o) for p, o in rows}

    def mark_inflight(self, worker: str, since_ms: int) -> None:
        """``worker`` starts an insert stamped ``since_ms`` (0: its insert is done)."""
        now = time.time_ns()
        self.client.insert(f"{DB}.sink_inflight", [[worker, since_ms, now, datetime.fromtimestamp(now / 1e9, tz=UTC)]],
                           column_names=["worker", "inserting_since", "seq", "updated_at"])

    def inflight_since(self, newer_than_ms: int) -> list[int]:
        """The stamps of inserts in flight now, of workers heard from after ``newer_than_ms``."""
        rows = self.client.query(
            f"SELECT argMax(inserting_since, seq), max(updated_at) AS at FROM {DB}.sink_inflight GROUP BY worker "
            "HAVING at > fromUnixTimestamp64Milli(%(n)s, 'UTC')", parameters={"n": newer_than_ms}).result_rows
        return [int(since) for since, _ in rows if int(since) > 0]

    def duplicates_received(self, keys: Sequence[str], received_ms: int) -> dict[str, int]:
        """How many copies of each of ``keys`` the dataflow refused from a submission accepted at ``received_ms``."""
        if not keys:
            return {}
        rows = self.client.query(
            f"SELECT idempotency_key, count() FROM {DB}.event_duplicates WHERE idempotency_key IN %(k)s "
            "AND received_at = fromUnixTimestamp64Milli(%(r)s, 'UTC') GROUP BY idempotency_key",
            parameters={"k": list(keys), "r": received_ms})
        return {row[0]: int(row[1]) for row in rows.result_rows}

    def stored_events(self, keys: Sequence[str]) -> pa.Table:
        """The current (deduplicated) rows of these keys, all columns."""
        return self.client.query_arrow("SELECT * FROM abaxus.events FINAL WHERE idempotency_key IN %(k)s",
                                       parameters={"k": list(keys)})

    # ---- reads ---------------------------------------------------------------------------
    def aggregate(self, customer_id: str, metrics: Sequence[MetricSpec], start_ms: int, end_ms_exclusive: int,
                  as_of_ms: int | None) -> dict[str, Aggregate]:
        """One customer's aggregates (see ``aggregate_many``)."""
        found = self.aggregate_many([customer_id], metrics, start_ms, end_ms_exclusive, as_of_ms)
        return {m.key: found[(customer_id, m.key)] for m in metrics}

    def aggregate_many(self, customer_ids: Sequence[str], metrics: Sequence[MetricSpec], start_ms: int,
                       end_ms_exclusive: int, as_of_ms: int | None,
                       gaps: Sequence[tuple[int, int]] = ()) -> dict[tuple[str, str], Aggregate]:
        """All seven aggregations of a customer's metrics over [start, end) less ``gaps``, in one query.

        Exact: sums and extremes in ``Decimal(38, 10)``, percentile by nearest rank with
        integer arithmetic, ``last`` by (timestamp, ingestion, key). With ``as_of_ms`` only
        events stored by then and not voided by then count (§12 usage_as_of).
        """
        if not metrics or not customer_ids:
            return {}
        keys = [m.key for m in metrics]
        props = [m.property or "" for m in metrics]
        # p as an integer of ten-thousandths: rank = ceil(p·N/100) = ceil(p4·N / 1,000,000).
        p4 = [int((m.percentile or 0) * 10000) for m in metrics]
        pct_keys = [m.key for m in metrics if m.aggregation == "percentile"]
        time_filter = window_filter(gaps)
        as_of_filter = ""
        params: dict[str, Any] = {"c": list(customer_ids), "m": keys, "s": start_ms, "e": end_ms_exclusive}
        if as_of_ms is not None:
            params["a"] = as_of_ms
            as_of_filter = ("AND ingested_at <= fromUnixTimestamp64Milli(%(a)s, 'UTC') "
                            "AND (NOT voided OR voided_at > fromUnixTimestamp64Milli(%(a)s, 'UTC'))")
        else:
            as_of_filter = "AND NOT voided"
        aggs = {m.aggregation for m in metrics}
        prop_expr = f"transform(metric_key, {_literal_list(keys)}, {_literal_list(props)}, '')"
        # Only the expressions these metrics need: argMax over a tuple, the per-row property
        # lookup and the sorted value array are the costly ones on a million-event customer.
        columns = {
            "s": "sum(value)" if "sum" in aggs else "toDecimal128(0, 10)",
            "mx": "max(value)" if "max" in aggs else "toDecimal128(0, 10)",
            "mn": "min(value)" if "min" in aggs else "toDecimal128(0, 10)",
            "last_value": "argMax(value, (timestamp, ingested_at, idempotency_key))" if "last" in aggs else "toDecimal128(0, 10)",
            "uniq": (f"uniqExactIf(properties[{prop_expr}], {prop_expr} != '' AND mapContains(properties, {prop_expr}))"
                     if "unique_count" in aggs else "toUInt64(0)"),
            "sorted_values": (f"arraySort(groupArrayIf(value, metric_key IN {_literal_list(pct_keys)}))"
                              if pct_keys else "CAST([], 'Array(Decimal(38, 10))')"),
            "p4": f"any(transform(metric_key, {_literal_list(keys)}, {p4}, 0))" if pct_keys else "toInt64(0)",
        }
        select_list = ",\n       ".join(f"{expr} AS {name}" for name, expr in columns.items())
        sql = f"""
SELECT customer_id, metric_key,
       count() AS n,
       {select_list},
       groupBitXor(reinterpretAsUInt64(reverse(substring(SHA256(idempotency_key), 1, 8)))) AS checksum
FROM abaxus.events FINAL
WHERE customer_id IN %(c)s AND metric_key IN %(m)s AND {time_filter} {as_of_filter}
GROUP BY customer_id, metric_key"""
        rows = self.client.query(sql, parameters=params).result_rows
        by_key = {m.key: m for m in metrics}
        out = {(c, m.key): Aggregate(m.key, Decimal(0), 0, _checksum(0)) for c in customer_ids for m in metrics}
        for customer, key, n, s, mx, mn, last, uniq, sorted_values, p, checksum in rows:
            spec = by_key[key]
            quantity = {
                "sum": s, "count": Decimal(n), "max": mx, "min": mn, "last": last, "unique_count": Decimal(uniq),
            }.get(spec.aggregation)
            if spec.aggregation == "percentile":
                rank = max(1, -(-p * n // 1_000_000)) if n else 0
                quantity = sorted_values[rank - 1] if rank else Decimal(0)
            out[(customer, key)] = Aggregate(key, Decimal(quantity or 0), int(n), _checksum(checksum))
        return out

    def rebuild_summary(self) -> None:
        """Recompute the pre-aggregated table from raw events (after a restore or an upgrade)."""
        self.client.command(f"TRUNCATE TABLE {DB}.usage_hourly")
        self.client.command(f"""INSERT INTO {DB}.usage_hourly
SELECT customer_id, metric_key, toStartOfHour(timestamp), sum(value), count()
FROM {DB}.events FINAL WHERE NOT voided GROUP BY customer_id, metric_key, toStartOfHour(timestamp)""")

    def summary_sums(self, customer_id: str, keys: Sequence[str], start_ms: int,
                     end_ms_exclusive: int) -> dict[str, tuple[Decimal, int]]:
        """(sum of values, event count) per metric from the hourly table; partial hours from raw events."""
        hour = 3_600_000
        h1 = -(-start_ms // hour) * hour
        h2 = end_ms_exclusive // hour * hour
        params: dict[str, Any] = {"c": customer_id, "m": list(keys), "s": start_ms, "e": end_ms_exclusive, "h1": h1, "h2": h2}
        ts = "fromUnixTimestamp64Milli(%({})s, 'UTC')"
        if h1 < h2:
            raw_window = (f"((timestamp >= {ts.format('s')} AND timestamp < {ts.format('h1')}) "
                          f"OR (timestamp >= {ts.format('h2')} AND timestamp < {ts.format('e')}))")
            hourly = (f"SELECT metric_key, value_sum AS v, event_count AS n FROM {DB}.usage_hourly "
                      f"WHERE customer_id = %(c)s AND metric_key IN %(m)s "
                      f"AND hour >= toDateTime(intDiv(%(h1)s, 1000), 'UTC') AND hour < toDateTime(intDiv(%(h2)s, 1000), 'UTC') "
                      f"UNION ALL ")
        else:
            raw_window = f"(timestamp >= {ts.format('s')} AND timestamp < {ts.format('e')})"
            hourly = ""
        sql = (f"SELECT metric_key, sum(v), sum(n) FROM ({hourly}"
               f"SELECT metric_key, value AS v, toInt64(1) AS n FROM {DB}.events FINAL "
               f"WHERE customer_id = %(c)s AND metric_key IN %(m)s AND NOT voided AND {raw_window}) GROUP BY metric_key")
        return {k: (Decimal(v), int(n)) for k, v, n in self.client.query(sql, parameters=params).result_rows}

    def window_meta(self, customer_id: str, metric_keys: Sequence[str], start_ms: int, end_ms_exclusive: int,
                    period_end_ms: int) -> tuple[int, int]:
        """(late_event_count, duplicate_count) for a usage window."""
        params = {"c": customer_id, "m": list(metric_keys), "s": start_ms, "e": end_ms_exclusive, "pe": period_end_ms}
        window = ("customer_id = %(c)s AND metric_key IN %(m)s AND NOT voided "
                  "AND timestamp >= fromUnixTimestamp64Milli(%(s)s, 'UTC') "
                  "AND timestamp < fromUnixTimestamp64Milli(%(e)s, 'UTC')")
        late = self.client.query(
            f"SELECT count() FROM abaxus.events FINAL WHERE {window} AND ingested_at > fromUnixTimestamp64Milli(%(pe)s, 'UTC')",
            parameters=params).result_rows[0][0]
        dups = self.client.query(
            f"SELECT count() FROM abaxus.event_duplicates WHERE idempotency_key IN "
            f"(SELECT idempotency_key FROM abaxus.events FINAL WHERE {window})", parameters=params).result_rows[0][0]
        return int(late), int(dups)

    def list_events(self, filters: dict[str, Any], limit: int, after: tuple[int, str] | None,
                    ascending: bool = False) -> list[dict[str, Any]]:
        where = ["1"]
        params: dict[str, Any] = {"lim": limit}
        for name in ("customer_id", "metric_key"):
            if filters.get(name) is not None:
                where.append(f"{name} = %({name})s")
                params[name] = filters[name]
        if filters.get("from") is not None:
            where.append("timestamp >= fromUnixTimestamp64Milli(%(from)s, 'UTC')")
            params["from"] = filters["from"]
        if filters.get("to") is not None:
            where.append("timestamp < fromUnixTimestamp64Milli(%(to)s, 'UTC')")
            params["to"] = filters["to"]
        for a, b in filters.get("gaps", ()):
            where.append(_outside(a, b))
        for extra in filters.get("raw_where", []):
            where.append(extra)
        params.update(filters.get("raw_params", {}))
        op, order = (">", "ASC") if ascending else ("<", "DESC")
        if after is not None:
            where.append(f"(toUnixTimestamp64Milli(timestamp), idempotency_key) {op} (%(ats)s, %(akey)s)")
            params["ats"], params["akey"] = after
        sql = (f"SELECT event_id, idempotency_key, customer_id, metric_key, value, toUnixTimestamp64Milli(timestamp), "
               f"properties, toUnixTimestamp64Milli(ingested_at), voided, toUnixTimestamp64Milli(voided_at), void_reason "
               f"FROM abaxus.events FINAL WHERE {' AND '.join(where)} "
               f"ORDER BY timestamp {order}, idempotency_key {order} LIMIT %(lim)s")
        names = ["event_id", "idempotency_key", "customer_id", "metric_key", "value", "timestamp", "properties",
                 "ingested_at", "voided", "voided_at", "void_reason"]
        return [dict(zip(names, row, strict=True)) for row in self.client.query(sql, parameters=params).result_rows]

    def read_only_query(self, sql: str) -> Any:
        return self.client.query(sql, settings={"readonly": 1})


def data_path(settings: Settings) -> Path:
    return (settings.data_dir / "chdb").resolve()
