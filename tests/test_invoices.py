"""Invoices through the real API and dataflow: the Quick Start, adjustments, bulk, audit."""

from __future__ import annotations

import hashlib

import pytest
from litestar.testing import TestClient
from sqlalchemy import insert

from abaxus.api.app import create_app
from abaxus.store.tables import jobs
from conftest import ADMIN_KEY, error_of
from helpers import event, wait_until
from quickstart_bodies import setup_quickstart_catalog

APRIL = {"customer_id": "cust_acme", "cutoff_date": "2026-04-30T23:59:59Z"}


@pytest.fixture
def acme(app_client):  # type: ignore[no-untyped-def]
    setup_quickstart_catalog(app_client)
    return app_client


def send_calls(client, total: int, per_event: int = 1000, prefix: str = "c", ts: str = "2026-04-10T00:00:00Z") -> None:  # type: ignore[no-untyped-def]
    """Send ``total`` API calls as events of ``per_event`` calls each, in 1,000-event backfills."""
    events = [event(f"{prefix}{i}", per_event, ts=ts) for i in range(total // per_event)]
    for start in range(0, len(events), 1000):
        r = client.post("/v1/events/backfill", json={"events": events[start:start + 1000]})
        assert r.status_code == 200, r.text


def test_quickstart_invoice_is_14900_with_its_tier_breakdown(acme):
    send_calls(acme, 1_200_000)
    r = acme.post("/v1/invoices", json=APRIL)
    assert r.status_code == 201, r.text
    inv = r.json()
    assert (inv["type"], inv["status"], inv["currency"], inv["total_amount"]) == ("standard", "issued", "usd", 14900)
    assert (inv["period_start"], inv["period_end"], inv["plan_version"]) == ("2026-04-01T00:00:00Z", "2026-04-30T23:59:59Z", 1)
    usage, fee = inv["line_items"]
    assert (usage["charge_id"], usage["quantity"], usage["amount"], usage["unit_price"]) == ("chg_1", 1200000, 10000, None)
    assert [(t["tier"], t["from"], t["up_to"], t["quantity"], t["amount"]) for t in usage["tier_breakdown"]] == [
        (1, 0, 100000, 100000, 0), (2, 100000, 1000000, 900000, 9000), (3, 1000000, None, 200000, 1000)]
    assert usage["event_count"] == 1200
    assert len(usage["events_checksum"]) == 16
    assert fee == {"charge_id": "chg_2", "description": "Growth base fee", "pricing_model": "flat_fee", "metric_key": None,
                   "quantity": 1, "unit_price": "49.00", "amount": 4900, "event_count": 0, "events_checksum": None}
    assert sum(li["amount"] for li in inv["line_items"]) == inv["total_amount"]
    assert acme.get(f"/v1/invoices/{inv['id']}").json() == inv


def test_a_line_lists_exactly_its_events(acme):
    send_calls(acme, 30_000)
    inv = acme.post("/v1/invoices", json=APRIL).json()
    keys, cursor = [], None
    while True:
        page = acme.get(f"/v1/invoices/{inv['id']}/line-items/chg_1/events",
                        params={"limit": 7, **({"cursor": cursor} if cursor else {})}).json()
        keys += [e["idempotency_key"] for e in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    line = inv["line_items"][0]
    assert len(keys) == len(set(keys)) == line["event_count"] == page["event_count"] == 30
    x = 0
    for k in keys:
        x ^= int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "big")
    assert f"{x:016x}" == line["events_checksum"] == page["events_checksum"]
    # Events arriving after the invoice never join its lines.
    send_calls(acme, 5_000, prefix="late")
    again = acme.get(f"/v1/invoices/{inv['id']}/line-items/chg_1/events", params={"limit": 1000}).json()
    assert len(again["data"]) == 30
    assert error_of(acme.get(f"/v1/invoices/{inv['id']}/line-items/nope/events")) == (404, "LINE_ITEM_NOT_FOUND", None)


def test_one_invoice_per_subscription_period(acme):
    first = acme.post("/v1/invoices", json=APRIL).json()
    r = acme.post("/v1/invoices", json=APRIL)
    assert error_of(r)[:2] == (409, "INVOICE_ALREADY_EXISTS")
    assert r.json()["error"]["existing_invoice_id"] == first["id"]
    archived = acme.post(f"/v1/invoices/{first['id']}/archive", json={"reason": "wrong cutoff"}).json()
    assert (archived["status"], archived["archive_reason"]) == ("archived", "wrong cutoff")
    assert archived["archived_at"]
    again = acme.post("/v1/invoices", json=APRIL)
    assert again.status_code == 201
    # Same data, same lines: reproducible to the byte.
    assert again.json()["line_items"] == first["line_items"]
    assert error_of(acme.post(f"/v1/invoices/{first['id']}/archive", json={"reason": "x"}))[:2] == (409, "INVOICE_ARCHIVED")


def test_adjustment_after_late_usage_bills_the_difference(acme):
    send_calls(acme, 1_200_000)
    inv = acme.post("/v1/invoices", json=APRIL).json()
    assert error_of(acme.post(f"/v1/invoices/{inv['id']}/adjustments", json={}))[:2] == (409, "NO_CHANGE")
    send_calls(acme, 5_000, prefix="late", ts="2026-04-29T00:00:00Z")
    r = acme.post(f"/v1/invoices/{inv['id']}/adjustments", json={})
    assert r.status_code == 201, r.text
    adj = r.json()
    assert (adj["type"], adj["adjusts_invoice_id"], adj["status"], adj["total_amount"]) == ("adjustment", inv["id"], "issued", 25)
    [line] = adj["line_items"]
    assert (line["charge_id"], line["quantity"], line["previous_quantity"], line["amount"]) == ("chg_1", 1205000, 1200000, 25)
    assert error_of(acme.post(f"/v1/invoices/{adj['id']}/adjustments", json={}))[:2] == (409, "INVOICE_IS_ADJUSTMENT")
    # A void after that is a credit.
    acme.post("/v1/events/void", json={"idempotency_keys": [f"c{i}" for i in range(100)], "reason": "refund"})
    credit = acme.post(f"/v1/invoices/{inv['id']}/adjustments", json={}).json()
    assert credit["total_amount"] == -500
    assert credit["line_items"][0]["previous_quantity"] == 1205000
    types = [e["type"] for e in acme.get(f"/v1/invoices/{inv['id']}/events").json()["data"]]
    assert types == ["invoice.issued", "invoice.adjusted", "invoice.adjusted"]


def test_audit_trail_records_issue_and_archive_with_the_actor(acme):
    key = acme.post("/v1/api-keys", json={"name": "finance", "scope": "admin"}).json()
    headers = {"Authorization": f"Bearer {key['secret']}"}
    inv = acme.post("/v1/invoices", json=APRIL, headers=headers).json()
    acme.post(f"/v1/invoices/{inv['id']}/archive", json={"reason": "duplicate"})
    entries = acme.get(f"/v1/invoices/{inv['id']}/events").json()["data"]
    assert (entries[0]["type"], entries[0]["actor"]) == ("invoice.issued", key["id"])
    assert entries[0]["data"] == {"total_amount": 4900, "line_count": 2, "calculation_id": None,
                                  "usage_as_of": inv["usage_as_of"]}
    assert entries[1]["type"] == "invoice.archived"
    assert entries[1]["data"] == {"reason": "duplicate"}
    assert entries[1]["actor"] != key["id"]
    assert entries[1]["actor"].startswith("key_")
    assert all(key["secret"] not in str(e) for e in entries)


def test_calculate_then_invoice_from_the_calculation(acme):
    send_calls(acme, 10_000)
    calc = acme.post("/v1/pricing/calculate", json=APRIL).json()
    assert calc["calculation_id"].startswith("calc_")
    assert calc["total_amount"] == 4900
    assert calc["expires_at"]
    send_calls(acme, 200_000, prefix="more")  # later usage does not change the calculation's lines
    inv = acme.post("/v1/invoices", json={**APRIL, "calculation_id": calc["calculation_id"]}).json()
    assert inv["line_items"] == calc["line_items"]
    assert inv["calculation_id"] == calc["calculation_id"]
    assert inv["usage_as_of"] == calc["usage_as_of"]
    mismatch = acme.post("/v1/invoices", json={**APRIL, "cutoff_date": "2026-04-15T00:00:00Z",
                                              "calculation_id": calc["calculation_id"]})
    assert error_of(mismatch)[:2] == (422, "CALCULATION_MISMATCH")
    assert error_of(acme.post("/v1/invoices", json={**APRIL, "calculation_id": "calc_nope"})) == (
        422, "CALCULATION_NOT_FOUND", "calculation_id")


def test_preview_prices_hypothetical_usage(acme):
    r = acme.post("/v1/pricing/preview", json={"plan_id": "plan_growth", "usage": {"api_calls": 1374923}})
    assert r.status_code == 200
    body = r.json()
    assert (body["total_amount"], [li["amount"] for li in body["line_items"]]) == (15775, [10875, 4900])
    assert all(li["event_count"] is None and li["events_checksum"] is None for li in body["line_items"])
    assert error_of(acme.post("/v1/pricing/preview", json={"plan_id": "plan_growth", "usage": {"seats": 1}})) == (
        422, "UNKNOWN_METRIC", "usage.seats")


def test_invoice_errors(acme):
    ghost = acme.post("/v1/invoices", json={**APRIL, "customer_id": "ghost"})
    assert error_of(ghost) == (422, "CUSTOMER_NOT_FOUND", "customer_id")
    assert error_of(acme.post("/v1/invoices", json={**APRIL, "cutoff_date": "2026-03-01T00:00:00Z"}))[:2] == (
        422, "NO_ACTIVE_SUBSCRIPTION")
    acme.post("/v1/subscriptions", json={"customer_id": "cust_acme", "plan_id": "plan_growth",
                                         "start_date": "2026-04-01T00:00:00Z"})
    assert error_of(acme.post("/v1/invoices", json=APRIL)) == (422, "SUBSCRIPTION_ID_REQUIRED", "subscription_id")
    assert error_of(acme.get("/v1/invoices/inv_nope")) == (404, "INVOICE_NOT_FOUND", None)
    assert error_of(acme.post("/v1/invoices", json={**APRIL, "cutoff_date": "soon"})) == (422, "INVALID_TIMESTAMP", "cutoff_date")


def test_bulk_run_counts_created_skipped_and_existing(acme):
    c = acme
    c.post("/v1/price-plans", json={"id": "plan_free", "name": "Free", "currency": "usd", "billing_period": "monthly",
                                    "charges": [{"metric_key": "api_calls", "pricing_model": "per_unit", "unit_price": "0.01"}]})
    for cid in ("cust_free", "cust_paid"):
        c.post("/v1/customers", json={"id": cid, "name": cid})
        c.post("/v1/subscriptions", json={"customer_id": cid, "plan_id": "plan_free", "start_date": "2026-04-01T00:00:00Z"})
    c.post("/v1/events/backfill", json={"events": [event("paid-1", 250, customer="cust_paid")]})
    c.post("/v1/invoices", json=APRIL)  # acme already invoiced
    job = c.post("/v1/invoices/bulk", json={"cutoff_date": "2026-04-30T23:59:59Z"})
    assert job.status_code == 202
    assert job.json()["status"] == "queued"
    done = wait_until(lambda: (j := c.get(f"/v1/jobs/{job.json()['job_id']}").json())["status"] == "succeeded" and j)
    assert (done["invoices_created"], done["invoices_skipped"], done["invoices_existing"], done["errors"]) == (1, 1, 1, [])
    paid = c.get("/v1/invoices", params={"customer_id": "cust_paid"}).json()["data"]
    assert [i["total_amount"] for i in paid] == [250]
    rerun = c.post("/v1/invoices/bulk", json={"cutoff_date": "2026-04-30T23:59:59Z"}).json()
    again = wait_until(lambda: (j := c.get(f"/v1/jobs/{rerun['job_id']}").json())["status"] == "succeeded" and j)
    assert (again["invoices_created"], again["invoices_existing"]) == (0, 2)
    assert error_of(c.get("/v1/jobs/job_nope")) == (404, "JOB_NOT_FOUND", None)


def test_an_invoice_right_after_the_202s_counts_every_acknowledged_event(acme):
    """No waiting between ingest and invoice: what was acknowledged before the request is billed."""
    events = [event(f"rt{i}", 1000) for i in range(1200)]
    for start in (0, 1000):
        assert acme.post("/v1/events/batch", json={"events": events[start:start + 1000]}).status_code == 202
    r = acme.post("/v1/invoices", json=APRIL)
    assert r.status_code == 201, r.text
    assert (r.json()["total_amount"], r.json()["line_items"][0]["event_count"]) == (14900, 1200)
    exact = acme.post("/v1/usage/compute", json={"customer_id": "cust_acme", "period_start": "2026-04-01T00:00:00Z",
                                                 "period_end": "2026-04-30T23:59:59Z"}).json()
    assert exact["data"][0]["quantity"] == 1_200_000


def test_a_bulk_job_left_running_by_a_dead_process_is_resumed_at_start(embedded_settings):
    with TestClient(create_app(embedded_settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        setup_quickstart_catalog(c)
        c.post("/v1/events/backfill", json={"events": [event(f"j{i}", 1000) for i in range(1000)]})
        engine = c.app.state.services.engine
        # What a process killed mid-run leaves behind: a job marked running that nothing runs.
        with engine.begin() as conn:
            conn.execute(insert(jobs).values(id="job_interrupted", status="running", cutoff_date=1777593599000,
                                             invoices_created=0, invoices_skipped=0, invoices_existing=0, errors="[]",
                                             created_at=1777593600000, started_at=1777593600000, actor="key_x"))
    with TestClient(create_app(embedded_settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        done = wait_until(lambda: (j := c.get("/v1/jobs/job_interrupted").json())["status"] == "succeeded" and j)
        assert (done["invoices_created"], done["errors"]) == (1, [])
        inv = c.get("/v1/invoices").json()["data"][0]
        assert inv["total_amount"] == 4900 + 9000  # 1,000,000 calls
        assert c.get(f"/v1/invoices/{inv['id']}/events").json()["data"][0]["actor"] == "key_x"
