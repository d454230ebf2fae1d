"""Commercial terms through the real app, dataflow and chDB, on SQLite and on PostgreSQL.

Hand-computed invoices for each term alone and all together (docs/commercial-terms.md,
"Worked example"), the credit ledger and its give-back on archive, calculations and bulk runs
that show the same lines, adjustments that recompute the minimum and discounts exactly, and
invoices issued at once from threads that never draw one credit twice.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from abaxus.clock import Clock, ManualClock, SystemClock
from abaxus.settings import Settings
from abaxus.store.tables import credit_grants, credit_ledger, outbox_events
from abaxus.timefmt import to_ms
from conftest import ADMIN_KEY, _reset_pg, error_of
from helpers import event, wait_until

APRIL = {"customer_id": "cust_acme", "cutoff_date": "2026-04-30T23:59:59Z"}
MAY = {"customer_id": "cust_acme", "cutoff_date": "2026-05-31T23:59:59Z"}
TIERS = [{"up_to": 100000, "unit_price": 0}, {"up_to": 1000000, "unit_price": "0.0001"},
         {"up_to": None, "unit_price": "0.00005"}]


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> Clock:
    """The app's clock: the wall clock, or a ``ManualClock`` from the instant a test parametrizes it with."""
    start: datetime | None = getattr(request, "param", None)
    return ManualClock(to_ms(start)) if start is not None else SystemClock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def embedded_settings(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Settings:
    """Every scenario here once with the metadata store on SQLite, once on PostgreSQL."""
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("pg_database")
        _reset_pg(url)
    return Settings(data_dir=tmp_path / "data", database_url=url, bootstrap_key=ADMIN_KEY, log_format="console",
                    epoch_seconds=1.0, clock=clock)


def ok(response: Any, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()  # type: ignore[no-any-return]


def plan(client: Any, plan_id: str = "plan_commit", minimum: str | None = "250.00", fee: str = "49.00") -> dict[str, Any]:
    body: dict[str, Any] = {"id": plan_id, "name": "Commit", "currency": "usd", "billing_period": "monthly", "charges": [
        {"metric_key": "api_calls", "pricing_model": "tiered", "tiers": TIERS},
        {"metric_key": None, "pricing_model": "flat_fee", "amount": fee, "description": "Platform fee"}]}
    if minimum is not None:
        body["minimum"] = {"amount": minimum}
    return ok(client.post("/v1/price-plans", json=body))


@pytest.fixture
def c(app_client):  # type: ignore[no-untyped-def]
    ok(app_client.post("/v1/metrics", json={"key": "api_calls", "name": "API Calls", "aggregation": "sum"}))
    return app_client


def customer(client: Any, customer_id: str = "cust_acme") -> None:
    ok(client.post("/v1/customers", json={"id": customer_id, "name": customer_id}))


def subscribe(client: Any, plan_id: str = "plan_commit", customer_id: str = "cust_acme",
              start: str = "2026-04-01T00:00:00Z", end: str | None = None) -> dict[str, Any]:
    body = {"customer_id": customer_id, "plan_id": plan_id, "start_date": start, **({"end_date": end} if end else {})}
    return ok(client.post("/v1/subscriptions", json=body))


def calls(client: Any, total: int, prefix: str, ts: str = "2026-04-10T00:00:00Z", customer_id: str = "cust_acme") -> None:
    """``total`` API calls as events of 1,000 each, stored before this returns."""
    events = [event(f"{prefix}{i}", 1000, ts=ts, customer=customer_id) for i in range(total // 1000)]
    for start in range(0, len(events), 1000):
        ok(client.post("/v1/events/backfill", json={"events": events[start:start + 1000]}), 200)


def grant(client: Any, amount: int, customer_id: str = "cust_acme", **extra: Any) -> dict[str, Any]:
    """A usd grant, effective from 2026-01-01 unless told (a grant counts on invoices whose period_end it covers)."""
    body = {"amount": amount, "currency": "usd", "effective_at": "2026-01-01T00:00:00Z", **extra}
    return ok(client.post(f"/v1/customers/{customer_id}/credit-grants", json=body))


def lines(inv: dict[str, Any]) -> list[tuple[str, str, Any, int]]:
    return [(li["charge_id"], li["pricing_model"], li["quantity"], li["amount"]) for li in inv["line_items"]]


def trail(client: Any, invoice_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e["type"], e["data"]) for e in client.get(f"/v1/invoices/{invoice_id}/events").json()["data"]]


def ledger(client: Any, grant_id: str, customer_id: str = "cust_acme") -> list[tuple[str, int, str | None]]:
    page = ok(client.get(f"/v1/customers/{customer_id}/credit-grants/{grant_id}/ledger"), 200)
    return [(e["type"], e["amount"], e["invoice_id"]) for e in page["data"]]


# ---- 1. minimum commitment ------------------------------------------------------------------
def test_a_minimum_trues_up_a_partial_last_period_by_whole_days(c):
    created = plan(c)
    assert created["minimum"] == {"amount": "250.00"}
    assert "minimum" not in plan(c, "plan_plain", minimum=None)  # no minimum: left out, as §19 shows plans
    assert c.get("/v1/price-plans/plan_commit/versions/1").json()["minimum"] == {"amount": "250.00"}
    customer(c)
    subscribe(c, end="2026-04-15T00:00:00Z")  # billable Apr 1 – Apr 15: 14 of April's 30 days
    calls(c, 250_000, "a")
    inv = ok(c.post("/v1/invoices", json=APRIL))
    # 25,000 × 14 / 30 = 11,666.67 → 11,667; usage 0 + 1,500 and the 4,900 fee leave 5,267 to true up.
    assert lines(inv) == [("chg_1", "tiered", 250000, 1500), ("chg_2", "flat_fee", 1, 4900),
                          ("minimum", "minimum_true_up", 14, 5267)]
    assert inv["line_items"][2] == {
        "charge_id": "minimum", "description": "Minimum commitment true-up: minimum 116.67 usd for 14 of 30 days, "
        "billed 64.00 usd", "pricing_model": "minimum_true_up", "metric_key": None, "quantity": 14, "unit_price": None,
        "amount": 5267, "event_count": 0, "events_checksum": None}
    assert (inv["total_amount"], inv["status"]) == (11667, "issued")
    assert ok(c.get(f"/v1/invoices/{inv['id']}/line-items/minimum/events"), 200)["data"] == []
    # A whole period commits the whole minimum, and usage above it leaves nothing to true up.
    preview = ok(c.post("/v1/pricing/preview", json={"plan_id": "plan_commit", "usage": {"api_calls": 250000}}), 200)
    assert [li["amount"] for li in preview["line_items"]] == [1500, 4900, 18600]
    assert preview["total_amount"] == 25000
    preview = ok(c.post("/v1/pricing/preview", json={"plan_id": "plan_commit", "usage": {"api_calls": 5000000}}), 200)
    assert [li["charge_id"] for li in preview["line_items"]] == ["chg_1", "chg_2"]
    assert error_of(c.post("/v1/price-plans", json={**{k: created[k] for k in ("id", "name", "currency", "billing_period")},
                                                     "charges": [{"pricing_model": "flat_fee", "amount": 1}],
                                                     "minimum": {"amount": -1}})) == (
        422, "VALUE_OUT_OF_RANGE", "minimum.amount")
    assert error_of(c.post("/v1/price-plans", json={"id": "p", "name": "P", "currency": "usd", "billing_period": "monthly",
                                                     "charges": [{"pricing_model": "flat_fee", "amount": 1}],
                                                     "minimum": {"amount": 1, "per": "month"}})) == (
        422, "UNKNOWN_FIELD", "minimum.per")


@pytest.mark.parametrize("clock", [datetime(2026, 4, 10, tzinfo=UTC)], indirect=True)
def test_a_plan_change_commits_each_versions_minimum_for_its_own_days(c, clock):
    """v1 (minimum 300.00) for Apr 1–21, v2 (minimum 600.00) from Apr 21: 20 + 10 of 30 days."""
    plan(c, minimum="300.00")
    customer(c)
    sub = subscribe(c)
    plan(c, minimum="600.00", fee="0")
    clock.set(to_ms(datetime(2026, 4, 21, tzinfo=UTC)))  # the change is made on Apr 21, through the API
    change = ok(c.post(f"/v1/subscriptions/{sub['id']}/amendments", json={"type": "plan_change", "plan_id": "plan_commit"}))
    assert (change["effective_at"], change["plan_version"]) == ("2026-04-21T00:00:00Z", 2)
    clock.set(to_ms(datetime(2026, 5, 1, 0, 5, tzinfo=UTC)))
    inv = ok(c.post("/v1/invoices", json=APRIL))
    # (30,000 × 20 + 60,000 × 10) / 30 = 40,000; the v1 fee 4,900 and the v2 fee 0 billed.
    assert lines(inv) == [("plan_commit:v1:chg_1", "tiered", 0, 0), ("plan_commit:v1:chg_2", "flat_fee", 1, 4900),
                          ("chg_1", "tiered", 0, 0), ("chg_2", "flat_fee", 1, 0), ("minimum", "minimum_true_up", 30, 35100)]


# ---- 3. discounts ---------------------------------------------------------------------------
def test_a_percent_discount_on_one_charge_applies_once_from_the_next_invoice(c):
    plan(c, minimum=None)
    customer(c)
    sub = subscribe(c)
    calls(c, 250_000, "a")
    calls(c, 250_000, "m", ts="2026-05-10T00:00:00Z")
    coupon = ok(c.post("/v1/coupons", json={"id": "launch", "percent_off": "12.5", "duration": "once",
                                            "applies_to_charge_ids": ["chg_1"]}))
    assert coupon == {"id": "launch", "percent_off": 12.5, "amount_off": None, "currency": None, "duration": "once",
                      "duration_in_periods": None, "applies_to_charge_ids": ["chg_1"], "created_at": coupon["created_at"]}
    attached = ok(c.post(f"/v1/subscriptions/{sub['id']}/discounts", json={"coupon_id": "launch"}))
    assert attached["id"].startswith("dsc_")
    assert (attached["status"], attached["periods_remaining"]) == ("active", 1)
    assert error_of(c.post(f"/v1/subscriptions/{sub['id']}/discounts", json={"coupon_id": "launch"})) == (
        409, "DISCOUNT_ALREADY_ATTACHED", "coupon_id")

    april = ok(c.post("/v1/invoices", json=APRIL))
    # 12.5 % of chg_1's 1,500 = 187.5 → 188 (half away from zero); chg_2 untouched.
    assert lines(april) == [("chg_1", "tiered", 250000, 1500), ("chg_2", "flat_fee", 1, 4900),
                            ("discount:launch", "discount", 1, -188)]
    assert april["line_items"][2]["description"] == "Discount launch: 12.5% off chg_1"
    assert april["total_amount"] == 6212
    used = ok(c.get(f"/v1/subscriptions/{sub['id']}/discounts"), 200)["data"]
    assert [(d["status"], d["invoice_ids"], d["periods_remaining"]) for d in used] == [("used_up", [april["id"]], 0)]
    # Archiving the invoice frees the use: the April invoice made anew carries the discount again.
    ok(c.post(f"/v1/invoices/{april['id']}/archive", json={"reason": "redo"}), 200)
    again = ok(c.post("/v1/invoices", json=APRIL))
    assert lines(again) == lines(april)
    may = ok(c.post("/v1/invoices", json=MAY))
    assert [li["charge_id"] for li in may["line_items"]] == ["chg_1", "chg_2"]
    assert may["total_amount"] == 6400
    # Used up, it may be attached again.
    assert ok(c.post(f"/v1/subscriptions/{sub['id']}/discounts", json={"coupon_id": "launch"}))["status"] == "active"


def test_fixed_repeating_and_forever_discounts_stack_without_going_below_zero(c):
    plan(c, minimum=None)
    customer(c)
    sub = subscribe(c)
    calls(c, 250_000, "a")
    ok(c.post("/v1/coupons", json={"id": "ten_off", "amount_off": 1000, "currency": "USD", "duration": "repeating",
                                   "duration_in_periods": 2}))
    ok(c.post("/v1/coupons", json={"id": "half", "percent_off": 50, "duration": "forever"}))
    ok(c.post("/v1/coupons", json={"id": "fee_waiver", "amount_off": 99999, "currency": "usd", "duration": "forever",
                                   "applies_to_charge_ids": ["chg_2"]}))
    for coupon_id in ("ten_off", "half", "fee_waiver"):
        ok(c.post(f"/v1/subscriptions/{sub['id']}/discounts", json={"coupon_id": coupon_id}))
    inv = ok(c.post("/v1/invoices", json=APRIL))
    # 1,000 off 6,400 (taken from chg_1 first: 1,500 → 500, chg_2 4,900); half of 5,400 = 2,700 (chg_1 → 0,
    # chg_2 → 2,700); the fee waiver takes what is left of chg_2: 2,700, not 99,999.
    assert lines(inv)[2:] == [("discount:ten_off", "discount", 1, -1000), ("discount:half", "discount", 1, -2700),
                              ("discount:fee_waiver", "discount", 1, -2700)]
    assert inv["total_amount"] == 0
    assert inv["status"] == "paid"
    assert trail(c, inv["id"])[-1] == ("invoice.paid", {"payment_intent_id": None, "amount": 0, "source": "zero_total"})
    listed = {d["coupon_id"]: d for d in ok(c.get(f"/v1/subscriptions/{sub['id']}/discounts"), 200)["data"]}
    assert (listed["ten_off"]["periods_remaining"], listed["half"]["periods_remaining"]) == (1, None)


def test_coupon_validation(c):
    plan(c, minimum=None)
    customer(c)
    sub = subscribe(c)
    base = {"id": "x", "duration": "once"}
    assert error_of(c.post("/v1/coupons", json=base)) == (422, "VALIDATION_ERROR", "amount_off")
    assert error_of(c.post("/v1/coupons", json={**base, "percent_off": 5, "amount_off": 5}))[:2] == (422, "VALIDATION_ERROR")
    assert error_of(c.post("/v1/coupons", json={**base, "percent_off": 0})) == (422, "VALUE_OUT_OF_RANGE", "percent_off")
    assert error_of(c.post("/v1/coupons", json={**base, "percent_off": "100.5"})) == (422, "VALUE_OUT_OF_RANGE", "percent_off")
    assert error_of(c.post("/v1/coupons", json={**base, "percent_off": "1.23456"})) == (422, "INVALID_DECIMAL", "percent_off")
    assert error_of(c.post("/v1/coupons", json={**base, "percent_off": 5, "currency": "usd"})) == (
        422, "INVALID_FIELD", "currency")
    assert error_of(c.post("/v1/coupons", json={**base, "amount_off": 5})) == (422, "MISSING_FIELD", "currency")
    assert error_of(c.post("/v1/coupons", json={**base, "amount_off": 0, "currency": "usd"})) == (
        422, "VALUE_OUT_OF_RANGE", "amount_off")
    assert error_of(c.post("/v1/coupons", json={**base, "amount_off": 5, "currency": "xyz"})) == (
        422, "INVALID_CURRENCY", "currency")
    assert error_of(c.post("/v1/coupons", json={**base, "percent_off": 5, "duration": "repeating"})) == (
        422, "MISSING_FIELD", "duration_in_periods")
    assert error_of(c.post("/v1/coupons", json={**base, "percent_off": 5, "duration_in_periods": 2})) == (
        422, "INVALID_FIELD", "duration_in_periods")
    assert error_of(c.post("/v1/coupons", json={**base, "percent_off": 5, "applies_to_charge_ids": ["a", "a"]})) == (
        422, "VALIDATION_ERROR", "applies_to_charge_ids.1")
    assert error_of(c.post("/v1/coupons", json={**base, "percent_off": 5, "applies_to_charge_ids": ["a b"]})) == (
        422, "INVALID_ID", "applies_to_charge_ids.0")
    ok(c.post("/v1/coupons", json={**base, "amount_off": 5, "currency": "eur"}))
    assert error_of(c.post("/v1/coupons", json={**base, "percent_off": 5})) == (409, "COUPON_ALREADY_EXISTS", "id")
    assert ok(c.get("/v1/coupons/x"), 200)["amount_off"] == 5
    assert [k["id"] for k in ok(c.get("/v1/coupons"), 200)["data"]] == ["x"]
    assert error_of(c.get("/v1/coupons/nope")) == (404, "COUPON_NOT_FOUND", None)
    assert error_of(c.post(f"/v1/subscriptions/{sub['id']}/discounts", json={"coupon_id": "nope"})) == (
        422, "COUPON_NOT_FOUND", "coupon_id")
    assert error_of(c.post(f"/v1/subscriptions/{sub['id']}/discounts", json={"coupon_id": "x"})) == (
        422, "CURRENCY_MISMATCH", "coupon_id")
    assert error_of(c.post("/v1/subscriptions/sub_nope/discounts", json={"coupon_id": "x"}))[:2] == (
        404, "SUBSCRIPTION_NOT_FOUND")


# ---- 2. prepaid credits ---------------------------------------------------------------------
def test_credits_draw_by_priority_then_expiry_then_age_and_the_total_stops_at_zero(c):
    plan(c, minimum=None)
    customer(c)
    subscribe(c)
    calls(c, 1_200_000, "a")  # the Quick Start's April: 10,000 + 4,900 = 14,900
    low = grant(c, 100000, priority=1, description="Annual prepayment", effective_at="2026-01-01T00:00:00Z")
    never = grant(c, 3000, effective_at="2026-01-01T00:00:00Z")
    soon = grant(c, 2000, effective_at="2026-04-01T00:00:00Z", expires_at="2026-06-01T00:00:00Z")
    grant(c, 50000, effective_at="2026-05-01T00:00:00Z")  # not yet effective at April's period_end
    grant(c, 50000, effective_at="2026-01-01T00:00:00Z", expires_at="2026-04-30T23:59:59Z")  # expired by then
    assert low["id"].startswith("cgr_")
    assert (low["remaining"], low["status"], low["priority"]) == (100000, "active", 1)
    assert (never["priority"], never["expires_at"], soon["expires_at"]) == (0, None, "2026-06-01T00:00:00Z")

    calc = ok(c.post("/v1/pricing/calculate", json=APRIL), 200)  # shows the drawdown, draws nothing
    inv = ok(c.post("/v1/invoices", json=APRIL))
    assert lines(inv) == lines(calc) == [
        ("chg_1", "tiered", 1200000, 10000), ("chg_2", "flat_fee", 1, 4900), (f"credit:{soon['id']}", "credit", 1, -2000),
        (f"credit:{never['id']}", "credit", 1, -3000), (f"credit:{low['id']}", "credit", 1, -9900)]
    assert inv["line_items"][4]["description"] == "Prepaid credit: Annual prepayment"
    assert (inv["total_amount"], inv["status"], inv["payment_intent_id"]) == (0, "paid", None)
    assert inv["paid_at"]
    assert trail(c, inv["id"]) == [
        ("invoice.issued", {"total_amount": 0, "line_count": 5, "calculation_id": None, "usage_as_of": inv["usage_as_of"]}),
        ("invoice.paid", {"payment_intent_id": None, "amount": 0, "source": "zero_total"})]
    assert error_of(c.post(f"/v1/invoices/{inv['id']}/charge", json={}))[:2] == (409, "INVOICE_ALREADY_PAID")
    balance = ok(c.get("/v1/customers/cust_acme/credit-balance"), 200)
    assert (balance["currency"], balance["available"]) == ("usd", 90100 + 50000)
    assert [(g["id"], g["remaining"]) for g in balance["grants"]][-1] == (low["id"], 90100)
    assert ledger(c, low["id"]) == [("grant", 100000, None), ("drawdown", -9900, inv["id"])]
    assert ok(c.get(f"/v1/customers/cust_acme/credit-grants/{soon['id']}"), 200)["status"] == "depleted"


def test_an_archived_invoice_gives_its_drawdown_back_and_a_void_takes_the_rest(c):
    plan(c, minimum=None, fee="80.00")
    customer(c)
    subscribe(c)
    ok(c.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/hook", "events": ["credit_grant.depleted"]}))
    g = grant(c, 5000)
    april = ok(c.post("/v1/invoices", json=APRIL))
    assert lines(april) == [("chg_1", "tiered", 0, 0), ("chg_2", "flat_fee", 1, 8000),
                            (f"credit:{g['id']}", "credit", 1, -5000)]
    assert (april["total_amount"], april["status"]) == (3000, "issued")
    grant_now = ok(c.get(f"/v1/customers/cust_acme/credit-grants/{g['id']}"), 200)
    assert (grant_now["remaining"], grant_now["status"]) == (0, "depleted")
    assert ok(c.get("/v1/customers/cust_acme/credit-balance"), 200) == {"currency": "usd", "available": 0, "grants": []}

    ok(c.post(f"/v1/invoices/{april['id']}/archive", json={"reason": "wrong plan"}), 200)
    assert ok(c.get(f"/v1/customers/cust_acme/credit-grants/{g['id']}"), 200)["remaining"] == 5000
    assert ledger(c, g["id"]) == [("grant", 5000, None), ("drawdown", -5000, april["id"]), ("restore", 5000, april["id"])]
    again = ok(c.post("/v1/invoices", json=APRIL))  # the April invoice made anew draws the credit again
    assert lines(again) == lines(april)
    engine = c.app.state.services.engine
    with engine.connect() as conn:
        depleted = [r.payload for r in conn.execute(select(outbox_events).where(
            outbox_events.c.type == "credit_grant.depleted").order_by(outbox_events.c.id))]
    assert len(depleted) == 2
    assert all(g["id"] in p for p in depleted)
    assert april["id"] in depleted[0]
    assert again["id"] in depleted[1]

    # A void takes what is left, for good; what an invoice archived after it gives back is voided too.
    spare = grant(c, 7000)
    voided = ok(c.post(f"/v1/customers/cust_acme/credit-grants/{spare['id']}/void", json={"reason": "goodwill ended"}), 200)
    assert (voided["status"], voided["remaining"], voided["void_reason"]) == ("voided", 0, "goodwill ended")
    assert ledger(c, spare["id"]) == [("grant", 7000, None), ("void", -7000, None)]
    assert error_of(c.post(f"/v1/customers/cust_acme/credit-grants/{spare['id']}/void", json={})) == (
        409, "CREDIT_GRANT_VOIDED", None)
    ok(c.post(f"/v1/customers/cust_acme/credit-grants/{g['id']}/void"), 200)  # nothing left: a void of 0
    ok(c.post(f"/v1/invoices/{again['id']}/archive", json={"reason": "redo"}), 200)
    assert ledger(c, g["id"])[3:] == [("drawdown", -5000, again["id"]), ("void", 0, None), ("restore", 5000, again["id"]),
                                      ("void", -5000, again["id"])]
    third = ok(c.post("/v1/invoices", json=APRIL))  # voided grants give nothing
    assert lines(third) == lines(april)[:2]
    assert third["total_amount"] == 8000
    with engine.connect() as conn:
        for grant_id in (g["id"], spare["id"]):
            total = conn.execute(select(func.sum(credit_ledger.c.amount)).where(credit_ledger.c.grant_id == grant_id)).scalar()
            remaining = conn.execute(select(credit_grants.c.remaining).where(credit_grants.c.id == grant_id)).scalar()
            assert total == remaining == 0


def test_grant_validation_and_listing(c):
    customer(c)
    ok(c.post("/v1/customers", json={"id": "cust_eur", "name": "E", "currency": "eur"}))
    path = "/v1/customers/cust_acme/credit-grants"
    assert error_of(c.post(path, json={"amount": 0, "currency": "usd"})) == (422, "VALUE_OUT_OF_RANGE", "amount")
    assert error_of(c.post(path, json={"amount": "5", "currency": "usd"}))[:2] == (422, "INVALID_FIELD")
    assert error_of(c.post(path, json={"amount": 5, "currency": "usd", "priority": -1})) == (
        422, "VALUE_OUT_OF_RANGE", "priority")
    assert error_of(c.post(path, json={"amount": 5, "currency": "usd", "effective_at": "2026-05-01T00:00:00Z",
                                       "expires_at": "2026-05-01T00:00:00Z"})) == (422, "INVALID_DATE_RANGE", "expires_at")
    assert error_of(c.post(path, json={"amount": 5, "currency": "usd", "expires_at": "soon"})) == (
        422, "INVALID_TIMESTAMP", "expires_at")
    assert error_of(c.post(path, json={"amount": 5, "currency": "usd", "note": "x"})) == (422, "UNKNOWN_FIELD", "note")
    assert error_of(c.post("/v1/customers/cust_eur/credit-grants", json={"amount": 5, "currency": "usd"})) == (
        422, "CURRENCY_MISMATCH", "currency")
    assert error_of(c.post("/v1/customers/ghost/credit-grants", json={"amount": 5, "currency": "usd"}))[:2] == (
        404, "CUSTOMER_NOT_FOUND")
    a = grant(c, 500)
    b = ok(c.post(path, json={"amount": 700, "currency": "eur", "effective_at": "2099-01-01T00:00:00Z"}))
    assert b["status"] == "scheduled"
    page = ok(c.get(path, params={"limit": 1}), 200)
    assert [g["id"] for g in page["data"]] == [b["id"]]
    assert page["next_cursor"]
    assert [g["id"] for g in ok(c.get(path, params={"cursor": page["next_cursor"]}), 200)["data"]] == [a["id"]]
    assert error_of(c.get("/v1/customers/cust_acme/credit-balance"))[:2] == (422, "VALIDATION_ERROR")  # usd and eur
    assert ok(c.get("/v1/customers/cust_acme/credit-balance", params={"currency": "EUR"}), 200) == {
        "currency": "eur", "available": 0, "grants": []}  # not effective yet
    assert ok(c.get("/v1/customers/cust_eur/credit-balance"), 200) == {"currency": "eur", "available": 0, "grants": []}
    assert error_of(c.get(f"{path}/cgr_nope"))[:2] == (404, "CREDIT_GRANT_NOT_FOUND")
    assert error_of(c.get(f"/v1/customers/cust_eur/credit-grants/{a['id']}"))[:2] == (404, "CREDIT_GRANT_NOT_FOUND")
    assert error_of(c.get("/v1/customers/ghost/credit-grants"))[:2] == (404, "CUSTOMER_NOT_FOUND")


# ---- all together ---------------------------------------------------------------------------
def test_all_terms_together_on_one_invoice(c):
    """docs/commercial-terms.md, "Worked example", line for line."""
    plan(c)
    customer(c)
    sub = subscribe(c, end="2026-04-15T00:00:00Z")
    calls(c, 250_000, "a")
    ok(c.post("/v1/coupons", json={"id": "launch", "percent_off": 12.5, "duration": "once", "applies_to_charge_ids": ["chg_1"]}))
    ok(c.post(f"/v1/subscriptions/{sub['id']}/discounts", json={"coupon_id": "launch"}))
    prepaid = grant(c, 10000, priority=1, effective_at="2026-03-01T00:00:00Z", description="Prepaid balance")
    promo = grant(c, 5000, effective_at="2026-04-01T00:00:00Z", expires_at="2026-06-01T00:00:00Z", description="Launch promo")
    inv = ok(c.post("/v1/invoices", json=APRIL))
    assert lines(inv) == [
        ("chg_1", "tiered", 250000, 1500), ("chg_2", "flat_fee", 1, 4900), ("minimum", "minimum_true_up", 14, 5267),
        ("discount:launch", "discount", 1, -188), (f"credit:{promo['id']}", "credit", 1, -5000),
        (f"credit:{prepaid['id']}", "credit", 1, -6479)]
    assert sum(li["amount"] for li in inv["line_items"]) == inv["total_amount"] == 0
    assert (inv["status"], inv["payment_intent_id"]) == ("paid", None)
    assert trail(c, inv["id"])[-1] == ("invoice.paid", {"payment_intent_id": None, "amount": 0, "source": "zero_total"})
    balance = ok(c.get("/v1/customers/cust_acme/credit-balance"), 200)
    assert (balance["available"], [(g["id"], g["remaining"]) for g in balance["grants"]]) == (3521, [(prepaid["id"], 3521)])


# ---- calculations, bulk runs, adjustments ---------------------------------------------------
def test_a_calculation_shows_the_drawdown_and_issuing_from_it_draws_what_is_left_then(c):
    plan(c, minimum=None)
    customer(c)
    subscribe(c, end="2026-05-01T00:00:00Z")
    subscribe(c, plan_id="plan_commit")
    subs = [s["id"] for s in ok(c.get("/v1/subscriptions", params={"customer_id": "cust_acme"}), 200)["data"]]
    g = grant(c, 6000)
    first = ok(c.post("/v1/pricing/calculate", json={**APRIL, "subscription_id": subs[0]}), 200)
    second = ok(c.post("/v1/pricing/calculate", json={**APRIL, "subscription_id": subs[1]}), 200)
    assert lines(first)[2:] == lines(second)[2:] == [(f"credit:{g['id']}", "credit", 1, -4900)]  # both see 6,000
    assert ok(c.get("/v1/customers/cust_acme/credit-balance"), 200)["available"] == 6000  # nothing drawn
    a = ok(c.post("/v1/invoices", json={**APRIL, "subscription_id": subs[0], "calculation_id": first["calculation_id"]}))
    b = ok(c.post("/v1/invoices", json={**APRIL, "subscription_id": subs[1], "calculation_id": second["calculation_id"]}))
    assert lines(a)[2:] == [(f"credit:{g['id']}", "credit", 1, -4900)]
    assert lines(b)[2:] == [(f"credit:{g['id']}", "credit", 1, -1100)]
    assert b["total_amount"] == 3800
    assert a["line_items"][:2] == first["line_items"][:2]
    assert b["calculation_id"] == second["calculation_id"]


def test_bulk_invoicing_applies_the_same_terms_as_one_invoice(c):
    plan(c)
    for cid in ("cust_a", "cust_b", "cust_c"):
        customer(c, cid)
        subscribe(c, customer_id=cid)
    plan(c, "plan_free", minimum=None, fee="0")
    customer(c, "cust_free")
    subscribe(c, "plan_free", customer_id="cust_free")
    sub_b = ok(c.get("/v1/subscriptions", params={"customer_id": "cust_b"}), 200)["data"][0]["id"]
    ok(c.post("/v1/coupons", json={"id": "tenth", "percent_off": 10, "duration": "forever"}))
    ok(c.post(f"/v1/subscriptions/{sub_b}/discounts", json={"coupon_id": "tenth"}))
    g = grant(c, 30000, customer_id="cust_c")
    calls(c, 1_200_000, "b", customer_id="cust_b")
    expected = {cid: ok(c.post("/v1/pricing/calculate", json={**APRIL, "customer_id": cid}), 200)["line_items"]
                for cid in ("cust_a", "cust_b", "cust_c")}
    job = ok(c.post("/v1/invoices/bulk", json={"cutoff_date": "2026-04-30T23:59:59Z"}), 202)
    done = wait_until(lambda: (j := c.get(f"/v1/jobs/{job['job_id']}").json())["status"] == "succeeded" and j)
    # No usage, but a minimum: cust_a and cust_c are invoiced; cust_free (nothing at all) is skipped.
    assert (done["invoices_created"], done["invoices_skipped"], done["errors"]) == (3, 1, [])
    got = {i["customer_id"]: i for i in ok(c.get("/v1/invoices"), 200)["data"]}
    assert {cid: got[cid]["line_items"] for cid in expected} == expected
    assert lines(got["cust_a"]) == [("chg_1", "tiered", 0, 0), ("chg_2", "flat_fee", 1, 4900),
                                    ("minimum", "minimum_true_up", 30, 20100)]
    # 10,000 + 4,900 is below the 25,000 minimum too; a tenth of all 25,000 off.
    assert lines(got["cust_b"])[2:] == [("minimum", "minimum_true_up", 30, 10100), ("discount:tenth", "discount", 1, -2500)]
    assert got["cust_b"]["total_amount"] == 22500
    assert lines(got["cust_c"])[2:] == [("minimum", "minimum_true_up", 30, 20100), (f"credit:{g['id']}", "credit", 1, -25000)]
    assert (got["cust_c"]["total_amount"], got["cust_c"]["status"]) == (0, "paid")
    assert ledger(c, g["id"], "cust_c") == [("grant", 30000, None), ("drawdown", -25000, got["cust_c"]["id"])]


def test_an_adjustment_recomputes_the_minimum_and_discounts_and_leaves_credits_as_drawn(c):
    plan(c, minimum="200.00")
    customer(c)
    sub = subscribe(c)
    calls(c, 250_000, "a")
    ok(c.post("/v1/coupons", json={"id": "tenth", "percent_off": 10, "duration": "forever"}))
    ok(c.post(f"/v1/subscriptions/{sub['id']}/discounts", json={"coupon_id": "tenth"}))
    g = grant(c, 1000)
    inv = ok(c.post("/v1/invoices", json=APRIL))
    # 1,500 + 4,900 = 6,400 → true-up 13,600; 10 % of 20,000 = 2,000; 1,000 of credit.
    assert [li["amount"] for li in inv["line_items"]] == [1500, 4900, 13600, -2000, -1000]
    assert inv["total_amount"] == 17000
    # Late usage the minimum absorbs: chg_1 1,500 → 10,250, the true-up falls as much, the discount stays.
    calls(c, 1_000_000, "late")
    adj = ok(c.post(f"/v1/invoices/{inv['id']}/adjustments", json={}))
    assert [(li["charge_id"], li["amount"], li["previous_quantity"]) for li in adj["line_items"]] == [
        ("chg_1", 8750, 250000), ("minimum", -8750, 30)]
    assert adj["total_amount"] == 0
    # More: usage passes the minimum (its rest, 4,850, taken back) and the discount grows by 1,515.
    calls(c, 4_000_000, "later")
    adj2 = ok(c.post(f"/v1/invoices/{inv['id']}/adjustments", json={}))
    assert [(li["charge_id"], li["amount"]) for li in adj2["line_items"]] == [
        ("chg_1", 20000), ("discount:tenth", -1515), ("minimum", -4850)]
    # Original plus adjustments = the invoice fresh usage would make (35,150 − 3,515), less the credit drawn once.
    assert inv["total_amount"] + adj["total_amount"] + adj2["total_amount"] == 35150 - 3515 - 1000
    assert ledger(c, g["id"]) == [("grant", 1000, None), ("drawdown", -1000, inv["id"])]


def test_invoices_issued_at_once_never_draw_one_credit_twice(c):
    """Six subscriptions of one customer invoiced from six threads against one 10,000 grant."""
    plan(c, minimum=None)
    customer(c)
    subs = [subscribe(c)["id"] for _ in range(6)]
    g = grant(c, 10000)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(subs))

    def issue(sub_id: str) -> None:
        start.wait()
        r = c.post("/v1/invoices", json={**APRIL, "subscription_id": sub_id})
        with lock:
            results.append(ok(r))

    threads = [threading.Thread(target=issue, args=(s,)) for s in subs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    drawn = sorted(-li["amount"] for inv in results for li in inv["line_items"] if li["pricing_model"] == "credit")
    assert drawn == [200, 4900, 4900]
    assert sum(drawn) == 10000
    assert sorted(inv["total_amount"] for inv in results) == [0, 0, 4700, 4900, 4900, 4900]
    assert all(sum(li["amount"] for li in inv["line_items"]) == inv["total_amount"] for inv in results)
    entries = ledger(c, g["id"])
    assert entries[0] == ("grant", 10000, None)
    assert sorted(-a for _, a, _ in entries[1:]) == [200, 4900, 4900]
    assert ok(c.get(f"/v1/customers/cust_acme/credit-grants/{g['id']}"), 200)["remaining"] == 0


def test_an_invoice_archived_from_threads_at_once_gives_its_credits_back_once(c):
    plan(c, minimum=None, fee="80.00")
    customer(c)
    subscribe(c)
    g = grant(c, 5000)
    inv = ok(c.post("/v1/invoices", json=APRIL))
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(5)

    def archive() -> None:
        start.wait()
        r = c.post(f"/v1/invoices/{inv['id']}/archive", json={"reason": "twice"})
        with lock:
            statuses.append(r.status_code)

    threads = [threading.Thread(target=archive) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 409, 409, 409, 409]
    assert ledger(c, g["id"]) == [("grant", 5000, None), ("drawdown", -5000, inv["id"]), ("restore", 5000, inv["id"])]
    assert ok(c.get(f"/v1/customers/cust_acme/credit-grants/{g['id']}"), 200)["remaining"] == 5000
