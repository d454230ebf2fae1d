"""Subscription amendments (§8) over the real app, dataflow and chDB: validation and conflicts,
status, pauses cut out of billing, plan changes split a period, proration credits.

The app runs on a ``ManualClock``: a test moves it past a pause, a cancellation or a period's
end instead of sleeping, and makes April's history through the API by being in April. Events
are sent once the clock has reached them (never more than a few seconds ahead), so the intake
takes them whichever clock it checks their timestamps against.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from abaxus.clock import ManualClock
from abaxus.settings import Settings
from abaxus.timefmt import to_ms
from conftest import error_of
from helpers import event
from quickstart_bodies import JSON, PLAN_JSON, setup_quickstart_catalog

T0 = datetime(2026, 4, 10, 9, 0, tzinfo=UTC)  # when each test starts: mid-April of the Quick Start's year


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def at(dt: datetime) -> int:
    return to_ms(dt)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(at(T0))


@pytest.fixture
def embedded_settings(embedded_settings: Settings, clock: ManualClock) -> Settings:
    """The embedded app's settings on the test's clock."""
    return dataclasses.replace(embedded_settings, clock=clock)


def amend(client, sub_id: str, **body) -> dict:  # type: ignore[no-untyped-def, type-arg]
    r = client.post(f"/v1/subscriptions/{sub_id}/amendments", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def live(app_client):  # type: ignore[no-untyped-def]
    """The Quick Start catalog with a subscription that started 40 days ago (so 'now' is mid-period)."""
    c = app_client
    setup_quickstart_catalog(c)
    start = T0 - timedelta(days=40)
    r = c.post("/v1/subscriptions", json={"customer_id": "cust_acme", "plan_id": "plan_growth", "start_date": iso(start)})
    assert r.status_code == 201
    return c, r.json()


def test_amendment_validation_and_conflicts(live):
    c, sub = live
    path = f"/v1/subscriptions/{sub['id']}/amendments"
    assert error_of(c.post(path, json={"type": "resume"}))[:2] == (409, "AMENDMENT_CONFLICT")
    assert error_of(c.post(path, json={"type": "pause", "effective": "2020-01-01T00:00:00Z"})) == (
        422, "INVALID_TIMESTAMP", "effective")
    assert error_of(c.post(path, json={"type": "pause", "plan_id": "plan_growth"})) == (422, "INVALID_FIELD", "plan_id")
    assert error_of(c.post(path, json={"type": "plan_change"})) == (422, "MISSING_FIELD", "plan_id")
    assert error_of(c.post(path, json={"type": "end_date_change"})) == (422, "MISSING_FIELD", "end_date")
    assert error_of(c.post(path, json={"type": "explode"}))[:2] == (422, "INVALID_FIELD")
    assert error_of(c.post("/v1/subscriptions/sub_nope/amendments", json={"type": "cancel"}))[:2] == (
        404, "SUBSCRIPTION_NOT_FOUND")
    yearly = {"id": "plan_yearly", "name": "Yearly", "currency": "usd", "billing_period": "annual",
              "charges": [{"metric_key": None, "pricing_model": "flat_fee", "amount": 100}]}
    assert c.post("/v1/price-plans", json=yearly).status_code == 201
    assert error_of(c.post(path, json={"type": "plan_change", "plan_id": "plan_yearly"})) == (
        422, "PLAN_CHANGE_INCOMPATIBLE", "plan_id")

    paused = amend(c, sub["id"], type="pause")
    assert (paused["status"], paused["effective"], paused["type"]) == ("applied", "immediate", "pause")
    assert paused["id"].startswith("amd_")
    assert paused["applied_at"] is not None
    assert c.get(f"/v1/subscriptions/{sub['id']}").json()["status"] == "paused"
    assert [s["id"] for s in c.get("/v1/subscriptions", params={"status": "paused"}).json()["data"]] == [sub["id"]]
    assert error_of(c.post(path, json={"type": "pause"}))[:2] == (409, "AMENDMENT_CONFLICT")
    assert amend(c, sub["id"], type="resume")["status"] == "applied"
    assert c.get(f"/v1/subscriptions/{sub['id']}").json()["status"] == "active"

    cancel = amend(c, sub["id"], type="cancel", effective="end_of_period")
    assert cancel["status"] == "scheduled"
    assert cancel["applied_at"] is None
    assert c.get(f"/v1/subscriptions/{sub['id']}").json()["status"] == "active"  # not yet
    listed = c.get(path).json()
    assert [a["type"] for a in listed["data"]] == ["cancel", "resume", "pause"]
    assert listed["next_cursor"] is None
    assert error_of(c.get("/v1/subscriptions/sub_nope/amendments"))[:2] == (404, "SUBSCRIPTION_NOT_FOUND")
    later = iso(datetime.fromisoformat(cancel["effective_at"].replace("Z", "+00:00")) + timedelta(days=1))
    assert error_of(c.post(path, json={"type": "pause", "effective": later}))[:2] == (409, "AMENDMENT_CONFLICT")


def test_a_plan_change_moves_the_subscription_and_its_entitlements(live):
    c, sub = live
    body = PLAN_JSON.replace(b'"charges"',
                             b'"entitlements": [{"feature_key": "sso", "type": "boolean", "value": true}], "charges"')
    assert c.post("/v1/price-plans", content=body, headers=JSON).json()["version"] == 2
    check = {"customer_id": "cust_acme", "feature_key": "sso"}
    assert c.get("/v1/entitlements/check", params=check).json()["granted"] is False
    change = amend(c, sub["id"], type="plan_change", plan_id="plan_growth")
    assert (change["plan_id"], change["plan_version"], change["prorate"]) == ("plan_growth", 2, False)
    got = c.get(f"/v1/subscriptions/{sub['id']}").json()
    assert (got["plan_version"], got["status"]) == (2, "active")
    assert c.get("/v1/entitlements/check", params=check).json()["granted"] is True
    amend(c, sub["id"], type="pause")
    assert c.get("/v1/entitlements/check", params=check).json()["granted"] is False  # a pause suspends entitlements


def test_a_pause_cuts_its_interval_out_of_the_invoice(live, clock):
    c, sub = live
    t0 = T0
    resume = t0 + timedelta(seconds=3)
    amend(c, sub["id"], type="pause", resume_date=iso(resume))
    events = [event("before", 500_000, iso(t0 - timedelta(hours=1)), customer="cust_acme"),
              event("during", 700_000, iso(t0 + timedelta(seconds=1)), customer="cust_acme"),
              event("after", 100_000, iso(resume + timedelta(seconds=1)), customer="cust_acme")]
    # The Quick Start subscription (from Apr 2026) is billable too, so the invoice names this one.
    assert c.post("/v1/events/backfill", json={"events": events}).status_code == 200
    clock.set(at(resume + timedelta(seconds=2)))
    assert c.get(f"/v1/subscriptions/{sub['id']}").json()["status"] == "active"  # resumed
    r = c.post("/v1/invoices", json={"customer_id": "cust_acme", "subscription_id": sub["id"],
                                     "cutoff_date": iso(resume + timedelta(seconds=2))})
    assert r.status_code == 201, r.text
    usage = r.json()["line_items"][0]
    assert (usage["quantity"], usage["event_count"]) == (600_000, 2)  # the paused second's 700,000 is never billed
    assert usage["amount"] == 5_000  # 100,000 free, 500,000 × 0.0001
    events_behind = c.get(f"/v1/invoices/{r.json()['id']}/line-items/{usage['charge_id']}/events").json()
    assert sorted(e["idempotency_key"] for e in events_behind["data"]) == ["after", "before"]


def test_a_prorated_plan_change_splits_the_period_and_credits_the_old_fee(app_client, clock):
    """The spec's example: 49.00 usd fee, period [Apr 1, May 1), change on Apr 21 → credit −1,633."""
    c = app_client
    sub = setup_quickstart_catalog(c)
    early = [event(f"early-{i}", 1000, "2026-04-03T09:30:00Z") for i in range(1000)]
    assert c.post("/v1/events/backfill", json={"events": early}).status_code == 200
    v2 = PLAN_JSON.replace(b'"amount": 49.00', b'"amount": 99.00')
    assert c.post("/v1/price-plans", content=v2, headers=JSON).json()["version"] == 2
    clock.set(at(datetime(2026, 4, 21, tzinfo=UTC)))
    change = amend(c, sub["id"], type="plan_change", plan_id="plan_growth", prorate=True)
    assert (change["effective_at"], change["plan_version"], change["status"]) == ("2026-04-21T00:00:00Z", 2, "applied")
    clock.set(at(datetime(2026, 4, 25, 9, 30, tzinfo=UTC)))
    late = [event(f"late-{i}", 1000, "2026-04-25T09:30:00Z") for i in range(200)]
    assert c.post("/v1/events/backfill", json={"events": late}).status_code == 200
    clock.set(at(datetime(2026, 5, 1, 0, 5, tzinfo=UTC)))
    r = c.post("/v1/invoices", json={"customer_id": "cust_acme", "cutoff_date": "2026-04-30T23:59:59Z"})
    assert r.status_code == 201, r.text
    inv = r.json()
    lines = {li["charge_id"]: li for li in inv["line_items"]}
    credit_id = f"proration:{change['id']}:chg_2"
    assert list(lines) == ["plan_growth:v1:chg_1", "plan_growth:v1:chg_2", "chg_1", "chg_2", credit_id]
    assert (lines["plan_growth:v1:chg_1"]["quantity"], lines["plan_growth:v1:chg_1"]["amount"]) == (1_000_000, 9_000)
    assert (lines["chg_1"]["quantity"], lines["chg_1"]["amount"]) == (200_000, 1_000)
    assert (lines["plan_growth:v1:chg_2"]["amount"], lines["chg_2"]["amount"]) == (4_900, 9_900)
    credit = lines[credit_id]
    assert (credit["pricing_model"], credit["quantity"], credit["amount"], credit["event_count"]) == (
        "proration_credit", 10, -1_633, 0)
    assert inv["total_amount"] == 9_000 + 4_900 + 1_000 + 9_900 - 1_633
    assert (inv["plan_id"], inv["plan_version"]) == ("plan_growth", 2)
    behind = c.get(f"/v1/invoices/{inv['id']}/line-items/plan_growth:v1:chg_1/events", params={"limit": 1000}).json()
    assert behind["event_count"] == 1000
    assert all(e["idempotency_key"].startswith("early-") for e in behind["data"])
    # The credit is carried once: archive and re-invoice moves it to the new invoice, not to both.
    assert c.post(f"/v1/invoices/{inv['id']}/archive", json={"reason": "re-issue"}).status_code == 200
    again = c.post("/v1/invoices", json={"customer_id": "cust_acme", "cutoff_date": "2026-04-30T23:59:59Z"}).json()
    assert again["total_amount"] == inv["total_amount"]
    clock.set(at(datetime(2026, 6, 1, 0, 5, tzinfo=UTC)))
    may = c.post("/v1/invoices", json={"customer_id": "cust_acme", "cutoff_date": "2026-05-31T23:59:59Z"}).json()
    assert [li["charge_id"] for li in may["line_items"]] == ["chg_1", "chg_2"]


