"""The usage front: unmodified clickhouse-connect (and plain HTTP) against embedded chDB.

One real chDB store and one front for the module (chDB opens one data directory per process;
the store is closed at the end, as every other chDB test does).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import httpx
import pyarrow as pa
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from abaxus.settings import Settings
from abaxus.store.usage import EVENT_SCHEMA, UsageStore
from abaxus.store.usage_front import UsageFront
from helpers import wait_until

PASSWORD = "usage-secret"
READ_KEY = "sk_test_" + "R" * 40


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UsageStore]:
    usage = UsageStore(Settings(data_dir=tmp_path_factory.mktemp("front"), usage_port=None))
    try:
        yield usage
    finally:
        usage.close()


@pytest.fixture(scope="module")
def front(store: UsageStore) -> Iterator[UsageFront]:
    with UsageFront(Path(store.settings.data_dir) / "chdb", port=0, usage_password=PASSWORD,
                    authenticate=lambda key: key == READ_KEY, max_execution_time=0.5) as running:
        yield running


@pytest.fixture(scope="module")
def full(front: UsageFront):
    return clickhouse_connect.get_client(dsn=f"http://abaxus:{PASSWORD}@127.0.0.1:{front.port}")


@pytest.fixture(scope="module")
def analyst(front: UsageFront):
    return clickhouse_connect.get_client(dsn=f"http://ann:{READ_KEY}@127.0.0.1:{front.port}")


def _events(n: int, prefix: str = "e") -> pa.Table:
    ms = [1_775_000_000_000 + i for i in range(n)]
    return pa.table({
        "event_id": [f"evt_{prefix}{i}" for i in range(n)],
        "idempotency_key": [f"{prefix}{i}" for i in range(n)],
        "customer_id": ["cust_a"] * n,
        "metric_key": ["api_calls"] * n,
        "value": pa.array([Decimal(1)] * n, pa.decimal128(38, 10)),
        "timestamp": pa.array(ms, pa.timestamp("ms", tz="UTC")),
        "properties": pa.array([[("region", "eu")]] * n, pa.map_(pa.string(), pa.string())),
        "ingested_at": pa.array(ms, pa.timestamp("ms", tz="UTC")),
        "voided": [False] * n,
        "voided_at": pa.array([0] * n, pa.timestamp("ms", tz="UTC")),
        "void_reason": [""] * n,
    }, schema=EVENT_SCHEMA)


class TestFullAccess:
    def test_ddl_insert_arrow_and_a_parameterised_final_query(self, full):
        full.command("CREATE DATABASE IF NOT EXISTS front_t")
        full.command("CREATE TABLE front_t.ev (k String, v UInt64, ts DateTime64(3, 'UTC')) "
                     "ENGINE = ReplacingMergeTree ORDER BY k")
        rows = pa.table({"k": [f"k{i % 500}" for i in range(1000)], "v": pa.array(range(1000), pa.uint64()),
                         "ts": pa.array(range(1000), pa.timestamp("ms", tz="UTC"))})
        assert full.insert_arrow("front_t.ev", rows).written_rows == 1000
        result = full.query("SELECT count(), max(v) FROM front_t.ev FINAL WHERE ts >= {since:DateTime64(3)}",
                            parameters={"since": datetime(1970, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)})
        assert result.result_rows == [(500, 999)]
        table = full.query_arrow("SELECT k, ts FROM front_t.ev FINAL ORDER BY k LIMIT 2")
        assert table.column("k").to_pylist() == ["k0", "k1"]
        assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")

    def test_insert_of_python_rows_streams_its_compressed_chunks(self, full):
        full.command("CREATE TABLE IF NOT EXISTS front_t.rows (k String, n Int64) ENGINE = MergeTree ORDER BY k")
        full.insert("front_t.rows", [[f"r{i}", i] for i in range(5000)], column_names=["k", "n"])
        assert full.command("SELECT sum(n) FROM front_t.rows") == sum(range(5000))

    def test_the_stores_events_are_read_over_http_as_a_replica_would(self, store, front):
        store.insert_events(_events(3, "full"))
        replica = clickhouse_connect.get_client(dsn=f"http://abaxus:{PASSWORD}@127.0.0.1:{front.port}/abaxus", tz_mode="aware")
        rows = replica.query("SELECT idempotency_key, timestamp FROM events_dedup WHERE idempotency_key LIKE 'full%' "
                             "ORDER BY idempotency_key").result_rows
        assert [k for k, _ in rows] == ["full0", "full1", "full2"]
        assert rows[0][1].tzinfo is not None

    def test_bad_sql_raises_database_error_with_the_engines_message(self, full):
        with pytest.raises(DatabaseError, match=r"Code: 62\. DB::Exception: Syntax error") as syntax:
            full.query("SELEC 1")
        assert syntax.value.code == 62
        with pytest.raises(DatabaseError, match="UNKNOWN_TABLE") as unknown:
            full.command("SELECT * FROM front_t.missing")
        assert unknown.value.code == 60

    def test_settings_ride_as_query_parameters(self, full):
        assert full.command("SELECT getSetting('max_threads')", settings={"max_threads": 3}) == 3
        with pytest.raises(DatabaseError, match="UNKNOWN_SETTING"):
            full.command("SELECT 1", settings={"no_such_setting": 1})


class TestAnalysts:
    def test_a_read_key_reads_the_public_table_and_view(self, store, analyst):
        store.insert_events(_events(4, "pub"))
        assert analyst.command("SELECT count() FROM abaxus.events WHERE idempotency_key LIKE 'pub%'") == 4
        assert analyst.query("SELECT count() FROM abaxus.events_dedup WHERE idempotency_key LIKE 'pub%'").result_rows == [(4,)]
        with_cte = analyst.query_arrow("WITH d AS (SELECT * FROM events_dedup WHERE customer_id = {c:String}) "
                                       "SELECT count() AS n FROM d", parameters={"c": "cust_a"})
        assert with_cte.column("n").to_pylist()[0] >= 4

    def test_a_read_key_describes_the_public_table(self, analyst):
        columns = [row[0] for row in analyst.query("DESCRIBE TABLE abaxus.events").result_rows]
        assert columns[:3] == ["event_id", "idempotency_key", "customer_id"]
        for sql in ("DESCRIBE TABLE abaxus.pending_voids", "DESCRIBE (SELECT * FROM abaxus.pending_voids)"):
            with pytest.raises(DatabaseError, match="ACCESS_DENIED"):
                analyst.query(sql)

    @pytest.mark.parametrize("sql", [
        "INSERT INTO abaxus.events (event_id) VALUES ('x')",
        "CREATE TABLE abaxus.mine (a UInt8) ENGINE = Memory",
        "DROP TABLE abaxus.events",
        "ALTER TABLE abaxus.events DELETE WHERE 1",
        "KILL QUERY WHERE 1",
        "SELECT 1; DROP TABLE abaxus.events",
    ])
    def test_a_read_key_cannot_write_or_run_other_statements(self, analyst, full, sql):
        before = full.command("SELECT count() FROM abaxus.events")
        with pytest.raises(DatabaseError):
            analyst.command(sql)
        assert full.command("SELECT count() FROM abaxus.events") == before

    def test_a_read_key_cannot_insert_arrow(self, analyst, full):
        before = full.command("SELECT count() FROM abaxus.events")
        with pytest.raises(DatabaseError):
            analyst.insert_arrow("abaxus.events", _events(2, "nope"))
        assert full.command("SELECT count() FROM abaxus.events") == before

    @pytest.mark.parametrize("sql", [
        "SELECT * FROM abaxus.pending_voids",
        "SELECT * FROM pending_voids",
        "SELECT name FROM system.tables",
        "SELECT * FROM front_t.ev",
        "SELECT (SELECT count() FROM abaxus.usage_hourly)",
        "SELECT count() FROM abaxus.events WHERE idempotency_key IN abaxus.pending_voids",
        "WITH pending_voids AS (SELECT * FROM pending_voids) SELECT * FROM pending_voids",
        "SELECT * FROM (WITH event_duplicates AS (SELECT 1 AS a) SELECT a FROM event_duplicates), event_duplicates",
    ])
    def test_a_read_key_reads_no_other_table(self, analyst, sql):
        with pytest.raises(DatabaseError, match="ACCESS_DENIED") as refused:
            analyst.query(sql)
        assert "abaxus.events_dedup" in str(refused.value)

    @pytest.mark.parametrize("sql", [
        "SELECT file('/etc/passwd')",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')",
        "SELECT count() FROM numbers(10)",
        "SELECT 1 INTO OUTFILE 'front-leak.txt'",
    ])
    def test_a_read_key_reaches_no_file_url_or_table_function(self, analyst, sql):
        with pytest.raises(DatabaseError, match="ACCESS_DENIED"):
            analyst.query(sql)
        assert not Path("front-leak.txt").exists()

    def test_an_identifier_parameter_cannot_name_another_table(self, analyst):
        with pytest.raises(DatabaseError, match="ACCESS_DENIED"):
            analyst.query("SELECT * FROM abaxus.{t:Identifier}", parameters={"t": "pending_voids"})

    def test_a_wrong_password_says_to_use_a_read_key(self, front):
        with pytest.raises(DatabaseError, match="read or admin scope") as failed:
            clickhouse_connect.get_client(dsn=f"http://ann:wrong@127.0.0.1:{front.port}")
        assert failed.value.code == 516
        missing = httpx.get(f"http://127.0.0.1:{front.port}/", params={"query": "SELECT 1"})
        assert missing.status_code == 401
        assert "API key" in missing.text

    def test_a_runaway_query_is_stopped_while_inserts_go_on(self, analyst, full):
        full.command("CREATE DATABASE IF NOT EXISTS front_t")
        full.command("CREATE TABLE IF NOT EXISTS front_t.ev (k String, v UInt64, ts DateTime64(3, 'UTC')) "
                     "ENGINE = ReplacingMergeTree ORDER BY k")
        failure: list[BaseException] = []

        def runaway() -> None:
            try:
                analyst.query("SELECT sleep(3)")
            except DatabaseError as exc:
                failure.append(exc)

        started = time.monotonic()
        worker = threading.Thread(target=runaway)
        worker.start()
        running = "SELECT count() FROM system.processes WHERE query LIKE '%sleep(3)%' AND query NOT LIKE '%processes%'"
        wait_until(lambda: int(full.command(running)) > 0, timeout=5, interval=0.01)  # the runaway query is under way
        full.insert_arrow("front_t.ev", pa.table({"k": ["during"], "v": pa.array([1], pa.uint64()),
                                                  "ts": pa.array([0], pa.timestamp("ms", tz="UTC"))}))
        inserted_after = time.monotonic() - started
        worker.join()
        assert inserted_after < 0.5
        assert failure
        assert "TIMEOUT_EXCEEDED" in str(failure[0])
        assert time.monotonic() - started < 2.5

    def test_settings_cannot_lift_the_limits(self, front):
        answer = httpx.get(f"http://127.0.0.1:{front.port}/", auth=("ann", READ_KEY),
                           params={"query": "SELECT 1", "max_execution_time": "1000"})
        assert answer.status_code == 500
        assert "READONLY" in answer.text
        inline = httpx.get(f"http://127.0.0.1:{front.port}/", auth=("ann", READ_KEY),
                           params={"query": "SELECT 1 SETTINGS max_execution_time = 1000"})
        assert "READONLY" in inline.text


def test_without_a_usage_password_the_full_user_is_off(store):
    with UsageFront(Path(store.settings.data_dir) / "chdb", port=0, usage_password=None,
                    authenticate=lambda key: False) as front:
        answer = httpx.get(f"http://127.0.0.1:{front.port}/", params={"query": "SELECT 1"}, auth=("abaxus", ""))
    assert answer.status_code == 403
    assert answer.headers["X-ClickHouse-Exception-Code"] == "516"


class TestPlainHttp:
    def test_curl_style_get_with_basic_auth(self, front):
        answer = httpx.get(f"http://127.0.0.1:{front.port}/", params={"query": "SELECT 1"}, auth=("ann", READ_KEY))
        assert answer.status_code == 200
        assert answer.text == "1\n"
        assert answer.headers["X-ClickHouse-Format"] == "TabSeparated"
        assert answer.headers["X-ClickHouse-Query-Id"]

    def test_clickhouse_headers_and_url_credentials(self, front):
        by_headers = httpx.post(f"http://127.0.0.1:{front.port}/", content=b"SELECT 2 FORMAT JSONEachRow",
                                headers={"X-ClickHouse-User": "abaxus", "X-ClickHouse-Key": PASSWORD})
        assert by_headers.json() == {"2": 2}
        by_params = httpx.get(f"http://127.0.0.1:{front.port}/", params={
            "query": "SELECT {n:UInt8} + 1", "param_n": "2", "user": "ann", "password": READ_KEY})
        assert by_params.text == "3\n"

    def test_ping(self, front):
        assert httpx.get(f"http://127.0.0.1:{front.port}/ping").text == "Ok.\n"
