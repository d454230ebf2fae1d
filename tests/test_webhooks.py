"""Outbound webhooks: signed, at least once through the transactional outbox, retried, never blocking.

A real HTTP receiver on loopback (``Receiver``) answers as each test scripts it; the app runs
over ASGI on SQLite and on PostgreSQL, and the crash test runs a real ``abaxus serve`` that
is SIGKILLed between the change and the delivery.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import stripe
from litestar.testing import TestClient

from abaxus.api.app import create_app
from abaxus.billing.webhooks import MAX_DELAY_S, retry_delay, sign, verify
from abaxus.settings import Settings
from conftest import ADMIN_KEY, _reset_pg, error_of
from helpers import wait_until
from quickstart_bodies import CUSTOMER, JSON, METRIC, PLAN_JSON, SUBSCRIPTION
from server_process import ServerProcess
from test_payments import stripe_customer

APRIL = {"customer_id": "cust_acme", "cutoff_date": "2026-04-30T23:59:59Z"}


class Receiver:
    """A loopback HTTP server that records every request and answers from a script.

    ``answers`` are used first, one per request (a status code, or ``("redirect", url)``);
    then ``default``. While ``hold`` is clear, requests wait (up to 30 s) before answering.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: deque[Any] = deque()
        self.default: Any = 200
        self.hold = threading.Event()
        self.hold.set()
        self.in_flight = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the stdlib names it
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.in_flight += 1
                    answer = receiver.answers.popleft() if receiver.answers else receiver.default
                try:
                    receiver.hold.wait(30)
                    if isinstance(answer, tuple):
                        self.send_response(302)
                        self.send_header("Location", answer[1])
                        status = 302
                    else:
                        self.send_response(answer)
                        status = answer
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                finally:
                    with receiver._lock:
                        receiver.in_flight -= 1
                        receiver.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                                  "body": body, "status": status, "path": self.path})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        """The decoded bodies received, in order, optionally of one event type."""
        with self._lock:
            bodies = [json.loads(r["body"]) for r in self.requests]
        return [b for b in bodies if type_ is None or b["type"] == type_]

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _app(tmp_path: Path, database_url: str | None, **changes: Any) -> TestClient[Any]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, bootstrap_key=ADMIN_KEY,
                        log_format="console", epoch_seconds=1.0, webhook_retry_base_seconds=0.05).with_(**changes)
    client = TestClient(create_app(settings))
    client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
    return client


@pytest.fixture
def app(tmp_path: Path, database_url: str | None) -> Iterator[TestClient[Any]]:
    """The real app (dataflow, chDB) on SQLite or PostgreSQL, retrying webhooks after ≤ 50 ms · 2^n."""
    with _app(tmp_path, database_url) as c:
        yield c


def catalog(c: Any, customer: dict[str, Any] = CUSTOMER) -> None:
    if c.get("/v1/metrics/api_calls").status_code == 404:
        assert c.post("/v1/metrics", json=METRIC).status_code == 201
        assert c.post("/v1/price-plans", content=PLAN_JSON, headers=JSON).status_code == 201
    assert c.post("/v1/customers", json=customer).status_code == 201
    r = c.post("/v1/subscriptions", json={**SUBSCRIPTION, "customer_id": customer["id"]})
    assert r.status_code == 201, r.text


def endpoint(c: Any, url: str, events: list[str]) -> dict[str, Any]:
    r = c.post("/v1/webhook-endpoints", json={"url": url, "events": events})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def deliveries(c: Any, endpoint_id: str) -> list[dict[str, Any]]:
    r = c.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries")
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def assert_signed(request: dict[str, Any], secret: str) -> None:
    """The signature verifies with our check and with Stripe's own verifier (same scheme)."""
    header = request["headers"]["abaxus-signature"]
    assert verify(secret, request["body"], header)
    assert stripe.WebhookSignature.verify_header(request["body"].decode(), header, secret, tolerance=300)
    assert not verify(secret, request["body"] + b" ", header)
    assert not verify("whsec_" + "x" * 40, request["body"], header)


# ---- signatures and backoff, as pure functions -------------------------------------------
def test_a_signature_is_stripes_scheme_and_expires():
    body = b'{"id":"whev_1","type":"invoice.issued"}'
    secret = "whsec_" + "k" * 40
    header = sign(secret, body, 1_800_000_000)
    t, v1 = header.split(",")
    assert t == "t=1800000000"
    assert len(v1) == len("v1=") + 64
    assert verify(secret, body, header, now=1_800_000_000 + 300)
    assert not verify(secret, body, header, now=1_800_000_000 + 301)
    assert stripe.WebhookSignature.verify_header(body.decode(), sign(secret, body, int(time.time())), secret, 300)
    assert not verify(secret, body, "t=abc,v1=00")
    assert not verify(secret, body, "")