def test_billing_stops_at_a_cancellation_and_an_end_date_can_move(live, clock):
    c, sub = live
    t0 = T0
    path = f"/v1/subscriptions/{sub['id']}/amendments"
    assert error_of(c.post(path, json={"type": "end_date_change", "end_date": iso(t0 - timedelta(days=1))})) == (
        422, "INVALID_DATE_RANGE", "end_date")
    moved = amend(c, sub["id"], type="end_date_change", end_date=iso(t0 + timedelta(days=400)))
    assert c.get(f"/v1/subscriptions/{sub['id']}").json()["end_date"] == moved["end_date"]
    cancel = amend(c, sub["id"], type="cancel")
    stop = datetime.fromisoformat(cancel["effective_at"].replace("Z", "+00:00"))
    assert stop == T0  # immediate: the clock's instant
    events = [event("before-cancel", 300_000, iso(stop - timedelta(minutes=5))),
              event("after-cancel", 900_000, iso(stop + timedelta(seconds=1)))]
    assert c.post("/v1/events/backfill", json={"events": events}).status_code == 200
    clock.advance(2000)
    assert c.get(f"/v1/subscriptions/{sub['id']}").json()["status"] == "cancelled"
    r = c.post("/v1/invoices", json={"customer_id": "cust_acme", "subscription_id": sub["id"],
                                     "cutoff_date": iso(stop + timedelta(seconds=2))})
    assert r.status_code == 201, r.text
    usage, fee = r.json()["line_items"]
    assert (usage["quantity"], usage["event_count"], usage["amount"]) == (300_000, 1, 2_000)  # 200,000 × 0.0001
    assert fee["amount"] == 4_900  # flat fees are never prorated
    assert error_of(c.post(path, json={"type": "resume"}))[:2] == (409, "AMENDMENT_CONFLICT")  # nothing after a cancel
