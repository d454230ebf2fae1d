"""The typed Python client (sdk/python, ``abaxus_client``) against real HTTP.

Unit-level parts (backoff, Retry-After, error mapping, retry decisions, pagination) run
against a tiny loopback ``http.server`` that answers scripted responses; the scenarios run
against a real ``abaxus serve`` child process: the Quick Start entirely through the client,
writes that ride out a server restart exactly once, and the batcher under real 503
back-pressure delivering every event exactly once.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import itertools
import json
import random
import sys
import threading
import time
import typing
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk" / "python"))

from abaxus_client import (
    AbaxusError,
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    Charge,
    Client,
    ConflictError,
    Event,
    InternalServerError,
    NotFoundError,
    PaymentFailedError,
    RateLimitedError,
    RetryEvent,
    RetryPolicy,
    Tier,
    UnavailableError,
    ValidationError,
    event_id_for,
)
from abaxus_client import models as m
from abaxus_client._encoding import encode
from abaxus_client._retry import RetryState, parse_retry_after
from abaxus_client.errors import error_from_response
from server_process import ServerProcess, free_port

KEY = "sk_test_" + "C" * 40


# ---- a scripted loopback server --------------------------------------------------------------
class Scripted:
    """Answers each request with the next scripted (status, headers, body) for its path; records requests."""

    def __init__(self) -> None:
        self.script: dict[str, list[tuple[int, dict[str, str], Any, float]]] = {}
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def on(self, path: str, status: int, body: Any = None, headers: dict[str, str] | None = None,
           delay: float = 0.0) -> None:
        self.script.setdefault(path, []).append((status, headers or {}, body, delay))

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r["path"] == path)


@pytest.fixture
def loopback() -> Iterator[tuple[str, Scripted]]:
    scripted = Scripted()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            with scripted.lock:
                scripted.requests.append({"method": self.command, "path": path, "query": self.path.partition("?")[2],
                                          "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                queue = scripted.script.get(path, [])
                status, headers, payload, delay = queue.pop(0) if len(queue) > 1 else (queue[0] if queue else (
                    404, {}, {"error": {"code": "NOT_FOUND", "message": "no script", "field": None}}, 0.0))
            if delay:
                time.sleep(delay)
            raw = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PATCH = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", scripted
    finally:
        httpd.shutdown()
        httpd.server_close()


def _err(code: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": f"{code} happened", "field": field, **extra}}


FAST = RetryPolicy(max_attempts=5, max_elapsed=10, base_delay=0.01, max_delay=0.05)
CUSTOMER = {"id": "cust_acme", "name": "Acme Corp", "email": None, "currency": None, "payment_provider": None,
            "payment_provider_customer_id": None, "payment_method_id": None, "metadata": {},
            "created_at": "2026-04-03T09:01:00Z", "updated_at": "2026-04-03T09:01:00Z"}


# ---- backoff, Retry-After and error mapping (no server) -------------------------------------
def test_full_jitter_backoff_stays_under_the_capped_exponential_and_spreads():
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    rng = random.Random(7)
    for attempt, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (12, 4.0)]:
        waits = [policy.backoff(attempt, rng) for _ in range(2000)]
        assert all(0 <= w <= cap for w in waits)
        assert max(waits) > 0.9 * cap, "full jitter spans [0, cap]"
        assert min(waits) < 0.1 * cap, "full jitter spans [0, cap]"
        assert abs(sum(waits) / len(waits) - cap / 2) < 0.05 * cap


def test_retry_budget_counts_attempts_and_total_time_and_retry_after_is_a_floor():
    now = [0.0]
    state = RetryState(RetryPolicy(max_attempts=3, max_elapsed=10, base_delay=0.1, max_delay=0.2),
                       clock=lambda: now[0], rng=random.Random(1))
    state.begin_attempt()
    assert 0 <= state.next_delay() <= 0.1  # type: ignore[operator]
    assert state.next_delay(retry_after=2.0) == 2.0  # the server's wait wins over a shorter backoff
    now[0] = 9.0
    assert state.next_delay(retry_after=2.0) is None, "a wait ending past max_elapsed is not started"
    now[0] = 0.0
    state.begin_attempt()
    state.begin_attempt()
    assert state.next_delay() is None, "max_attempts counts the first try"
    assert not state.retryable_status(500, "INTERNAL_ERROR")
    assert not state.retryable_status(422, "X")
    assert state.retryable_status(429, "RATE_LIMITED")
    assert state.retryable_status(503, "NOT_READY")
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_retry_after_parses_seconds_and_http_dates():
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(date, now=now) <= 31  # type: ignore[operator]
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize(("status", "cls"), [(400, AbaxusError), (401, AbaxusError), (402, PaymentFailedError),
                                             (404, NotFoundError), (409, ConflictError), (422, ValidationError),
                                             (429, RateLimitedError), (500, InternalServerError),
                                             (503, UnavailableError)])
def test_error_responses_map_to_exception_classes_with_every_member(status: int, cls: type[AbaxusError]):
    err = error_from_response(status, _err("SOME_CODE", "charges.0.tiers.2.up_to", decline_code="card_declined",
                                           existing_invoice_id="inv_1", checks={"queue": "down"}),
                              {"retry-after": "3"}, method="POST", path="/v1/x")
    assert isinstance(err, cls)
    assert isinstance(err, AbaxusError)
    assert (err.status, err.code, err.field) == (status, "SOME_CODE", "charges.0.tiers.2.up_to")
    assert err.extra["decline_code"] == "card_declined"
    assert "SOME_CODE" in str(err)
    assert "POST /v1/x" in str(err)
    if isinstance(err, PaymentFailedError):
        assert err.decline_code == "card_declined"
    if isinstance(err, ConflictError):
        assert err.existing_invoice_id == "inv_1"
    if isinstance(err, UnavailableError):
        assert err.checks == {"queue": "down"}
        assert err.retry_after == 3.0
    plain = error_from_response(502, b"<html>bad gateway</html>", {})
    assert isinstance(plain, InternalServerError)
    assert plain.code is None
    assert "base_url" in plain.message


def test_event_ids_are_computed_like_the_server():
    assert event_id_for("req_7f8a9b2c3d4e5f6a") == "evt_4p4erop5rryigojg47u5ojfyt7"  # spec §1


def test_requests_refuse_naive_datetimes_and_encode_decimals_exactly():
    with pytest.raises(ValueError, match="timezone-aware"):
        Event(customer_id="c", metric_key="m", timestamp=datetime(2026, 4, 3), idempotency_key="k")
    e = Event(customer_id="c", metric_key="m", value=Decimal("0.00005"), idempotency_key="k",
              timestamp=datetime(2026, 4, 3, 9, 30, tzinfo=UTC))
    assert encode(e) == (b'{"customer_id":"c","metric_key":"m","timestamp":"2026-04-03T09:30:00Z",'
                         b'"idempotency_key":"k","value":0.00005}')


# ---- retry behaviour against a real loopback HTTP server -------------------------------------
def test_429_is_retried_after_retry_after_with_the_same_idempotency_key(loopback):
    url, s = loopback
    s.on("/v1/customers", 429, _err("RATE_LIMITED"), {"Retry-After": "1"})
    s.on("/v1/customers", 201, {**CUSTOMER, "a_field_from_a_newer_server": {"x": 1}})
    seen: list[RetryEvent] = []
    with Client(KEY, base_url=url, retry=FAST, on_retry=seen.append) as c:
        t0 = time.monotonic()
        customer = c.customers.create(id="cust_acme", name="Acme Corp")
        waited = time.monotonic() - t0
    assert customer.id == "cust_acme", "unknown response fields are ignored"
    assert customer.metadata == {}, "unknown response fields are ignored"
    assert waited >= 1.0, "Retry-After: 1 must be honoured"
    keys = [r["headers"].get("idempotency-key") for r in s.requests]
    assert len(keys) == 2, "one Idempotency-Key per logical call"
    assert keys[0], "one Idempotency-Key per logical call"
    assert keys[0] == keys[1], "one Idempotency-Key per logical call"
    assert [(e.status, e.attempt) for e in seen] == [(429, 1)]
    assert seen[0].delay >= 1.0
    assert json.loads(s.requests[0]["body"]) == {"id": "cust_acme", "name": "Acme Corp"}, "unset fields are not sent"


def test_503_is_retried_with_and_without_retry_after_and_each_call_gets_a_fresh_key(loopback):
    url, s = loopback
    s.on("/v1/customers", 503, _err("NOT_READY"))
    s.on("/v1/customers", 503, _err("NOT_READY"), {"Retry-After": "1"})
    s.on("/v1/customers", 201, CUSTOMER)
    s.on("/v1/customers/cust_acme", 200, CUSTOMER)
    with Client(KEY, base_url=url, retry=FAST) as c:
        t0 = time.monotonic()
        c.customers.create(id="cust_acme", name="Acme Corp")
        assert time.monotonic() - t0 >= 1.0
        c.customers.update("cust_acme", email=None)  # a second logical call
    keys = [r["headers"]["idempotency-key"] for r in s.requests]
    assert len(keys) == 4
    assert len(set(keys[:3])) == 1
    assert keys[3] != keys[0]
    assert s.requests[3]["method"] == "PATCH"
    assert json.loads(s.requests[3]["body"]) == {"email": None}


def test_reads_and_event_writes_carry_no_idempotency_key_but_are_retried(loopback):
    url, s = loopback
    s.on("/v1/customers/cust_acme", 503, _err("NOT_READY"))
    s.on("/v1/customers/cust_acme", 200, CUSTOMER)
    s.on("/v1/events", 503, _err("NOT_READY"))
    s.on("/v1/events", 202, {"event_id": event_id_for("k1"), "status": "queued", "idempotency_key": "k1"})
    with Client(KEY, base_url=url, retry=FAST) as c:
        assert c.customers.get("cust_acme").name == "Acme Corp"
        ack = c.events.send(Event(customer_id="cust_acme", metric_key="api_calls", value=1,
                                  timestamp="2026-04-03T09:30:00Z", idempotency_key="k1"))
    assert ack.event_id == event_id_for("k1")
    assert all("idempotency-key" not in r["headers"] for r in s.requests)
    bodies = [r["body"] for r in s.requests if r["path"] == "/v1/events"]
    assert len(bodies) == 2, "a resent event is byte-identical"
    assert bodies[0] == bodies[1], "a resent event is byte-identical"


@pytest.mark.parametrize(("status", "code", "cls"), [(400, "MALFORMED_JSON", AbaxusError),
                                                     (404, "CUSTOMER_NOT_FOUND", NotFoundError),
                                                     (409, "IDEMPOTENCY_KEY_IN_USE", ConflictError),
                                                     (422, "INVALID_FIELD", ValidationError),
                                                     (500, "INTERNAL_ERROR", InternalServerError)])
def test_other_4xx_and_500_are_raised_at_once_without_a_retry(loopback, status: int, code: str,
                                                              cls: type[AbaxusError]):
    url, s = loopback
    s.on("/v1/customers", status, _err(code, "email"))
    with Client(KEY, base_url=url, retry=FAST) as c, pytest.raises(cls) as info:
        c.customers.create(id="cust_acme", name="Acme Corp")
    assert s.count("/v1/customers") == 1
    assert (info.value.status, info.value.code, info.value.field) == (status, code, "email")
    assert info.value.idempotency_key == s.requests[0]["headers"]["idempotency-key"], \
        "the error names the key, so the caller can repeat the same logical write"


def test_a_retry_after_beyond_the_budget_raises_at_once(loopback):
    url, s = loopback
    s.on("/v1/customers/cust_acme", 429, _err("RATE_LIMITED"), {"Retry-After": "60"})
    with Client(KEY, base_url=url, retry=RetryPolicy(max_attempts=5, max_elapsed=5)) as c:
        t0 = time.monotonic()
        with pytest.raises(RateLimitedError) as info:
            c.customers.get("cust_acme")
    assert time.monotonic() - t0 < 1.0
    assert info.value.retry_after == 60.0
    assert s.count("/v1/customers/cust_acme") == 1


def test_a_timed_out_write_is_resent_under_the_same_key_and_no_answer_ends_in_a_connection_error(loopback):
    url, s = loopback
    s.on("/v1/invoices/bulk", 202, {"job_id": "job_1", "status": "queued"}, delay=1.0)
    s.on("/v1/invoices/bulk", 202, {"job_id": "job_1", "status": "queued"})
    with Client(KEY, base_url=url, retry=FAST, timeout=0.3) as c:
        assert c.invoices.bulk(cutoff_date="2026-04-30T23:59:59Z").job_id == "job_1"
    keys = {r["headers"]["idempotency-key"] for r in s.requests}
    assert s.count("/v1/invoices/bulk") == 2
    assert len(keys) == 1
    with Client(KEY, base_url=url, retry=FAST, timeout=0.2) as c:
        s.script["/v1/invoices/bulk"] = [(202, {}, {"job_id": "j", "status": "queued"}, 1.0)]
        with pytest.raises(APITimeoutError) as info:
            c.invoices.bulk(cutoff_date="2026-04-30T23:59:59Z")
        assert info.value.attempts == FAST.max_attempts
        assert info.value.status is None
    with Client(KEY, base_url=f"http://127.0.0.1:{free_port()}", retry=FAST) as c, \
            pytest.raises(APIConnectionError, match="could not be reached"):
        c.jobs.get("job_1")


def test_batch_207_and_422_return_results_while_a_whole_request_422_raises(loopback):
    url, s = loopback
    mixed = {"accepted": 1, "rejected": 1, "results": [
        {"index": 0, "event_id": event_id_for("a"), "status": "queued"},
        {"index": 1, "status": "rejected", "error": {"code": "METRIC_NOT_FOUND", "message": "m",
                                                     "field": "events.1.metric_key"}}]}
    s.on("/v1/events/batch", 207, mixed)
    s.on("/v1/events/batch", 422, {"accepted": 0, "rejected": 1, "results": [mixed["results"][1] | {"index": 0}]})
    s.on("/v1/events/batch", 422, _err("VALIDATION_ERROR", "events"))
    ev = [Event(customer_id="c", metric_key="m", value=1, timestamp="2026-04-03T09:30:00Z", idempotency_key=k)
          for k in ("a", "b")]
    with Client(KEY, base_url=url, retry=FAST) as c:
        r = c.events.batch(ev)
        assert (r.accepted, r.rejected) == (1, 1)
        assert r.results[1].error.field == "events.1.metric_key"  # type: ignore[union-attr]
        assert not r.results[1].ok
        assert r.results[0].ok
        assert c.events.batch(ev[1:]).accepted == 0
        with pytest.raises(ValidationError):
            c.events.batch(ev[1:])
        with pytest.raises(ValueError, match="1–1,000"):
            c.events.batch([])


def test_the_batcher_blocks_when_full_resends_the_same_bytes_and_reports_whole_request_refusals(loopback):
    url, s = loopback
    ok = {"accepted": 10, "rejected": 0,
          "results": [{"index": i, "event_id": event_id_for(f"k{i}"), "status": "queued"} for i in range(10)]}
    s.on("/v1/events/batch", 503, _err("NOT_READY"), {"Retry-After": "1"})
    s.on("/v1/events/batch", 202, ok, delay=0.5)
    s.on("/v1/events/batch", 401, _err("UNAUTHENTICATED"))
    with Client(KEY, base_url=url, retry=FAST) as c:
        batcher = c.events.batcher(max_batch=10, flush_interval_ms=20, max_buffered=10)
        for i in range(10):
            batcher.add(_event(f"k{i}"))
        with pytest.raises(TimeoutError, match="Retry add"):
            batcher.add(_event("k10"), timeout=0.3)  # the 10 are held until the server answers them
        first = batcher.flush(timeout=10)
        assert [(r.seq, r.status, r.event_id) for r in first] == [(i, "queued", event_id_for(f"k{i}")) for i in range(10)]
        batcher.add({"customer_id": "cust_acme", "metric_key": "api_calls", "value": 1,
                     "timestamp": "2026-04-03T09:30:00Z", "idempotency_key": "z"})
        last = batcher.close(timeout=10)
        assert [(r.seq, r.status, r.error.code if r.error else None) for r in last] == \
            [(10, "rejected", "UNAUTHENTICATED")], "a refusal resending cannot fix is reported, not retried forever"
        with pytest.raises(RuntimeError, match="closed"):
            batcher.add(_event("late"))
        with c.events.batcher() as other, pytest.raises(ValueError, match="idempotency_key"):
            other.add({"customer_id": "cust_acme"})
    bodies = [r["body"] for r in s.requests if r["path"] == "/v1/events/batch"]
    assert len(bodies) == 3, "the batch after a 503 is resent byte for byte"
    assert bodies[0] == bodies[1], "the batch after a 503 is resent byte for byte"
    assert batcher.totals == (10, 1)


def test_lists_follow_cursors_lazily_sync_and_async(loopback):
    url, s = loopback
    inv = {"id": "inv_x", "type": "standard", "customer_id": "cust_acme", "status": "issued", "currency": "usd",
           "period_start": "2026-04-01T00:00:00Z", "period_end": "2026-04-30T23:59:59Z", "total_amount": 1,
           "line_items": [], "created_at": "2026-05-01T00:00:00Z"}
    pages = {None: ("c1", 2), "c1": ("c2", 2), "c2": (None, 1)}

    def script() -> None:
        s.script["/v1/invoices"] = [(200, {}, {"data": [{**inv, "id": f"inv_{cur}_{i}"} for i in range(n)],
                                               "next_cursor": nxt}, 0.0) for cur, (nxt, n) in pages.items()]
        s.script["/v1/invoices"].append(s.script["/v1/invoices"][-1])

    script()
    with Client(KEY, base_url=url) as c:
        it = c.invoices.list(customer_id="cust_acme", limit=2)
        assert s.count("/v1/invoices") == 0, "nothing is fetched before iteration"
        assert [i.id for i in itertools.islice(it, 1)] == ["inv_None_0"]
        assert s.count("/v1/invoices") == 1
        script()
        assert len(list(c.invoices.list(customer_id="cust_acme", limit=2))) == 5
    queries = [r["query"] for r in s.requests if r["path"] == "/v1/invoices"]
    assert queries[1] == "customer_id=cust_acme&limit=2"
    assert "cursor=c1" in queries[2]
    assert "cursor=c2" in queries[3]

    async def run() -> list[str]:
        script()
        async with AsyncClient(KEY, base_url=url) as ac:
            return [i.id async for i in ac.invoices.list(customer_id="cust_acme")]

    assert len(asyncio.run(run())) == 5
    with pytest.raises(ValueError, match="1–1000"):
        Client(KEY, base_url=url).invoices.list(limit=5000)


def test_async_client_retries_like_the_sync_one(loopback):
    url, s = loopback
    s.on("/v1/customers", 503, _err("NOT_READY"), {"Retry-After": "1"})
    s.on("/v1/customers", 201, CUSTOMER)
    s.on("/v1/customers/nope", 404, _err("CUSTOMER_NOT_FOUND"))

    async def run() -> None:
        async with AsyncClient(KEY, base_url=url, retry=FAST) as ac:
            assert (await ac.customers.create(id="cust_acme", name="Acme Corp")).id == "cust_acme"
            with pytest.raises(NotFoundError):
                await ac.customers.get("nope")

    t0 = time.monotonic()
    asyncio.run(run())
    assert time.monotonic() - t0 >= 1.0
    keys = [r["headers"]["idempotency-key"] for r in s.requests if r["path"] == "/v1/customers"]
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert s.count("/v1/customers/nope") == 1


# ---- against a real server -------------------------------------------------------------------

APRIL = {"period_start": "2026-04-01T00:00:00Z", "period_end": "2026-04-30T23:59:59Z"}
GROWTH_CHARGES = [
    Charge(metric_key="api_calls", pricing_model="tiered", tiers=[
        Tier(up_to=100_000, unit_price=0), Tier(up_to=1_000_000, unit_price=Decimal("0.0001")),
        Tier(up_to=None, unit_price=Decimal("0.00005"))]),
    Charge(metric_key=None, pricing_model="flat_fee", amount=Decimal("49.00"), description="Growth base fee"),
]


def _checksum(keys: Any) -> str:
    acc = 0
    for k in keys:
        acc ^= int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "big")
    return f"{acc:016x}"


def _event(key: str, value: int = 1000, ts: str = "2026-04-03T09:30:00Z", metric: str = "api_calls") -> Event:
    return Event(customer_id="cust_acme", metric_key=metric, value=value, timestamp=ts, idempotency_key=key)


def _quickstart_catalog(c: Client) -> str:
    """Quick Start steps 1–4 (spec §19) through the client; returns the subscription id."""
    c.metrics.create(key="api_calls", name="API Calls", aggregation="sum",
                     description="Total API calls made during the billing period")
    plan = c.price_plans.create(id="plan_growth", name="Growth", currency="usd", billing_period="monthly",
                                charges=GROWTH_CHARGES)
    assert plan.version == 1
    assert plan.charges[0].tiers[1].unit_price == Decimal("0.0001")  # type: ignore[index]
    assert plan.charges[1].amount == Decimal("49.00")
    assert plan.charges[1].id == "chg_2"
    c.customers.create(id="cust_acme", name="Acme Corp", email="billing@acme.io", payment_provider="stripe",
                       payment_provider_customer_id="cus_stripe_acme123")
    return c.subscriptions.create(customer_id="cust_acme", plan_id="plan_growth",
                                  start_date="2026-04-01T00:00:00Z").id


def _event_count(c: Client, **window: str) -> tuple[int, str | None]:
    usage = c.usage.compute(customer_id="cust_acme", metric_key="api_calls", **(window or APRIL))
    return (usage.data[0].event_count, usage.data[0].events_checksum) if usage.data else (0, None)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "data", KEY)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_quick_start_entirely_through_the_client(server: ServerProcess):
    with Client(KEY, base_url=server.url) as c:
        sub_id = _quickstart_catalog(c)
        with c.events.batcher(max_batch=1000, flush_interval_ms=100) as batcher:
            for i in range(1200):
                batcher.add(_event(f"req_{i}"))
            results = batcher.flush()
        assert [r.seq for r in results] == list(range(1200))
        assert all(r.status == "queued" and r.event_id == event_id_for(r.idempotency_key) for r in results)

        invoice = c.invoices.create(customer_id="cust_acme", cutoff_date="2026-04-30T23:59:59Z")
        assert (invoice.total_amount, invoice.subscription_id, invoice.status) == (14900, sub_id, "issued")
        usage_line, fee = invoice.line_items
        assert [t.amount for t in usage_line.tier_breakdown or []] == [0, 9000, 1000]
        assert (usage_line.quantity, usage_line.amount, usage_line.event_count) == (Decimal(1_200_000), 10000, 1200)
        assert usage_line.events_checksum == _checksum(f"req_{i}" for i in range(1200))
        assert (fee.pricing_model, fee.amount, fee.unit_price) == ("flat_fee", 4900, Decimal("49.00"))

        # Lists are lazy iterators over every page.
        assert [i.id for i in c.invoices.list(customer_id="cust_acme")] == [invoice.id]
        traced = c.invoices.line_item_events(invoice.id, "chg_1", limit=500)
        assert len({e.idempotency_key for e in traced}) == 1200
        assert next(iter(traced.pages())).event_count == 1200
        assert "invoice.issued" in [e.type for e in c.invoices.audit_events(invoice.id)]
        assert c.pricing.preview(plan_id="plan_growth", usage={"api_calls": 1_200_000}).total_amount == 14900
        assert c.invoices.get(invoice.id) == invoice
        assert c.customers.update("cust_acme", email="ap@acme.io").email == "ap@acme.io"
        assert [m.key for m in c.metrics.list()] == ["api_calls"]
        assert c.price_plans.get_version("plan_growth", 1).charges == c.price_plans.get("plan_growth").charges
        assert [s.id for s in c.subscriptions.list(customer_id="cust_acme")] == [sub_id]
        assert c.entitlements.check("cust_acme", "sso").granted is False

        # The server's errors arrive as typed exceptions with its code, field and extra members.
        with pytest.raises(NotFoundError) as nf:
            c.customers.get("cust_nobody")
        assert nf.value.code == "CUSTOMER_NOT_FOUND"
        with pytest.raises(ConflictError) as dup:
            c.invoices.create(customer_id="cust_acme", cutoff_date="2026-04-30T23:59:59Z")
        assert dup.value.code == "INVOICE_ALREADY_EXISTS"
        assert dup.value.existing_invoice_id == invoice.id
        with pytest.raises(ValidationError) as bad:
            c.price_plans.create(id="plan_bad", name="Bad", currency="usd", billing_period="monthly", charges=[
                Charge(metric_key="api_calls", pricing_model="tiered",
                       tiers=[Tier(up_to=10, unit_price=1), Tier(up_to=5, unit_price=1), Tier(up_to=None, unit_price=1)])])
        assert bad.value.code == "TIERS_NOT_ASCENDING"
        assert bad.value.field == "charges.0.tiers.1.up_to"

        read_key = c.api_keys.create(name="dashboard", scope="read")
        assert read_key.secret
        assert read_key.id in [k.id for k in c.api_keys.list()]
        with Client(read_key.secret, base_url=server.url) as reader:
            assert reader.invoices.get(invoice.id).total_amount == 14900
            with pytest.raises(AbaxusError) as scope:
                reader.metrics.create(key="x", name="x", aggregation="sum")
            assert (scope.value.status, scope.value.code) == (403, "INSUFFICIENT_SCOPE")
            c.api_keys.revoke(read_key.id)
            with pytest.raises(AbaxusError) as revoked:
                reader.invoices.get(invoice.id)
            assert revoked.value.status == 401

    async def async_side() -> tuple[int, int, list[str]]:
        async with AsyncClient(KEY, base_url=server.url) as ac:
            async with ac.events.batcher(max_batch=100, flush_interval_ms=50) as b:
                for i in range(300):
                    await b.add(_event(f"may_{i}", value=1, ts="2026-05-02T00:00:00Z"))
                flushed = await b.flush()
            usage = await ac.usage.compute(customer_id="cust_acme", metric_key="api_calls",
                                           period_start="2026-05-01T00:00:00Z", period_end="2026-05-31T23:59:59Z")
            ids = [i.id async for i in ac.invoices.list(customer_id="cust_acme")]
            return len(flushed), usage.data[0].event_count, ids

    assert asyncio.run(async_side()) == (300, 300, [invoice.id])


def test_writes_during_a_server_restart_succeed_exactly_once(tmp_path: Path):
    server = ServerProcess(tmp_path / "data", KEY)
    server.start()
    attempts: list[httpx.Request] = []
    retried: list[RetryEvent] = []
    http = httpx.Client(base_url=server.url, timeout=30, event_hooks={"request": [attempts.append]})
    restarter = threading.Thread(target=lambda: (time.sleep(1.5), server.start()))
    try:
        c = Client(KEY, http_client=http, on_retry=retried.append,
                   retry=RetryPolicy(max_attempts=400, max_elapsed=60, base_delay=0.05, max_delay=0.5))
        _quickstart_catalog(c)
        first = [_event(f"before_{i}") for i in range(100)]
        second = [_event(f"during_{i}") for i in range(100)]
        assert c.events.batch(first).accepted == 100

        server.stop()  # SIGTERM: the client sees refused connections until the restart
        attempts.clear()
        restarter.start()
        out: dict[str, Any] = {}
        writers = [threading.Thread(target=lambda: out.__setitem__("batch", c.events.batch(second))),
                   threading.Thread(target=lambda: out.__setitem__("invoice", c.invoices.create(
                       customer_id="cust_acme", cutoff_date="2026-04-30T23:59:59Z")))]
        for w in writers:
            w.start()
        for w in [*writers, restarter]:
            w.join(90)
        assert "batch" in out, "a write did not survive the restart"
        assert "invoice" in out, "a write did not survive the restart"
        assert any(e.error for e in retried), "the writes never met the downtime"

        invoice_keys = {r.headers["idempotency-key"] for r in attempts if r.url.path == "/v1/invoices"}
        assert sum(r.url.path == "/v1/invoices" for r in attempts) > 1, "the invoice call was retried"
        assert len(invoice_keys) == 1, "every attempt of the invoice call carries the one Idempotency-Key"
        assert all("idempotency-key" not in r.headers for r in attempts if r.url.path.startswith("/v1/events"))
        assert out["batch"].accepted == 100

        # The answers could have been lost: repeating both writes changes nothing.
        again = c.invoices.create(customer_id="cust_acme", cutoff_date="2026-04-30T23:59:59Z",
                                  idempotency_key=invoice_keys.pop())
        assert again == out["invoice"], "the same key replays the stored invoice"
        resent = c.events.batch(second)
        assert [r.event_id for r in resent.results] == [r.event_id for r in out["batch"].results]
        assert [i.id for i in c.invoices.list(customer_id="cust_acme")] == [out["invoice"].id]
        assert _event_count(c) == (200, _checksum([e.idempotency_key for e in first + second]))
        assert out["invoice"].total_amount in (4900, 5900)  # the batch's events may land before or after it
        c.close()
    finally:
        if restarter.is_alive():
            restarter.join(90)
        http.close()
        server.stop()


def test_the_batcher_delivers_every_event_exactly_once_through_real_503_back_pressure(tmp_path: Path):
    server = ServerProcess(tmp_path / "data", KEY, extra_env={"ABAXUS_INTAKE_MAX_BACKLOG": "1000"})
    server.start()
    statuses: list[int | None] = []
    try:
        c = Client(KEY, base_url=server.url, on_retry=lambda e: statuses.append(e.status),
                   retry=RetryPolicy(max_attempts=20, max_elapsed=20, base_delay=0.05, max_delay=1))
        c.metrics.create(key="api_calls", name="API Calls", aggregation="sum")
        c.customers.create(id="cust_acme", name="Acme Corp")
        batcher = c.events.batcher(max_batch=1000, flush_interval_ms=50, max_buffered=2000)
        peak = [0]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], batcher.buffered)
                time.sleep(0.005)

        def produce(w: int) -> None:
            for i in range(2000):
                batcher.add(_event(f"bp{w}-{i}", value=1))
                if w == 0 and i % 500 == 0:
                    batcher.add(_event(f"bad-{i}", metric="no_such_metric"))  # rejected, reported per event
                    batcher.add(_event(f"bp0-{i}", value=1))  # a duplicate: answered, counted once

        threads = [threading.Thread(target=produce, args=(w,)) for w in range(3)] + [threading.Thread(target=watch)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads[:3]:
            t.join(40)
        results = batcher.close(timeout=40)
        done.set()
        threads[3].join(5)
        assert time.monotonic() - t0 < 40

        assert statuses.count(503) > 0, "the server never pushed back; the test proved nothing"
        assert peak[0] <= 2000, "add() must block once max_buffered events are held"
        assert [r.seq for r in results] == list(range(6008)), "flush results cover every added event"
        rejected = [r for r in results if not r.ok]
        assert {r.idempotency_key for r in rejected} == {f"bad-{i}" for i in range(0, 2000, 500)}
        assert {r.error.code for r in rejected if r.error} <= {"METRIC_NOT_FOUND", "UNKNOWN_METRIC"}
        assert all(r.event_id == event_id_for(r.idempotency_key) for r in results if r.ok)
        keys = {f"bp{w}-{i}" for w in range(3) for i in range(2000)}
        assert _event_count(c) == (6000, _checksum(keys)), "every event stored exactly once"
        assert batcher.totals == (6004, 4)

        async_statuses: list[int | None] = []

        async def async_side() -> tuple[int, int]:
            async with AsyncClient(KEY, base_url=server.url, on_retry=lambda e: async_statuses.append(e.status),
                                   retry=RetryPolicy(max_attempts=20, max_elapsed=20)) as ac:
                b = ac.events.batcher(max_batch=1000, flush_interval_ms=50, max_buffered=2000)
                async with b:
                    for i in range(4000):
                        assert b.buffered <= 2000
                        await b.add(_event(f"async-{i}", value=1))
                    flushed = await b.flush()
                return len(flushed), sum(r.ok for r in flushed)

        assert asyncio.run(async_side()) == (4000, 4000)
        assert async_statuses.count(503) > 0, "the async batcher met no back-pressure"
        assert _event_count(c)[0] == 10000
        c.close()
    finally:
        server.stop()


# ---- the client's structs against the server's served OpenAPI document ----------------------
def _openapi_operations() -> list[tuple[str, str, Any, Any]]:
    """(method, served path, client request struct or None, client response struct) per endpoint."""
    return [
        ("post", "/v1/api-keys", m.ApiKeyCreate, m.ApiKey), ("get", "/v1/api-keys", None, m.Page[m.ApiKey]),
        ("delete", "/v1/api-keys/{key_id}", None, m.ApiKey),
        ("post", "/v1/metrics", m.MetricCreate, m.Metric), ("get", "/v1/metrics", None, m.Page[m.Metric]),
        ("get", "/v1/metrics/{key}", None, m.Metric), ("post", "/v1/metrics/{key}/deactivate", None, m.Metric),
        ("post", "/v1/price-plans", m.PricePlanCreate, m.PricePlan),
        ("get", "/v1/price-plans", None, m.Page[m.PricePlan]), ("get", "/v1/price-plans/{plan_id}", None, m.PricePlan),
        ("get", "/v1/price-plans/{plan_id}/versions/{version}", None, m.PricePlan),
        ("post", "/v1/price-plans/{plan_id}/versions/{version}/deprecate", None, m.PricePlan),
        ("post", "/v1/customers", m.CustomerCreate, m.Customer), ("get", "/v1/customers", None, m.Page[m.Customer]),
        ("get", "/v1/customers/{customer_id}", None, m.Customer),
        ("patch", "/v1/customers/{customer_id}", m.CustomerUpdate, m.Customer),
        ("post", "/v1/subscriptions", m.SubscriptionCreate, m.Subscription),
        ("get", "/v1/subscriptions", None, m.Page[m.Subscription]),
        ("get", "/v1/subscriptions/{subscription_id}", None, m.Subscription),
        ("post", "/v1/subscriptions/{subscription_id}/amendments", m.AmendmentCreate, m.Amendment),
        ("get", "/v1/subscriptions/{subscription_id}/amendments", None, m.Page[m.Amendment]),
        ("get", "/v1/entitlements", None, m.Entitlements), ("get", "/v1/entitlements/check", None, m.EntitlementCheck),
        ("post", "/v1/events", m.Event, m.EventAck), ("post", "/v1/events/batch", m.EventBatch, m.BatchResult),
        ("post", "/v1/events/backfill", m.EventBatch, m.BatchResult),
        ("post", "/v1/events/void", m.EventVoid, m.VoidResult), ("get", "/v1/events", None, m.Page[m.StoredEvent]),
        ("get", "/v1/usage/summary", None, m.UsageSummary),
        ("post", "/v1/usage/compute", m.UsageComputeRequest, m.UsageCompute),
        ("post", "/v1/pricing/calculate", m.PricingCalculateRequest, m.Calculation),
        ("post", "/v1/pricing/preview", m.PricingPreviewRequest, m.Preview),
        ("post", "/v1/invoices", m.InvoiceCreate, m.Invoice), ("get", "/v1/invoices", None, m.Page[m.Invoice]),
        ("get", "/v1/invoices/{invoice_id}", None, m.Invoice),
        ("get", "/v1/invoices/{invoice_id}/line-items/{charge_id}/events", None, m.LineItemEventsPage),
        ("post", "/v1/invoices/{invoice_id}/archive", m.InvoiceArchive, m.Invoice),
        ("post", "/v1/invoices/{invoice_id}/adjustments", None, m.Invoice),
        ("get", "/v1/invoices/{invoice_id}/events", None, m.Page[m.AuditEntry]),
        ("post", "/v1/invoices/bulk", m.BulkInvoiceRequest, m.JobRef), ("get", "/v1/jobs/{job_id}", None, m.Job),
        ("post", "/v1/invoices/{invoice_id}/charge", None, m.Payment),
    ]


def _nested_struct(tp: Any, params: dict[Any, Any]) -> Any:
    """The struct inside an annotation (``X``, ``list[X]``, ``X | None``, a type parameter), else None."""

    tp = params.get(tp, tp) if isinstance(tp, typing.TypeVar) else tp
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    if isinstance(origin, type) and issubclass(origin, msgspec.Struct):
        return tp  # a parametrised generic struct such as Page[Invoice]
    for arg in typing.get_args(tp):
        found = _nested_struct(arg, params)
        if found is not None:
            return found
    return None


def _schema_object(doc: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """Follow $ref, array items and nullable unions down to an object schema with properties."""
    while schema is not None:
        if "$ref" in schema:
            schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        elif "properties" in schema:
            return schema
        elif schema.get("type") == "array":
            schema = schema.get("items")
        else:
            options = [s for s in schema.get("oneOf", schema.get("anyOf", [])) if s.get("type") != "null"]
            objects = [o for o in (_schema_object(doc, option) for option in options) if o is not None]
            if len(objects) > 1:  # a tagged union (a plan's charges): one client struct covers every member
                return {"properties": {k: v for o in objects for k, v in o["properties"].items()},
                        "required": sorted(set.intersection(*(set(o.get("required", [])) for o in objects)))}
            schema = options[0] if options else None
    return None


def _served_types(doc: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The JSON types a served property may take, null left out (empty: unconstrained)."""
    if "$ref" in schema:
        return _served_types(doc, doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    if "properties" in schema:
        return {"object"}
    kinds = schema.get("type")
    out = set(kinds if isinstance(kinds, list) else [kinds] if kinds else [])
    for option in schema.get("oneOf", schema.get("anyOf", [])):
        out |= _served_types(doc, option)
    return out - {"null"}


def _client_types(tp: Any, params: dict[Any, Any]) -> set[type]:
    """The Python types an annotation admits (unions flattened, UNSET and None left out)."""

    tp = params.get(tp, tp) if isinstance(tp, typing.TypeVar) else tp
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return {type(v) for v in typing.get_args(tp)}
    if origin is not None and not (isinstance(origin, type) and issubclass(origin, msgspec.Struct)) \
            and origin not in (list, dict):
        return set().union(*(_client_types(a, params) for a in typing.get_args(tp)))
    if tp is Any:
        return {object}
    base = origin if origin is not None else tp
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        return {dict}
    return {base} - {type(None), msgspec.UnsetType}


_ACCEPTS = {"integer": (int, Decimal), "number": (Decimal, float), "string": (str, Decimal),
            "boolean": (bool,), "object": (dict,), "array": (list,)}


def _compare(doc: dict[str, Any], struct: Any, schema: dict[str, Any] | None, where: str, request: bool,
             problems: list[str]) -> None:
    obj = _schema_object(doc, schema)
    if obj is None:
        problems.append(f"{where}: the served schema has no object properties")
        return
    served, required = obj["properties"], set(obj.get("required", []))
    origin = typing.get_origin(struct) or struct
    hints = typing.get_type_hints(origin)
    params = dict(zip(getattr(origin, "__parameters__", ()), typing.get_args(struct), strict=True))
    fields = {f.encode_name: f for f in msgspec.structs.fields(origin)}
    for name in sorted(required - set(fields)):
        problems.append(f"{where}.{name}: served as required, missing from {origin.__name__}")
    for name, f in fields.items():
        if name not in served:
            if request or f.required:
                problems.append(f"{where}.{name}: in {origin.__name__}, not in the served schema")
            continue
        admitted = _client_types(hints[f.name], params)
        for kind in sorted(_served_types(doc, served[name])):
            if object not in admitted and not any(issubclass(t, _ACCEPTS.get(kind, (object,))) for t in admitted):
                problems.append(f"{where}.{name}: served as {kind}, typed {sorted(t.__name__ for t in admitted)} "
                                f"in {origin.__name__}")
        inner = _nested_struct(hints[f.name], params)
        if inner is not None and inner is not origin:
            _compare(doc, inner, served[name], f"{where}.{name}", request, problems)


def test_client_structs_match_the_served_openapi_document(server: ServerProcess):
    """Every endpoint the client calls is served; field names, required-ness and JSON types agree.

    Responses: each field the server marks required is in the client's struct, and each
    required client field is served. Requests: each client field is served (else the strict
    server answers UNKNOWN_FIELD). Nested structs are compared the same way.
    """
    doc = httpx.get(f"{server.url}/schema/openapi.json", timeout=30).json()
    problems: list[str] = []
    for method, path, request, response in _openapi_operations():
        op = doc["paths"].get(path, {}).get(method)
        if op is None:
            problems.append(f"{method.upper()} {path}: not served")
            continue
        if request is not None:
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            _compare(doc, request, body, f"{method.upper()} {path} body", True, problems)
        ok = [c for c in op.get("responses", {}) if c.startswith("2")]
        schema = op["responses"][ok[0]].get("content", {}).get("application/json", {}).get("schema") if ok else None
        _compare(doc, response, schema, f"{method.upper()} {path} {ok[0] if ok else '2xx'}", False, problems)
    assert not problems, "\n".join(problems)