def test_retry_delay_is_full_jitter_under_a_doubling_capped_bound():
    assert [retry_delay(n, 30.0, rand=lambda: 1.0) for n in (1, 2, 3, 4)] == [30.0, 60.0, 120.0, 240.0]
    assert retry_delay(3, 30.0, rand=lambda: 0.5) == 60.0
    assert retry_delay(40, 30.0, rand=lambda: 1.0) == MAX_DELAY_S == 6 * 3600
    assert retry_delay(10_000, 30.0, rand=lambda: 1.0) == MAX_DELAY_S
    assert retry_delay(1, 30.0, rand=lambda: 0.0) == 0.0


# ---- endpoints -----------------------------------------------------------------------------
def test_endpoints_show_the_secret_once_and_refuse_what_they_cannot_deliver_to(app: TestClient[Any]):
    created = endpoint(app, "https://billing.example.com/hooks?src=abaxus", ["invoice.issued", "invoice.paid"])
    assert created["id"].startswith("whep_")
    assert len(created["id"]) == 31
    assert created["secret"].startswith("whsec_")
    assert len(created["secret"]) == 46
    assert created["status"] == "enabled"
    assert created["events"] == ["invoice.issued", "invoice.paid"]
    got = app.get(f"/v1/webhook-endpoints/{created['id']}").json()
    assert "secret" not in got
    assert got == {k: v for k, v in created.items() if k != "secret"}
    assert [e["id"] for e in app.get("/v1/webhook-endpoints").json()["data"]] == [created["id"]]

    bad = {"url": "ftp://example.com/x", "events": ["invoice.issued"]}
    assert error_of(app.post("/v1/webhook-endpoints", json=bad)) == (422, "INVALID_FIELD", "url")
    for url in ("example.com/hooks", "https://exa mple.com", "https://example.com/#frag", "http://:80/x"):
        assert error_of(app.post("/v1/webhook-endpoints", json={**bad, "url": url})) == (422, "INVALID_FIELD", "url")
    assert error_of(app.post("/v1/webhook-endpoints", json={"url": "https://e.com", "events": ["invoice.issued", "nope"]})) \
        == (422, "INVALID_FIELD", "events.1")
    assert error_of(app.post("/v1/webhook-endpoints", json={"url": "https://e.com", "events": []})) \
        == (422, "INVALID_FIELD", "events")
    assert error_of(app.post("/v1/webhook-endpoints", json={"url": "https://e.com", "events": ["*", "invoice.paid"]})) \
        == (422, "INVALID_FIELD", "events")
    assert error_of(app.post("/v1/webhook-endpoints", json={"url": "https://e.com", "events": ["*"], "secret": "x"})) \
        == (422, "UNKNOWN_FIELD", "secret")

    patched = app.patch(f"/v1/webhook-endpoints/{created['id']}", json={"events": ["*"], "description": "all of it"})
    assert patched.status_code == 200
    assert patched.json()["events"] == ["*"]
    assert "secret" not in patched.json()
    gone = app.delete(f"/v1/webhook-endpoints/{created['id']}")
    assert gone.status_code == 200
    assert gone.json()["status"] == "disabled"
    assert gone.json()["disabled_at"]
    assert app.delete(f"/v1/webhook-endpoints/{created['id']}").json() == gone.json()
    assert error_of(app.patch(f"/v1/webhook-endpoints/{created['id']}", json={"events": ["invoice.paid"]})) \
        == (409, "WEBHOOK_ENDPOINT_DISABLED", None)
    assert error_of(app.get("/v1/webhook-endpoints/whep_nope")) == (404, "WEBHOOK_ENDPOINT_NOT_FOUND", None)
    assert error_of(app.get("/v1/webhook-endpoints/whep_nope/deliveries")) == (404, "WEBHOOK_ENDPOINT_NOT_FOUND", None)
    assert error_of(app.get(f"/v1/webhook-endpoints/{created['id']}/deliveries/whdl_nope")) \
        == (404, "WEBHOOK_DELIVERY_NOT_FOUND", None)


