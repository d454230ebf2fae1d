"""Charging invoices against localstripe: success, decline then retry, concurrency, outages, webhooks."""

from __future__ import annotations

import json
import threading
import time

import pytest
import stripe
from litestar.testing import TestClient

from abaxus.api.app import create_app
from abaxus.settings import Settings
from conftest import ADMIN_KEY, error_of
from helpers import event
from quickstart_bodies import CUSTOMER, JSON, METRIC, PLAN_JSON

WEBHOOK_SECRET = "whsec_test_abaxus"
APRIL = {"customer_id": "cust_acme", "cutoff_date": "2026-04-30T23:59:59Z"}


def stripe_client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_local", base_addresses={"api": url}, max_network_retries=0)


def stripe_customer(url: str, card: str | None = "4242424242424242", default: bool = True) -> tuple[str, str | None]:
    sc = stripe_client(url)
    cus = sc.v1.customers.create(params={"email": "billing@acme.io"})
    if card is None:
        return cus.id, None
    pm = sc.v1.payment_methods.create(params={"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2030,
                                                                        "cvc": "123"}})
    sc.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    if default:
        sc.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    return cus.id, pm.id


@pytest.fixture
def billing(embedded_settings: Settings, localstripe_url: str):  # type: ignore[no-untyped-def]
    settings = embedded_settings.with_(stripe_secret_key="sk_test_local", stripe_api_base=localstripe_url,
                                       stripe_webhook_secret=WEBHOOK_SECRET)
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        c.post("/v1/metrics", json=METRIC)
        c.post("/v1/price-plans", content=PLAN_JSON, headers=JSON)
        yield c


