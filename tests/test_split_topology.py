"""The split topology with real processes: a Kafka broker, PostgreSQL, one worker, two API replicas.

The worker owns embedded chDB and offers its usage front (ClickHouse's HTTP interface);
the API replicas reach the usage store through it with ``ABAXUS_CLICKHOUSE_URL``, exactly
as they would reach a ClickHouse server, and share one PostgreSQL metadata database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx
import msgspec
import pytest

from conftest import ADMIN_KEY, throwaway_pg_database
from helpers import wait_until
from kafka_broker import Broker
from quickstart_bodies import CUSTOMER, JSON, METRIC, PLAN_JSON
from server_process import ServerProcess, free_port

pytestmark = pytest.mark.postgres

FRONT_PASSWORD = "front-" + uuid.uuid4().hex
APRIL = {"period_start": "2026-04-01T00:00:00Z", "period_end": "2026-04-30T23:59:59Z"}


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database that the replicas and the worker share."""
    with throwaway_pg_database("abaxus_split") as url:
        yield url


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker().start()
    yield b
    b.stop()


class Topology:
    """One worker (chDB owner + usage front) and two API replicas, as child processes."""

    def __init__(self, root: Path, broker: Broker, pg_url: str) -> None:
        self.root = root
        self.front_port = free_port()
        self.worker_port = free_port()
        common = {"ABAXUS_KAFKA_BROKERS": broker.address, "ABAXUS_KAFKA_PARTITIONS": "4", "ABAXUS_DATABASE_URL": pg_url,
                  "ABAXUS_EPOCH_SECONDS": "1"}
        # Two Bytewax workers: the partitions' dedup state is spread over them.
        self.worker = ServerProcess(root / "worker", ADMIN_KEY, port=self.worker_port,
                                    args=("--role", "worker", "--workers", "2"),
                                    extra_env={**common, "ABAXUS_WORKER_PORT": str(self.worker_port),
                                               "ABAXUS_USAGE_PORT": str(self.front_port),
                                               "ABAXUS_USAGE_PASSWORD": FRONT_PASSWORD})
        front = f"http://abaxus:{FRONT_PASSWORD}@127.0.0.1:{self.front_port}"
        self.apis = [ServerProcess(root / f"api{i}", ADMIN_KEY, args=("--role", "api"),
                                   extra_env={**common, "ABAXUS_CLICKHOUSE_URL": front}) for i in (1, 2)]

    def start(self) -> None:
        self.worker.start()
        for api in self.apis:  # one after the other: the first creates the bootstrap key in PostgreSQL
            api.start()

    def stop(self) -> None:
        for p in (*self.apis, self.worker):
            p.stop()

    def usage_client(self) -> Any:
        return clickhouse_connect.get_client(dsn=f"http://abaxus:{FRONT_PASSWORD}@127.0.0.1:{self.front_port}")


@pytest.fixture
def topology(tmp_path: Path, broker: Broker, pg_url: str) -> Iterator[Topology]:
    t = Topology(tmp_path, broker, pg_url)
    try:
        t.start()
        yield t
    finally:
        t.stop()