# ---- delivery ------------------------------------------------------------------------------
def test_two_failed_deliveries_then_the_third_lands_once_with_one_event_id_signed(app: TestClient[Any], receiver: Receiver):
    hook = endpoint(app, receiver.url, ["invoice.issued"])
    receiver.answers.extend([500, 503])
    catalog(app)
    invoice = app.post("/v1/invoices", json=APRIL).json()
    # The same period again: refused, its transaction (and any event in it) rolled back.
    assert error_of(app.post("/v1/invoices", json=APRIL))[:2] == (409, "INVOICE_ALREADY_EXISTS")

    wait_until(lambda: deliveries(app, hook["id"])[0]["status"] == "succeeded", timeout=30)
    assert [r["status"] for r in receiver.requests] == [500, 503, 200]
    bodies = [r["body"] for r in receiver.requests]
    assert bodies[0] == bodies[1] == bodies[2]  # byte for byte: the outbox stores the body once
    event = json.loads(bodies[0])
    assert event["id"].startswith("whev_")
    assert event["type"] == "invoice.issued"
    assert {r["headers"]["abaxus-event-id"] for r in receiver.requests} == {event["id"]}
    assert [r["headers"]["abaxus-delivery-attempt"] for r in receiver.requests] == ["1", "2", "3"]
    assert event["data"] == {
        "invoice_id": invoice["id"], "type": "standard", "adjusts_invoice_id": None, "customer_id": "cust_acme",
        "subscription_id": invoice["subscription_id"], "status": "issued", "currency": "usd", "total_amount": 4900,
        "period_start": "2026-04-01T00:00:00Z", "period_end": "2026-04-30T23:59:59Z", "created_at": invoice["created_at"],
        "paid_at": None}
    for request in receiver.requests:
        assert_signed(request, hook["secret"])
        assert request["path"] == "/hooks"
        assert request["headers"]["content-type"] == "application/json"

    [delivery] = deliveries(app, hook["id"])
    assert delivery["event_id"] == event["id"]
    assert delivery["event_type"] == "invoice.issued"
    assert delivery["attempt_count"] == 3
    assert delivery["next_attempt_at"] is None
    assert delivery["last_status_code"] == 200
    assert [(a["attempt"], a["status_code"]) for a in delivery["attempts"]] == [(1, 500), (2, 503), (3, 200)]
    assert delivery["attempts"][0]["error"] == "the endpoint answered HTTP 500"
    assert delivery["attempts"][2]["error"] is None
    assert delivery["delivered_at"] is not None

    # A manual redelivery: one more attempt, the same event id and body, freshly signed.
    again = app.post(f"/v1/webhook-endpoints/{hook['id']}/deliveries/{delivery['id']}/redeliver", json={})
    assert again.status_code == 202
    assert again.json()["status"] == "pending"
    wait_until(lambda: app.get(f"/v1/webhook-endpoints/{hook['id']}/deliveries/{delivery['id']}").json()["status"]
               == "succeeded", timeout=30)
    assert len(receiver.requests) == 4
    assert receiver.requests[3]["body"] == bodies[0]
    assert receiver.requests[3]["headers"]["abaxus-delivery-attempt"] == "4"
    assert_signed(receiver.requests[3], hook["secret"])
    assert len(deliveries(app, hook["id"])) == 1


def test_a_redirecting_receiver_is_never_followed_and_is_given_up_after_the_window(
        tmp_path: Path, database_url: str | None, receiver: Receiver):
    other = Receiver()
    try:
        receiver.default = ("redirect", other.url)
        # 3 s: the dispatcher polls the outbox each second, so a shorter window may end before a second attempt.
        with _app(tmp_path, database_url, webhook_retry_window_seconds=3.0) as app:
            hook = endpoint(app, receiver.url, ["*"])
            catalog(app)
            assert app.post("/v1/invoices", json=APRIL).status_code == 201
            wait_until(lambda: deliveries(app, hook["id"])[0]["status"] == "failed", timeout=30)
            [delivery] = deliveries(app, hook["id"])
            assert delivery["next_attempt_at"] is None
            assert delivery["last_status_code"] == 302
            assert delivery["attempt_count"] == len(delivery["attempts"]) >= 2
            assert {a["status_code"] for a in delivery["attempts"]} == {302}
            assert delivery["last_error"] == "the endpoint answered HTTP 302 (redirects are not followed)"
            assert len(receiver.requests) == delivery["attempt_count"]
            assert other.requests == []
    finally:
        other.close()


