"""Two real ``abaxus serve`` processes on one PostgreSQL: what one replica guards, the other respects.

Each replica has its own process, connection pool and embedded usage store; only the
metadata database (and localstripe) is shared, as with API replicas behind a load balancer.
Requests go over HTTP to both at once, so nothing in-process (a lock, a cache) can be what
keeps them apart: write idempotency (§16), the charge lock (§13) and bulk job claims (§12)
must hold through the database alone. Plans are flat fees, so no usage is needed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import create_engine, select

from abaxus.store.tables import jobs
from conftest import ADMIN_KEY, _reset_pg
from helpers import wait_until
from server_process import ServerProcess

pytestmark = pytest.mark.postgres

FLAT = {"id": "plan_flat", "name": "Flat", "currency": "usd", "billing_period": "monthly",
        "effective_from": "2026-01-01T00:00:00Z",
        "charges": [{"metric_key": None, "pricing_model": "flat_fee", "amount": 49, "description": "Base fee"}]}


@pytest.fixture(scope="module")
def replicas(pg_database: str, localstripe_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[httpx.Client]]:
    """Two API processes sharing the test database and localstripe; a client for each."""
    _reset_pg(pg_database)
    root: Path = tmp_path_factory.mktemp("replicas")
    env = {"ABAXUS_DATABASE_URL": pg_database, "STRIPE_SECRET_KEY": "sk_test_local", "STRIPE_API_BASE": localstripe_url}
    servers = [ServerProcess(root / f"api{i}", ADMIN_KEY, extra_env=env) for i in (1, 2)]
    clients: list[httpx.Client] = []
    try:
        for server in servers:  # one after the other: the first migrates and creates the bootstrap key
            server.start()
            clients.append(server.client())
        assert clients[0].post("/v1/price-plans", json=FLAT).status_code == 201
        yield clients
    finally:
        for c in clients:
            c.close()
        for server in servers:
            server.stop()


def at_once(calls: list[tuple[httpx.Client, str, dict[str, Any], dict[str, str]]]) -> list[httpx.Response]:
    """POST every call from its own thread, all released together."""
    start = threading.Barrier(len(calls))
    out: list[httpx.Response | None] = [None] * len(calls)

    def post(i: int, client: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        start.wait()
        out[i] = client.post(path, json=body, headers=headers)

    threads = [threading.Thread(target=post, args=(i, *call)) for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in out)
    return [r for r in out if r is not None]


def test_one_idempotency_key_sent_to_both_replicas_at_once_makes_one_plan_version(replicas: list[httpx.Client]) -> None:
    """Eight POSTs of a new plan version, four per replica, one key: one version, every answer that one."""
    body = {**FLAT, "id": "plan_idem"}
    answers = at_once([(c, "/v1/price-plans", body, {"Idempotency-Key": "plan-idem-1"}) for c in replicas * 4])
    created = [r for r in answers if r.status_code == 201]
    assert created, [r.text for r in answers]
    assert {r.json()["version"] for r in created} == {1}
    assert {r.json()["error"]["code"] for r in answers if r.status_code != 201} <= {"IDEMPOTENCY_KEY_IN_USE"}
    assert sum(r.headers.get("idempotent-replayed") != "true" for r in created) == 1  # one ran; the rest replayed
    for c in replicas:  # and a retry now, on either replica, is the stored answer
        again = c.post("/v1/price-plans", json=body, headers={"Idempotency-Key": "plan-idem-1"})
        assert (again.status_code, again.headers.get("idempotent-replayed")) == (201, "true")
        assert again.json() == created[0].json()
    assert replicas[1].get("/v1/price-plans/plan_idem").json()["version"] == 1
    assert replicas[0].get("/v1/price-plans/plan_idem/versions/2").status_code == 404


def _stripe_customer(url: str) -> tuple[str, str]:
    sc = stripe.StripeClient("sk_test_local", base_addresses={"api": url}, max_network_retries=0)
    cus = sc.v1.customers.create(params={"email": "billing@replicas.test"})
    pm = sc.v1.payment_methods.create(params={"type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                                                        "exp_year": 2030, "cvc": "123"}})
    sc.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    return cus.id, pm.id


def test_charges_sent_to_both_replicas_at_once_make_one_payment_intent(replicas: list[httpx.Client],
                                                                        localstripe_url: str) -> None:
    """Ten charges of one invoice, five per replica: one 200, one succeeded PaymentIntent in Stripe."""
    a, b = replicas
    cus, pm = _stripe_customer(localstripe_url)
    assert a.post("/v1/customers", json={"id": "cust_charge", "name": "Charge", "payment_provider": "stripe",
                                         "payment_provider_customer_id": cus, "payment_method_id": pm}).status_code == 201
    assert a.post("/v1/subscriptions", json={"customer_id": "cust_charge", "plan_id": "plan_flat",
                                             "start_date": "2026-04-01T00:00:00Z"}).status_code == 201
    inv = a.post("/v1/invoices", json={"customer_id": "cust_charge", "cutoff_date": "2026-04-30T23:59:59Z"})
    assert inv.status_code == 201, inv.text
    invoice_id = inv.json()["id"]
    answers = at_once([(c, f"/v1/invoices/{invoice_id}/charge", {}, {}) for c in replicas * 5])
    assert sorted(r.status_code for r in answers) == [200] + [409] * 9, [r.text for r in answers]
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} <= {"CHARGE_IN_PROGRESS",
                                                                                     "INVOICE_ALREADY_PAID"}
    sc = stripe.StripeClient("sk_test_local", base_addresses={"api": localstripe_url}, max_network_retries=0)
    intents = [pi.to_dict() for pi in sc.v1.payment_intents.list(params={"limit": 100}).data]
    mine = [pi for pi in intents if (pi.get("metadata") or {}).get("abaxus_invoice_id") == invoice_id]
    assert [pi["status"] for pi in mine] == ["succeeded"]
    assert b.get(f"/v1/invoices/{invoice_id}").json()["status"] == "paid"


def test_bulk_jobs_sent_to_both_replicas_each_run_once(replicas: list[httpx.Client], pg_database: str) -> None:
    """Three months' jobs, enqueued alternately at each replica: each succeeds once, readable at either."""
    a, b = replicas
    for i in range(3):
        assert a.post("/v1/customers", json={"id": f"cust_bulk_{i}", "name": f"Bulk {i}"}).status_code == 201
        assert b.post("/v1/subscriptions", json={"customer_id": f"cust_bulk_{i}", "plan_id": "plan_flat",
                                                 "start_date": "2026-01-01T00:00:00Z"}).status_code == 201
    cutoffs = ["2026-01-31T23:59:59Z", "2026-02-28T23:59:59Z", "2026-03-31T23:59:59Z"]
    queued = [(replicas[i % 2].post("/v1/invoices/bulk", json={"cutoff_date": c})) for i, c in enumerate(cutoffs)]
    assert [(r.status_code, r.json()["status"]) for r in queued] == [(202, "queued")] * 3
    ids = [r.json()["job_id"] for r in queued]
    done = wait_until(lambda: all((j := b.get(f"/v1/jobs/{i}").json())["status"] == "succeeded" for i in ids) and j,
                      timeout=60)
    assert done
    for i, job_id in enumerate(ids):
        job = replicas[(i + 1) % 2].get(f"/v1/jobs/{job_id}").json()
        assert (job["invoices_created"], job["invoices_existing"], job["errors"]) == (3, 0, [])
    engine = create_engine(pg_database)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(jobs.c.attempts, jobs.c.claimed_by, jobs.c.lease_until)
                                .where(jobs.c.id.in_(ids))).all()
    finally:
        engine.dispose()
    assert [(r.attempts, r.lease_until) for r in rows] == [(1, None)] * 3
    assert all(r.claimed_by for r in rows)