def _events(customer: str, n: int, value: int, prefix: str) -> list[dict[str, Any]]:
    return [{"customer_id": customer, "metric_key": "api_calls", "value": value, "idempotency_key": f"{prefix}-{i}",
             "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1775001600 + (i * 60) % 2_500_000))} for i in range(n)]


def _send(clients: list[httpx.Client], events: list[dict[str, Any]], batch: int = 1000) -> int:
    """Send in batches, alternating replicas; resend a batch answered 503 (nothing of it was acknowledged)."""
    acknowledged = 0
    for n, start in enumerate(range(0, len(events), batch)):
        body = msgspec.json.encode({"events": events[start:start + batch]})
        client = clients[n % len(clients)]
        for _ in range(200):
            try:
                r = client.post("/v1/events/batch", content=body, headers=JSON)
            except httpx.TransportError:  # the replica is restarting or the broker is paused
                time.sleep(0.2)
                continue
            if r.status_code != HTTPStatus.SERVICE_UNAVAILABLE:
                break
            time.sleep(float(r.headers.get("retry-after", "1")))
        assert r.status_code == HTTPStatus.ACCEPTED, r.text
        acknowledged += r.json()["accepted"]
    return acknowledged


def _catalog(c: httpx.Client, *customers: str) -> None:
    assert c.post("/v1/metrics", json=METRIC).status_code == HTTPStatus.CREATED
    assert c.post("/v1/price-plans", content=PLAN_JSON, headers=JSON).status_code == HTTPStatus.CREATED
    for customer in customers:
        body = {**CUSTOMER, "id": customer}
        assert c.post("/v1/customers", json=body).status_code == HTTPStatus.CREATED
        r = c.post("/v1/subscriptions", json={"customer_id": customer, "plan_id": "plan_growth",
                                              "start_date": "2026-04-01T00:00:00Z"})
        assert r.status_code == HTTPStatus.CREATED, r.text


def _april_usage(c: httpx.Client, customer: str) -> tuple[int, int]:
    r = c.post("/v1/usage/compute", json={"customer_id": customer, "metric_key": "api_calls", **APRIL})
    assert r.status_code == HTTPStatus.OK, r.text
    row = r.json()["data"][0]
    return int(row["quantity"]), int(row["event_count"])


def test_quick_start_through_two_replicas_and_a_killed_worker_counts_every_event_once(topology: Topology):
    a, b = (api.client() for api in topology.apis)
    _catalog(a, "cust_acme", "cust_beta")
    # The Quick Start's 1.2M API calls (as 12,000 events of 100), half through each replica.
    acme = _events("cust_acme", 12_000, 100, "acme")
    assert _send([a, b], acme) == 12_000
    # An invoice created after the 202s counts every one of them: the replica's barrier waits for the worker.
    r = b.post("/v1/invoices", json={"customer_id": "cust_acme", "cutoff_date": "2026-04-30T23:59:59Z"})
    assert r.status_code == HTTPStatus.CREATED, r.text
    invoice = r.json()
    assert invoice["total_amount"] == 14_900
    assert invoice["line_items"][0]["event_count"] == 12_000

    # A second stream; the worker is killed in the middle of it and restarted.
    beta = _events("cust_beta", 20_000, 1, "beta")
    _send([a, b], beta[:8_000])
    topology.worker.kill()
    _send([a, b], beta[8_000:14_000])  # the broker keeps taking events while no worker runs
    topology.worker.start()
    _send([a, b], beta[14_000:])
    # Every client re-sends everything it ever sent: nothing may count twice.
    _send([b, a], acme + beta)

    assert _april_usage(a, "cust_beta") == (20_000, 20_000)
    assert _april_usage(b, "cust_acme") == (1_200_000, 12_000)
    usage = topology.usage_client()
    stored = usage.query("SELECT customer_id, count(), uniqExact(idempotency_key) FROM abaxus.events FINAL "
                         "GROUP BY customer_id ORDER BY customer_id").result_rows
    assert [tuple(row) for row in stored] == [("cust_acme", 12_000, 12_000), ("cust_beta", 20_000, 20_000)]
    # The April invoice is reproducible: created again from the same usage it is the same.
    again = a.post("/v1/invoices", json={"customer_id": "cust_acme", "cutoff_date": "2026-04-30T23:59:59Z"})
    assert again.status_code in (HTTPStatus.OK, HTTPStatus.CREATED, HTTPStatus.CONFLICT), again.text


@pytest.mark.slow
def test_the_full_quick_start_volume_through_two_replicas_bills_14900(topology: Topology):
    """1,200,000 events of one call each, half through each replica (slow: run with -m slow)."""
    a, b = (api.client() for api in topology.apis)
    _catalog(a, "cust_acme")
    assert _send([a, b], _events("cust_acme", 1_200_000, 1, "qs")) == 1_200_000
    r = a.post("/v1/invoices", json={"customer_id": "cust_acme", "cutoff_date": "2026-04-30T23:59:59Z"})
    assert r.status_code == HTTPStatus.CREATED, r.text
    usage, fee = r.json()["line_items"]
    assert (usage["quantity"], usage["event_count"], [t["amount"] for t in usage["tier_breakdown"]]) == (
        1_200_000, 1_200_000, [0, 9000, 1000])
    assert (fee["amount"], r.json()["total_amount"]) == (4900, 14_900)


def test_a_broker_outage_answers_503_and_loses_nothing_acknowledged(topology: Topology, broker: Broker):
    a, b = (api.client() for api in topology.apis)
    _catalog(a, "cust_acme")
    acknowledged: list[str] = []
    events = _events("cust_acme", 3_000, 1, "outage")
    for start in range(0, 1_000, 500):
        r = a.post("/v1/events/batch", json={"events": events[start:start + 500]})
        assert r.status_code == HTTPStatus.ACCEPTED, r.text
        acknowledged += [e["idempotency_key"] for e in events[start:start + 500]]
    assert broker.process is not None
    broker.process.send_signal(signal.SIGSTOP)  # the broker stops answering (its data stays)
    try:
        refused = []
        for start in range(1_000, 2_000, 500):
            r = b.post("/v1/events/batch", json={"events": events[start:start + 500]}, timeout=30)
            refused.append(r.status_code)
            if r.status_code == HTTPStatus.ACCEPTED:
                acknowledged += [e["idempotency_key"] for e in events[start:start + 500]]
            else:
                assert r.json()["error"]["code"] == "NOT_READY"
                assert r.headers["retry-after"]
        assert HTTPStatus.SERVICE_UNAVAILABLE in refused
        ready = wait_until(lambda: (s := httpx.get(f"{topology.apis[0].url}/readyz", timeout=10)).status_code == 503 and s,
                           timeout=30)
        assert ready.json()["error"]["checks"]["queue"] == "down" if "error" in ready.json() else True
    finally:
        broker.process.send_signal(signal.SIGCONT)
    # Back: the rest is accepted, and everything that got a 202 is stored exactly once.
    wait_until(lambda: a.post("/v1/events/batch", json={"events": events[2_000:2_500]}).status_code == HTTPStatus.ACCEPTED,
               timeout=60, interval=0.5)
    acknowledged += [e["idempotency_key"] for e in events[2_000:2_500]]
    value, count = _april_usage(b, "cust_acme")
    stored = {row[0] for row in topology.usage_client().query(
        "SELECT idempotency_key FROM abaxus.events FINAL").result_rows}
    assert set(acknowledged) <= stored
    assert value == count == len(stored)


def test_one_process_with_a_broker_queues_through_kafka(tmp_path: Path, broker: Broker):
    """``abaxus serve`` with ABAXUS_KAFKA_BROKERS: the API and a worker in one process, Kafka between them."""
    worker_port = free_port()
    server = ServerProcess(tmp_path / "one", ADMIN_KEY, extra_env={"ABAXUS_KAFKA_BROKERS": broker.address,
                                                                   "ABAXUS_WORKER_PORT": str(worker_port)})
    server.start()
    try:
        c = server.client()
        _catalog(c, "cust_acme")
        assert _send([c], _events("cust_acme", 2_500, 3, "one")) == 2_500
        assert _send([c], _events("cust_acme", 1_000, 3, "one")) == 1_000  # the same keys again
        assert _april_usage(c, "cust_acme") == (7_500, 2_500)
        assert httpx.get(f"http://127.0.0.1:{worker_port}/readyz", timeout=10).json()["status"] == "ready"
    finally:
        server.stop()


def test_the_topology_refuses_what_it_cannot_run(tmp_path: Path):
    env = {**os.environ, "ABAXUS_DATA_DIR": str(tmp_path), "ABAXUS_USAGE_PORT": "off"}
    out = subprocess.run([sys.executable, "-m", "abaxus.cli", "serve", "--role", "api"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert "ABAXUS_KAFKA_BROKERS" in out.stdout
    out = subprocess.run([sys.executable, "-m", "abaxus.cli", "serve", "--role", "api"],
                         env={**env, "ABAXUS_KAFKA_BROKERS": "127.0.0.1:1"}, capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 2
    assert "ABAXUS_CLICKHOUSE_URL" in out.stdout
    # A worker whose broker does not answer says so and exits (no traceback to read at 3 a.m.).
    out = subprocess.run([sys.executable, "-m", "abaxus.cli", "serve", "--role", "worker"],
                         env={**env, "ABAXUS_KAFKA_BROKERS": f"127.0.0.1:{free_port()}"}, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 1
    assert "Cannot reach the Kafka broker" in out.stdout