def test_a_hanging_receiver_never_holds_up_an_api_answer(app: TestClient[Any], receiver: Receiver):
    hook = endpoint(app, receiver.url, ["invoice.issued"])
    receiver.hold.clear()
    catalog(app)
    assert app.post("/v1/invoices", json=APRIL).status_code == 201
    wait_until(lambda: receiver.in_flight == 1, timeout=30)
    # While that delivery hangs, a second customer is set up and invoiced: every answer comes back.
    catalog(app, {**CUSTOMER, "id": "cust_globex"})
    assert app.post("/v1/invoices", json={**APRIL, "customer_id": "cust_globex"}).status_code == 201
    assert receiver.in_flight >= 1
    assert receiver.requests == []
    receiver.hold.set()
    wait_until(lambda: {d["status"] for d in deliveries(app, hook["id"])} == {"succeeded"}
               and len(deliveries(app, hook["id"])) == 2, timeout=30)
    # (Held past the 10 s timeout on a slow machine, the first is sent again: same event id.)
    assert len({e["id"] for e in receiver.events()}) == 2
    assert {e["data"]["customer_id"] for e in receiver.events()} == {"cust_acme", "cust_globex"}


def test_a_bulk_run_announces_each_invoice_it_issues_and_disabling_stops_pending_ones(
        app: TestClient[Any], receiver: Receiver):
    hook = endpoint(app, receiver.url, ["invoice.issued"])
    receiver.default = 500
    idle = endpoint(app, receiver.url, ["invoice.paid"])  # subscribed elsewhere: gets nothing
    for cid in ("cust_a", "cust_b", "cust_c"):
        catalog(app, {**CUSTOMER, "id": cid})
    job = app.post("/v1/invoices/bulk", json={"cutoff_date": "2026-04-30T23:59:59Z"}).json()
    wait_until(lambda: app.get(f"/v1/jobs/{job['job_id']}").json()["status"] == "succeeded", timeout=60)
    wait_until(lambda: len({e["data"]["customer_id"] for e in receiver.events()}) == 3, timeout=30)
    found = deliveries(app, hook["id"])
    assert len(found) == 3
    assert len({d["event_id"] for d in found}) == 3
    assert deliveries(app, idle["id"]) == []
    assert app.delete(f"/v1/webhook-endpoints/{hook['id']}").status_code == 200
    after = deliveries(app, hook["id"])
    assert {d["status"] for d in after} == {"failed"}
    assert {d["next_attempt_at"] for d in after} == {None}
    assert {d["last_error"] for d in after} == {"the endpoint was disabled"}
    assert error_of(app.post(f"/v1/webhook-endpoints/{hook['id']}/deliveries/{after[0]['id']}/redeliver", json={})) \
        == (409, "WEBHOOK_ENDPOINT_DISABLED", None)


@pytest.fixture
def stripe_app(tmp_path: Path, database_url: str | None, localstripe_url: str) -> Iterator[TestClient[Any]]:
    with _app(tmp_path, database_url, stripe_secret_key="sk_test_local", stripe_api_base=localstripe_url) as c:
        yield c