def quickstart_invoice(c, stripe_customer_id: str, payment_method_id: str | None = None, calls: int = 1_200_000) -> dict:  # type: ignore[no-untyped-def, type-arg]
    body = {**CUSTOMER, "payment_provider_customer_id": stripe_customer_id}
    if payment_method_id:
        body["payment_method_id"] = payment_method_id
    assert c.post("/v1/customers", json=body).status_code == 201
    c.post("/v1/subscriptions", json={"customer_id": "cust_acme", "plan_id": "plan_growth", "start_date": "2026-04-01T00:00:00Z"})
    c.post("/v1/events/backfill", json={"events": [event(f"c{i}", calls // 1000) for i in range(1000)]})
    r = c.post("/v1/invoices", json=APRIL)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_the_quickstart_invoice_is_charged_and_paid(billing, localstripe_url):
    cus, _ = stripe_customer(localstripe_url)
    inv = quickstart_invoice(billing, cus)
    assert inv["total_amount"] == 14900
    r = billing.post(f"/v1/invoices/{inv['id']}/charge", json={})
    assert r.status_code == 200, r.text
    paid = r.json()
    assert (paid["invoice_id"], paid["status"], paid["amount"], paid["currency"]) == (inv["id"], "paid", 14900, "usd")
    pi = stripe_client(localstripe_url).v1.payment_intents.retrieve(paid["payment_intent_id"])
    assert (pi.amount, pi.currency, pi.status, pi.customer, pi.metadata["abaxus_invoice_id"]) == (
        14900, "usd", "succeeded", cus, inv["id"])
    after = billing.get(f"/v1/invoices/{inv['id']}").json()
    assert (after["status"], after["payment_intent_id"]) == ("paid", paid["payment_intent_id"])
    assert after["paid_at"]
    trail = billing.get(f"/v1/invoices/{inv['id']}/events").json()["data"]
    assert [e["type"] for e in trail] == ["invoice.issued", "invoice.charge_attempted", "invoice.paid"]
    assert trail[1]["data"] == {"attempt": 1, "amount": 14900, "currency": "usd",
                                "stripe_idempotency_key": f"abaxus:{inv['id']}:1"}
    assert trail[2]["data"] == {"payment_intent_id": paid["payment_intent_id"], "amount": 14900, "source": "charge"}
    assert error_of(billing.post(f"/v1/invoices/{inv['id']}/charge", json={}))[:2] == (409, "INVOICE_ALREADY_PAID")
    assert "sk_test_local" not in json.dumps(trail)


def test_a_declined_card_keeps_the_invoice_issued_and_a_good_card_then_pays(billing, localstripe_url):
    cus, bad_pm = stripe_customer(localstripe_url, card="4000000000000341")
    inv = quickstart_invoice(billing, cus, bad_pm)
    r = billing.post(f"/v1/invoices/{inv['id']}/charge", json={})
    assert error_of(r)[:2] == (402, "PAYMENT_FAILED")
    assert r.json()["error"]["decline_code"] == "card_declined"
    assert billing.get(f"/v1/invoices/{inv['id']}").json()["status"] == "issued"
    _, _good_pm = stripe_customer(localstripe_url)
    sc = stripe_client(localstripe_url)
    good = sc.v1.payment_methods.create(params={"type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                                                          "exp_year": 2030, "cvc": "123"}})
    sc.v1.payment_methods.attach(good.id, params={"customer": cus})
    billing.patch("/v1/customers/cust_acme", json={"payment_method_id": good.id})
    r = billing.post(f"/v1/invoices/{inv['id']}/charge", json={})
    assert r.status_code == 200, r.text
    trail = billing.get(f"/v1/invoices/{inv['id']}/events").json()["data"]
    assert [(e["type"], e["data"].get("attempt")) for e in trail] == [
        ("invoice.issued", None), ("invoice.charge_attempted", 1), ("invoice.charge_failed", 1),
        ("invoice.charge_attempted", 2), ("invoice.paid", None)]


def test_twenty_concurrent_charges_make_exactly_one_payment(billing, localstripe_url):
    cus, _ = stripe_customer(localstripe_url)
    inv = quickstart_invoice(billing, cus)
    statuses: list[int] = []
    lock = threading.Lock()

    def charge() -> None:
        r = billing.post(f"/v1/invoices/{inv['id']}/charge", json={})
        with lock:
            statuses.append(r.status_code)

    threads = [threading.Thread(target=charge) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(200) == 1
    assert set(statuses) <= {200, 409}
    intents = stripe_client(localstripe_url).v1.payment_intents.list(params={"limit": 100}).data
    succeeded = [pi for pi in (i.to_dict() for i in intents)
                 if (pi.get("metadata") or {}).get("abaxus_invoice_id") == inv["id"] and pi["status"] == "succeeded"]
    assert len(succeeded) == 1


def test_missing_payment_method_and_zero_total(billing, localstripe_url):
    cus, _ = stripe_customer(localstripe_url, card=None)
    inv = quickstart_invoice(billing, cus)
    assert error_of(billing.post(f"/v1/invoices/{inv['id']}/charge", json={}))[:2] == (422, "PAYMENT_METHOD_MISSING")
    assert billing.get(f"/v1/invoices/{inv['id']}").json()["status"] == "issued"
    billing.post("/v1/price-plans", json={"id": "plan_zero", "name": "Z", "currency": "usd", "billing_period": "monthly",
                                          "charges": [{"metric_key": "api_calls", "pricing_model": "per_unit", "unit_price": 0}]})
    billing.post("/v1/customers", json={"id": "cust_zero", "name": "Zero"})
    billing.post("/v1/subscriptions", json={"customer_id": "cust_zero", "plan_id": "plan_zero",
                                            "start_date": "2026-04-01T00:00:00Z"})
    zero = billing.post("/v1/invoices", json={**APRIL, "customer_id": "cust_zero"}).json()
    r = billing.post(f"/v1/invoices/{zero['id']}/charge", json={})
    assert r.status_code == 200
    assert r.json()["payment_intent_id"] is None
    trail = billing.get(f"/v1/invoices/{zero['id']}/events").json()["data"]
    assert [e["type"] for e in trail] == ["invoice.issued", "invoice.paid"]
    assert trail[-1]["data"]["source"] == "zero_total"


def test_unreachable_stripe_is_503_and_the_invoice_stays_issued(tmp_path):
    settings = Settings(data_dir=tmp_path / "down", bootstrap_key=ADMIN_KEY, log_format="console",
                        stripe_secret_key="sk_test_local", stripe_api_base="http://127.0.0.1:9")
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        c.post("/v1/metrics", json=METRIC)
        c.post("/v1/price-plans", content=PLAN_JSON, headers=JSON)
        down = quickstart_invoice(c, "cus_unreachable", "pm_unreachable")
        assert error_of(c.post(f"/v1/invoices/{down['id']}/charge", json={}))[:2] == (503, "PAYMENT_PROVIDER_UNAVAILABLE")
        assert c.get(f"/v1/invoices/{down['id']}").json()["status"] == "issued"
        # The lock was released: a retry runs (and fails the same way) instead of 409.
        assert error_of(c.post(f"/v1/invoices/{down['id']}/charge", json={}))[:2] == (503, "PAYMENT_PROVIDER_UNAVAILABLE")


def _signed(payload: dict, secret: str = WEBHOOK_SECRET, at: int | None = None) -> tuple[bytes, str]:  # type: ignore[type-arg]
    body = json.dumps(payload).encode()
    at = at or int(time.time())
    sig = stripe.WebhookSignature._compute_signature(f"{at}.{body.decode()}", secret)
    return body, f"t={at},v1={sig}"


def test_a_signed_webhook_marks_paid_and_a_forged_one_is_refused(billing, localstripe_url):
    cus, _ = stripe_customer(localstripe_url)
    inv = quickstart_invoice(billing, cus)
    event_body = {"id": "evt_test_1", "object": "event", "type": "payment_intent.succeeded",
                  "data": {"object": {"id": "pi_from_webhook", "object": "payment_intent",
                                      "metadata": {"abaxus_invoice_id": inv["id"]}}}}
    forged, _ = _signed(event_body)
    _, bad_sig = _signed(event_body, secret="whsec_wrong")
    billing.headers.pop("Authorization")
    r = billing.post("/v1/webhooks/stripe", content=forged, headers={"Stripe-Signature": bad_sig,
                                                                     "Content-Type": "application/json"})
    assert error_of(r) == (400, "INVALID_SIGNATURE", None)
    old_body, old_sig = _signed(event_body, at=int(time.time()) - 600)
    stale = billing.post("/v1/webhooks/stripe", content=old_body,
                         headers={"Stripe-Signature": old_sig, "Content-Type": "application/json"})
    assert error_of(stale)[1] == "INVALID_SIGNATURE"
    body, sig = _signed(event_body)
    for _ in range(2):  # a redelivered event applies once
        r = billing.post("/v1/webhooks/stripe", content=body, headers={"Stripe-Signature": sig,
                                                                       "Content-Type": "application/json"})
        assert r.status_code == 200
        assert r.json() == {"received": True}
    billing.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
    after = billing.get(f"/v1/invoices/{inv['id']}").json()
    assert (after["status"], after["payment_intent_id"]) == ("paid", "pi_from_webhook")
    trail = billing.get(f"/v1/invoices/{inv['id']}/events").json()["data"]
    assert [(e["type"], e["actor"]) for e in trail][-1] == ("invoice.paid", "stripe")
    assert sum(e["type"] == "invoice.paid" for e in trail) == 1


def test_webhook_route_is_absent_without_a_secret(app_client):
    app_client.headers.pop("Authorization")
    assert error_of(app_client.post("/v1/webhooks/stripe", json={}))[:2] == (404, "NOT_FOUND")


def test_a_success_stripe_holds_but_we_never_recorded_is_reconciled_not_charged_again(billing, localstripe_url):
    """As after a crash between Stripe's success and our write: the next charge finds the intent."""
    cus, pm = stripe_customer(localstripe_url)
    inv = quickstart_invoice(billing, cus, pm)
    sc = stripe_client(localstripe_url)
    earlier = sc.v1.payment_intents.create(params={
        "amount": 14900, "currency": "usd", "customer": cus, "payment_method": pm, "confirm": True, "off_session": True,
        "metadata": {"abaxus_invoice_id": inv["id"]}})
    assert earlier.status == "succeeded"
    before = len(sc.v1.payment_intents.list(params={"limit": 100}).data)
    r = billing.post(f"/v1/invoices/{inv['id']}/charge", json={})
    assert r.status_code == 200
    assert r.json()["payment_intent_id"] == earlier.id
    assert len(sc.v1.payment_intents.list(params={"limit": 100}).data) == before  # no second payment
