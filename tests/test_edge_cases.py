"""Bad input found from outside (issue #10): each answers its 4xx with the field, never a 5xx.

Deep nesting, far dates, charging an unknown invoice without Stripe, the status recorded for
401/403, the Allow header, empty query bounds, non-UTF-8 and empty bodies, padded decimals.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from abaxus.schemas.events import EventBatchTyped
from abaxus.schemas.nesting import MAX_DEPTH, deep_path, too_deep
from conftest import error_of, make_key
from helpers import compute, event
from quickstart_bodies import JSON, setup_quickstart_catalog

DEEP_ARRAY = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a": ' * 1000 + "1" + "}" * 1000
FAR = "9999-12-31T23:59:59Z"
APRIL = {"customer_id": "cust_acme", "cutoff_date": "2026-04-30T23:59:59Z"}


@pytest.fixture
def acme(app_client):  # type: ignore[no-untyped-def]
    sub = setup_quickstart_catalog(app_client)
    return app_client, sub


def post(client: Any, path: str, body: str | bytes, method: str = "POST", **headers: str) -> Any:
    return client.request(method, path, content=body, headers={**JSON, **headers})


# ---- 4. deep nesting ------------------------------------------------------------------------
def _deep_cases(sub_id: str) -> list[tuple[str, str, str, tuple[int, str, str]]]:
    """(method, path, body, expected error): a thousand levels in a known and an unknown member."""
    unknown = (422, "UNKNOWN_FIELD", "metadata")
    cases = [
        ("POST", "/v1/customers", '{"id": "c1", "name": "C", "metadata": %s}' % DEEP_ARRAY, (422, "INVALID_FIELD", "metadata")),
        ("POST", "/v1/customers", '{"id": "c1", "name": "C", "metadata": {"k": %s}}' % DEEP_OBJECT,
         (422, "INVALID_FIELD", "metadata")),
        ("PATCH", "/v1/customers/cust_acme", '{"id": %s}' % DEEP_ARRAY, (422, "INVALID_FIELD", "id")),
        ("PATCH", "/v1/customers/cust_acme", '{"currency": %s}' % DEEP_OBJECT, (422, "INVALID_FIELD", "currency")),
        ("POST", "/v1/metrics", '{"key": %s}' % DEEP_ARRAY, (422, "INVALID_FIELD", "key")),
        ("POST", "/v1/price-plans", '{"id": "p", "charges": [{"tiers": %s}]}' % DEEP_ARRAY,
         (422, "INVALID_FIELD", "charges.0.tiers.0")),
        ("POST", "/v1/pricing/preview", '{"plan_id": "plan_growth", "usage": {"api_calls": %s}}' % DEEP_ARRAY,
         (422, "INVALID_DECIMAL", "usage")),
        ("POST", "/v1/events/void", '{"idempotency_keys": %s, "reason": "r"}' % DEEP_ARRAY,
         (422, "INVALID_FIELD", "idempotency_keys.0")),
    ]
    for path in ("/v1/metrics", "/v1/price-plans", "/v1/invoices", "/v1/pricing/calculate", "/v1/pricing/preview",
                 "/v1/usage/compute", "/v1/api-keys", "/v1/subscriptions", f"/v1/subscriptions/{sub_id}/amendments",
                 "/v1/invoices/bulk", "/v1/events/void"):
        cases += [("POST", path, '{"metadata": %s}' % DEEP_ARRAY, unknown),
                  ("POST", path, '{"metadata": %s}' % DEEP_OBJECT, unknown)]
    return cases


def test_deep_nesting_is_422_with_the_member_on_every_body_endpoint(acme):
    c, sub = acme
    for method, path, body, expected in _deep_cases(sub["id"]):
        assert error_of(post(c, path, body, method)) == expected, (method, path, body[:40])
    # Through the idempotent-replay layer too: the 422 is stored and replayed, never a 500.
    for _ in range(2):
        r = post(c, "/v1/metrics", '{"metadata": %s}' % DEEP_ARRAY, **{"Idempotency-Key": "deep-1"})
        assert error_of(r) == (422, "UNKNOWN_FIELD", "metadata")


def test_a_too_deep_event_fails_its_batch_as_422_naming_the_event(acme):
    c, _ = acme
    deep = json.dumps(event("deep"))[:-1] + ', "properties": %s}' % DEEP_ARRAY
    body = '{"events": [%s, %s]}' % (json.dumps(event("fine")), deep)
    for path in ("/v1/events/batch", "/v1/events/backfill"):
        assert error_of(post(c, path, body)) == (422, "INVALID_FIELD", "events.1.properties")
    # Objects nest the same way; and a million levels cost no more than a thousand.
    deep_obj = '{"events": [%s]}' % (json.dumps(event("o"))[:-1] + ', "properties": {"p": %s}}' % DEEP_OBJECT)
    assert error_of(post(c, "/v1/events/batch", deep_obj)) == (422, "INVALID_FIELD", "events.0.properties")
    huge = '{"events": [{"properties": %s}]}' % ("[" * 1_000_000 + "]" * 1_000_000)
    assert error_of(post(c, "/v1/events/batch", huge)) == (422, "INVALID_FIELD", "events.0.properties")
    # A single event has typed properties: refused as the wrong shape at once.
    assert error_of(post(c, "/v1/events", deep)) == (422, "INVALID_FIELD", "properties")
    assert compute(c)["meta"]["event_count"] == 0  # the refused batches stored nothing


def test_the_deep_member_is_named_from_the_schema_and_strings_do_not_count():
    body = b'{"events": [{"customer_id": "[[[{\\"x", "properties": ' + b"[" * 100 + b"]" * 100 + b"}]}"
    path = deep_path(body)
    assert path is not None
    assert path[:4] == ["events", 0, "properties", 0]
    assert len(path) == MAX_DEPTH
    assert too_deep(body, EventBatchTyped).field == "events.0.properties"
    assert deep_path(b'{"a": "' + b"[" * 500 + b'"}') is None  # brackets inside a string are text
    nested = b'{"k\\u00e9": ' + b'{"a": ' * 80  # keys are unescaped; a member the schema lacks names itself
    assert deep_path(nested) == ["k\u00e9"] + ["a"] * (MAX_DEPTH - 1)
    assert too_deep(nested, EventBatchTyped).field == "k\u00e9"
    assert too_deep(b"[" * 80, EventBatchTyped).field is None  # no member to name
    assert too_deep(b'{"events": [1, 2, {"x": ' + b"[" * 80, EventBatchTyped).field == "events.2.x"


# ---- 5. far dates ---------------------------------------------------------------------------
def _far_date_cases(sub_id: str) -> list[tuple[str, dict[str, Any], str]]:
    sub = {"customer_id": "cust_acme", "plan_id": "plan_growth", "start_date": "2026-04-01T00:00:00Z"}
    amend = f"/v1/subscriptions/{sub_id}/amendments"
    compute_body = {"customer_id": "cust_acme", "period_start": "2026-04-01T00:00:00Z", "period_end": "2026-04-30T23:59:59Z"}
    return [
        ("/v1/invoices", {**APRIL, "cutoff_date": FAR}, "cutoff_date"),
        ("/v1/pricing/calculate", {**APRIL, "cutoff_date": FAR}, "cutoff_date"),
        ("/v1/invoices/bulk", {"cutoff_date": FAR}, "cutoff_date"),
        ("/v1/subscriptions", {**sub, "start_date": FAR}, "start_date"),
        ("/v1/subscriptions", {**sub, "end_date": FAR}, "end_date"),
        (amend, {"type": "pause", "effective": FAR}, "effective"),
        (amend, {"type": "pause", "resume_date": FAR}, "resume_date"),
        (amend, {"type": "end_date_change", "end_date": FAR}, "end_date"),
        ("/v1/usage/compute", {**compute_body, "period_end": FAR}, "period_end"),
        ("/v1/usage/compute", {**compute_body, "period_start": "2200-01-01T00:00:00Z"}, "period_start"),
        ("/v1/price-plans", {"id": "plan_far", "name": "F", "currency": "usd", "billing_period": "monthly",
                             "charges": [{"pricing_model": "flat_fee", "amount": 1}], "effective_from": FAR}, "effective_from"),
    ]


def test_instants_from_2200_on_are_refused_at_the_edge_with_the_range(acme):
    c, sub = acme
    for path, body, field in _far_date_cases(sub["id"]):
        r = c.post(path, json=body)
        assert error_of(r) == (422, "INVALID_TIMESTAMP", field), (path, body)
        assert "2200-01-01T00:00:00Z" in r.json()["error"]["message"]
    # Offsets that carry a far or ancient date past the ends of the calendar, and the last second in range.
    for stamp in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00", "2199-12-31T23:00:00-01:00"):
        assert error_of(c.post("/v1/invoices", json={**APRIL, "cutoff_date": stamp})) == (422, "INVALID_TIMESTAMP", "cutoff_date")
    for name in ("from", "to"):
        assert error_of(c.get("/v1/events", params={name: FAR})) == (422, "INVALID_TIMESTAMP", name)
        params = {"customer_id": "cust_acme", "from": "2026-04-01T00:00:00Z", "to": "2026-04-30T23:59:59Z", name: FAR}
        assert error_of(c.get("/v1/usage/summary", params=params)) == (422, "INVALID_TIMESTAMP", name)
    # Events were already bounded by "at most 5 minutes ahead".
    assert error_of(c.post("/v1/events", json=event("far", ts=FAR))) == (422, "TIMESTAMP_IN_FUTURE", "timestamp")


def test_a_subscription_at_the_end_of_the_range_invoices_and_cancels(acme):
    c, _ = acme
    r = c.post("/v1/subscriptions", json={"customer_id": "cust_acme", "plan_id": "plan_growth",
                                          "start_date": "2199-12-31T00:00:00Z"})
    assert r.status_code == 201, r.text
    late = r.json()
    inv = c.post("/v1/invoices", json={**APRIL, "cutoff_date": "2199-12-31T23:59:59Z", "subscription_id": late["id"]})
    assert inv.status_code == 201, inv.text
    assert (inv.json()["period_start"], inv.json()["total_amount"]) == ("2199-12-31T00:00:00Z", 4900)
    cancel = c.post(f"/v1/subscriptions/{late['id']}/amendments", json={"type": "cancel", "effective": "end_of_period"})
    assert cancel.status_code == 201, cancel.text
    assert cancel.json()["effective_at"] == "2200-01-31T00:00:00Z"


# ---- 6. charging without Stripe ---------------------------------------------------------------
def test_charge_checks_the_invoice_before_needing_stripe(acme):
    c, _ = acme
    unknown = "inv_01hzzzzzzzzzzzzzzzzzzzzzzz"
    assert error_of(c.post(f"/v1/invoices/{unknown}/charge", json={})) == (404, "INVOICE_NOT_FOUND", None)
    c.post("/v1/events/backfill", json={"events": [event("c1", 1000)]})
    inv = c.post("/v1/invoices", json=APRIL).json()
    # A real charge needs Stripe: still 503, and the invoice stays chargeable.
    assert error_of(c.post(f"/v1/invoices/{inv['id']}/charge", json={})) == (503, "PAYMENT_PROVIDER_UNAVAILABLE", None)
    assert c.post(f"/v1/invoices/{inv['id']}/archive", json={"reason": "test"}).status_code == 200
    assert error_of(c.post(f"/v1/invoices/{inv['id']}/charge", json={})) == (409, "INVOICE_ARCHIVED", None)
    # A zero total never calls Stripe, so it is paid without one; then it is already paid.
    c.post("/v1/price-plans", json={"id": "plan_zero", "name": "Z", "currency": "usd", "billing_period": "monthly",
                                    "charges": [{"metric_key": "api_calls", "pricing_model": "per_unit", "unit_price": 0}]})
    c.post("/v1/customers", json={"id": "cust_zero", "name": "Zero"})
    c.post("/v1/subscriptions", json={"customer_id": "cust_zero", "plan_id": "plan_zero", "start_date": "2026-04-01T00:00:00Z"})
    zero = c.post("/v1/invoices", json={**APRIL, "customer_id": "cust_zero"}).json()
    paid = c.post(f"/v1/invoices/{zero['id']}/charge")
    assert (paid.status_code, paid.json()["status"], paid.json()["payment_intent_id"]) == (200, "paid", None)
    assert error_of(c.post(f"/v1/invoices/{zero['id']}/charge", json={})) == (409, "INVOICE_ALREADY_PAID", None)


# ---- 7. the status recorded for answers raised by middleware ------------------------------------
def test_latency_metrics_record_401_403_and_422_from_middleware(client):
    read_key = make_key(client, "read")
    assert client.get("/v1/metrics", headers={"Authorization": "Bearer sk_test_" + "Z" * 40}).status_code == 401
    assert client.post("/v1/customers", json={"id": "c", "name": "C"},
                       headers={"Authorization": f"Bearer {read_key}"}).status_code == 403
    assert error_of(client.post("/v1/customers", json={"id": "c", "name": "C", "idempotency_key": ""})) == (
        422, "IDEMPOTENCY_KEY_INVALID", "idempotency_key")
    text = client.get("/metrics").text
    count = "abaxus_http_request_duration_seconds_count"
    assert f'{count}{{method="GET",route="/v1/metrics",status="401"}} 1.0' in text
    assert f'{count}{{method="POST",route="/v1/customers",status="403"}} 1.0' in text
    assert f'{count}{{method="POST",route="/v1/customers",status="422"}} 1.0' in text
    assert 'status="500"' not in text


# ---- 9. small ones --------------------------------------------------------------------------------
def test_405_lists_the_allowed_methods(client):
    r = client.put("/v1/metrics")
    assert error_of(r) == (405, "METHOD_NOT_ALLOWED", None)
    assert {"GET", "POST"} <= {m.strip() for m in r.headers["allow"].split(",")}
    r = client.delete("/v1/customers/cust_acme")
    assert r.status_code == 405
    assert {"GET", "PATCH"} <= {m.strip() for m in r.headers["allow"].split(",")}


def test_empty_time_bounds_are_invalid_not_ignored(acme):
    c, _ = acme
    assert error_of(c.get("/v1/events?from=")) == (422, "INVALID_TIMESTAMP", "from")
    assert error_of(c.get("/v1/events?to=")) == (422, "INVALID_TIMESTAMP", "to")
    assert error_of(c.get("/v1/usage/summary?customer_id=cust_acme&from=&to=2026-04-30T23:59:59Z")) == (
        422, "INVALID_TIMESTAMP", "from")
    assert error_of(c.get("/v1/usage/summary?customer_id=cust_acme&from=2026-04-01T00:00:00Z&to=")) == (
        422, "INVALID_TIMESTAMP", "to")
    assert error_of(c.get("/v1/usage/summary?customer_id=cust_acme&to=2026-04-30T23:59:59Z")) == (
        422, "MISSING_FIELD", "from")  # absent is still missing


def test_a_body_that_is_not_utf8_is_400_for_the_whole_batch(acme):
    c, _ = acme
    bad = b'{"events": [' + json.dumps(event("ok")).encode() + b', {"customer_id": "cust_\xff"}]}'
    for path in ("/v1/events/batch", "/v1/events/backfill", "/v1/events"):
        body = bad if path != "/v1/events" else b'{"customer_id": "cust_\xff"}'
        assert error_of(post(c, path, body)) == (400, "MALFORMED_JSON", None), path


def test_an_empty_body_is_malformed_where_an_empty_object_would_not_do(acme):
    c, sub = acme
    for path in ("/v1/customers", "/v1/events", "/v1/events/batch", "/v1/events/backfill", "/v1/invoices",
                 f"/v1/subscriptions/{sub['id']}/amendments", "/v1/usage/compute"):
        for body in (b"", b"  \n"):
            r = post(c, path, body)
            assert error_of(r) == (400, "MALFORMED_JSON", None), path
            assert r.json()["error"]["message"].startswith("Send a JSON object body")
    # Where {} is a valid body, nothing is the same as {}.
    assert error_of(post(c, "/v1/invoices/inv_nope/charge", b"")) == (404, "INVOICE_NOT_FOUND", None)
    assert error_of(post(c, "/v1/invoices/inv_nope/adjustments", b"")) == (404, "INVOICE_NOT_FOUND", None)


@pytest.mark.parametrize("value", ["  5 ", "5 ", " 5", "5\n", "5_0", "\u0665", "1\u00a0000"])
def test_a_padded_or_odd_decimal_string_is_not_a_value(acme, value):
    c, _ = acme
    assert error_of(c.post("/v1/events", json=event("odd", value))) == (422, "INVALID_DECIMAL", "value")
    r = c.post("/v1/events/batch", json={"events": [event("fine", 1), event("odd", value)]})
    assert r.status_code == 207
    assert [x["status"] for x in r.json()["results"]] == ["queued", "rejected"]
    assert (r.json()["results"][1]["error"]["code"], r.json()["results"][1]["error"]["field"]) == (
        "INVALID_DECIMAL", "events.1.value")


def test_plain_decimal_strings_are_still_values(acme):
    c, _ = acme
    values = ["5", "-0.5", "12.50", "1e3", "+7", ".5"]
    r = c.post("/v1/events/backfill", json={"events": [event(f"plain{i}", v) for i, v in enumerate(values)]})
    assert r.status_code == 200, r.text
    assert compute(c)["data"][0]["quantity"] == 5 - 0.5 + 12.5 + 1000 + 7 + 0.5


def test_a_huge_value_with_many_places_is_out_of_range_not_a_500(acme):
    """10^18 with 11 places: the range is checked before the places (quantizing it overflows the context)."""
    c, _ = acme
    r = c.post("/v1/events/batch", json={"events": [
        event("huge-1", value="1000000000000000000.00000000001"), event("fine-1", 5)]})
    assert r.status_code == 207, r.text
    results = r.json()["results"]
    assert results[0]["error"]["code"] == "VALUE_OUT_OF_RANGE"
    assert results[0]["error"]["field"] == "events.0.value"
    assert results[1]["status"] == "queued"
    r = c.post("/v1/events", json=event("huge-2", value="-1000000000000000000.00000000001"))
    assert error_of(r) == (422, "VALUE_OUT_OF_RANGE", "value")