def test_paid_payment_failed_and_adjusted_invoices_are_announced(stripe_app: TestClient[Any], localstripe_url: str,
                                                                 receiver: Receiver):
    app = stripe_app
    hook = endpoint(app, receiver.url, ["invoice.paid", "invoice.payment_failed", "invoice.adjusted"])
    declining, declining_pm = stripe_customer(localstripe_url, card="4000000000000341")
    catalog(app, {**CUSTOMER, "payment_provider_customer_id": declining, "payment_method_id": declining_pm})
    invoice = app.post("/v1/invoices", json=APRIL).json()
    assert app.post(f"/v1/invoices/{invoice['id']}/charge", json={}).status_code == 402
    good, good_pm = stripe_customer(localstripe_url)
    assert app.patch("/v1/customers/cust_acme", json={"payment_provider_customer_id": good,
                                                      "payment_method_id": good_pm}).status_code == 200
    paid = app.post(f"/v1/invoices/{invoice['id']}/charge", json={})
    assert paid.status_code == 200, paid.text
    r = app.post("/v1/events/backfill", json={"events": [{"customer_id": "cust_acme", "metric_key": "api_calls",
                                                          "value": 200_000, "timestamp": "2026-04-10T00:00:00Z",
                                                          "idempotency_key": "late-1"}]})
    assert r.status_code == 200, r.text
    adjustment = app.post(f"/v1/invoices/{invoice['id']}/adjustments", json={})
    assert adjustment.status_code == 201, adjustment.text

    wait_until(lambda: len(receiver.events()) == 3, timeout=30)
    # Deliveries run in parallel: receivers get no order guarantee, only each event at least once.
    by_type = {e["type"]: e for e in receiver.events()}
    failed, paid_event, adjusted = (by_type[t] for t in ("invoice.payment_failed", "invoice.paid", "invoice.adjusted"))
    assert failed["type"] == "invoice.payment_failed"
    assert failed["data"]["invoice_id"] == invoice["id"]
    assert failed["data"]["status"] == "issued"
    assert failed["data"]["attempt"] == 1
    assert failed["data"]["decline_code"] == "card_declined"
    assert paid_event["type"] == "invoice.paid"
    assert paid_event["data"]["status"] == "paid"
    assert paid_event["data"]["payment_intent_id"] == paid.json()["payment_intent_id"]
    assert paid_event["data"]["source"] == "charge"
    assert paid_event["data"]["paid_at"] is not None
    assert adjusted["type"] == "invoice.adjusted"
    assert adjusted["data"]["invoice_id"] == invoice["id"]
    assert adjusted["data"]["adjustment_invoice_id"] == adjustment.json()["id"]
    # 200,000 late calls: tier 2 bills 100,000 × 0.0001 = 10.00 usd.
    assert adjusted["data"]["adjustment_total_amount"] == adjustment.json()["total_amount"] == 1_000
    assert len({e["id"] for e in receiver.events()}) == 3
    for request in receiver.requests:
        assert_signed(request, hook["secret"])


# ---- a crash between the change and its delivery -------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server_env(request: pytest.FixtureRequest) -> dict[str, str]:
    env = {"ABAXUS_WEBHOOK_RETRY_BASE": "0.2", "ABAXUS_EPOCH_SECONDS": "1"}
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_database")
        _reset_pg(url)
        env["ABAXUS_DATABASE_URL"] = url
    return env


def test_a_server_killed_before_the_delivery_lands_delivers_it_after_restart(
        tmp_path: Path, server_env: dict[str, str], receiver: Receiver):
    receiver.default = 500  # nothing lands until the server has been killed
    server = ServerProcess(tmp_path / "data", ADMIN_KEY, extra_env=server_env)
    server.start()
    try:
        with server.client() as c:
            hook = endpoint(c, receiver.url, ["invoice.issued"])
            catalog(c)
            invoice = c.post("/v1/invoices", json=APRIL)
            assert invoice.status_code == 201, invoice.text
            # Killed once an attempt is recorded (a failed one is rescheduled within a second): one
            # killed mid-attempt is only retried when its 30 s lease (LEASE_MS) expires, a wait not spent here.
            wait_until(lambda: deliveries(c, hook["id"])[0]["attempt_count"] >= 1, timeout=30)
        server.kill()
        tried = len(receiver.requests)
        assert {r["status"] for r in receiver.requests} == {500}
        receiver.default = 200
        server.start()
        wait_until(lambda: any(r["status"] == 200 for r in receiver.requests), timeout=90)
        with server.client() as c:
            wait_until(lambda: deliveries(c, hook["id"])[0]["status"] == "succeeded", timeout=30)
            [delivery] = deliveries(c, hook["id"])
        statuses = [r["status"] for r in receiver.requests]
        assert statuses.count(200) == 1
        assert statuses[-1] == 200
        assert len(statuses) > tried
        event = json.loads(receiver.requests[0]["body"])
        assert {json.loads(r["body"])["id"] for r in receiver.requests} == {event["id"]} == {delivery["event_id"]}
        assert {r["body"] for r in receiver.requests} == {receiver.requests[0]["body"]}
        assert event["data"]["invoice_id"] == invoice.json()["id"]
        for request in receiver.requests:
            assert_signed(request, hook["secret"])
        # Attempts recorded before the kill survive it; one in flight at the kill may be unrecorded.
        assert delivery["attempts"][-1]["status_code"] == 200
        assert delivery["attempt_count"] == len(delivery["attempts"])
        assert len(statuses) - 1 <= delivery["attempt_count"] <= len(statuses)
        assert receiver.requests[-1]["headers"]["abaxus-delivery-attempt"] == str(delivery["attempt_count"])
    finally:
        server.stop()
