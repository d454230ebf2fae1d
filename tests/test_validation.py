"""Every validation code of the catalog sections, with the field at fault; never a 500."""

from __future__ import annotations

import copy
import json

import pytest

from conftest import error_of
from quickstart_bodies import CUSTOMER, METRIC, PLAN_JSON

PLAN = json.loads(PLAN_JSON)


def _plan(**changes):  # type: ignore[no-untyped-def]
    body = copy.deepcopy(PLAN)
    body.update(changes)
    return body


def _tiers(*tiers):  # type: ignore[no-untyped-def]
    return _plan(charges=[{"metric_key": "api_calls", "pricing_model": "tiered", "tiers": list(tiers)}])


@pytest.fixture
def with_metric(client):  # type: ignore[no-untyped-def]
    assert client.post("/v1/metrics", json=METRIC).status_code == 201
    return client


METRIC_CASES = [
    ({"name": "x", "aggregation": "sum"}, "MISSING_FIELD", "key"),
    ({"key": "Bad-Key", "name": "x", "aggregation": "sum"}, "INVALID_ID", "key"),
    ({"key": "k", "aggregation": "sum"}, "MISSING_FIELD", "name"),
    ({"key": "k", "name": "", "aggregation": "sum"}, "INVALID_FIELD", "name"),
    ({"key": "k", "name": "x"}, "MISSING_FIELD", "aggregation"),
    ({"key": "k", "name": "x", "aggregation": "median"}, "INVALID_FIELD", "aggregation"),
    ({"key": "k", "name": "x", "display_name": "y", "aggregation": "sum"}, "VALIDATION_ERROR", "display_name"),
    ({"key": "k", "name": "x", "aggregation": "unique_count"}, "MISSING_FIELD", "property"),
    ({"key": "k", "name": "x", "aggregation": "sum", "property": "u"}, "INVALID_FIELD", "property"),
    ({"key": "k", "name": "x", "aggregation": "percentile"}, "MISSING_FIELD", "percentile"),
    ({"key": "k", "name": "x", "aggregation": "percentile", "percentile": 0}, "VALUE_OUT_OF_RANGE", "percentile"),
    ({"key": "k", "name": "x", "aggregation": "percentile", "percentile": 100.5}, "VALUE_OUT_OF_RANGE", "percentile"),
    ({"key": "k", "name": "x", "aggregation": "percentile", "percentile": 99.12345}, "INVALID_DECIMAL", "percentile"),
    ({"key": "k", "name": "x", "aggregation": "sum", "colour": "red"}, "UNKNOWN_FIELD", "colour"),
    ({"key": "k", "name": "x", "aggregation": "sum", "description": "d" * 2001}, "INVALID_FIELD", "description"),
]


@pytest.mark.parametrize(("body", "code", "field"), METRIC_CASES)
def test_metric_validation(client, body, code, field):
    assert error_of(client.post("/v1/metrics", json=body)) == (422, code, field)


def test_metric_key_duplicate(with_metric):
    assert error_of(with_metric.post("/v1/metrics", json=METRIC)) == (409, "METRIC_KEY_DUPLICATE", "key")


PLAN_CASES = [
    (_plan(id="bad id!"), "INVALID_ID", "id"),
    (_plan(currency="zzz"), "INVALID_CURRENCY", "currency"),
    (_plan(billing_period="weekly"), "INVALID_FIELD", "billing_period"),
    (_plan(charges=[]), "VALIDATION_ERROR", "charges"),
    (_plan(effective_from="2026-04-01T00:00:00"), "TIMESTAMP_NOT_ZONED", "effective_from"),
    (_plan(effective_from="yesterday"), "INVALID_TIMESTAMP", "effective_from"),
    (_tiers({"up_to": 10, "unit_price": 1}, {"up_to": 5, "unit_price": 1}, {"up_to": None, "unit_price": 1}),
     "TIERS_NOT_ASCENDING", "charges.0.tiers.1.up_to"),
    (_tiers({"up_to": 10, "unit_price": 1}, {"up_to": 20, "unit_price": 1}), "LAST_TIER_MUST_BE_UNBOUNDED",
     "charges.0.tiers.1.up_to"),
    (_tiers({"up_to": None, "unit_price": 1}, {"up_to": None, "unit_price": 1}), "LAST_TIER_MUST_BE_UNBOUNDED",
     "charges.0.tiers.0.up_to"),
    (_tiers({"up_to": 10, "unit_price": "abc"}, {"up_to": None, "unit_price": 1}), "INVALID_DECIMAL",
     "charges.0.tiers.0.unit_price"),
    (_tiers({"up_to": 10, "unit_price": "0.0000000000001"}, {"up_to": None, "unit_price": 1}), "INVALID_DECIMAL",
     "charges.0.tiers.0.unit_price"),
    (_tiers({"up_to": 10, "unit_price": -1}, {"up_to": None, "unit_price": 1}), "VALUE_OUT_OF_RANGE",
     "charges.0.tiers.0.unit_price"),
    (_tiers({"up_to": None, "unit_price": 1e12}), "VALUE_OUT_OF_RANGE", "charges.0.tiers.0.unit_price"),
    (_tiers({"up_to": None, "unit_price": 1, "colour": 1}), "UNKNOWN_FIELD", "charges.0.tiers.0.colour"),
    (_plan(charges=[{"metric_key": "nope", "pricing_model": "per_unit", "unit_price": 1}]), "UNKNOWN_METRIC",
     "charges.0.metric_key"),
    (_plan(charges=[{"pricing_model": "per_unit", "unit_price": 1}]), "MISSING_FIELD", "charges.0.metric_key"),
    (_plan(charges=[{"metric_key": "api_calls", "pricing_model": "per_unit"}]), "MISSING_FIELD", "charges.0.unit_price"),
    (_plan(charges=[{"metric_key": "api_calls", "pricing_model": "package", "package_size": 0, "package_price": 1}]),
     "VALUE_OUT_OF_RANGE", "charges.0.package_size"),
    (_plan(charges=[{"metric_key": "api_calls", "pricing_model": "per_unit", "unit_price": 1, "tiers": []}]),
     "INVALID_FIELD", "charges.0.tiers"),
    (_plan(charges=[{"pricing_model": "flat_fee", "amount": 1, "id": "a"},
                    {"pricing_model": "flat_fee", "amount": 2, "id": "a"}]),
     "DUPLICATE_CHARGE_ID", "charges.1.id"),
    (_plan(charges=[{"pricing_model": "flat_fee", "amount": 1, "id": "has space"}]), "INVALID_ID", "charges.0.id"),
    (_plan(charges=[{"pricing_model": "hourly"}]), "INVALID_FIELD", "charges.0.pricing_model"),
    (_plan(entitlements=[{"feature_key": "sso", "type": "boolean", "value": "yes"}]), "INVALID_FIELD", "entitlements.0.value"),
    (_plan(entitlements=[{"feature_key": "calls", "type": "limit", "value": 5}]), "MISSING_FIELD", "entitlements.0.metric_key"),
]


@pytest.mark.parametrize(("body", "code", "field"), PLAN_CASES)
def test_plan_validation(with_metric, body, code, field):
    assert error_of(with_metric.post("/v1/price-plans", json=body)) == (422, code, field)


def test_plan_prices_are_exact_and_echoed_as_decimal_strings(with_metric):
    body = _plan(charges=[{"metric_key": "api_calls", "pricing_model": "per_unit", "unit_price": "0.000000000001"},
                          {"metric_key": "api_calls", "pricing_model": "package", "package_size": 1000, "package_price": 8}],
                 currency="JPY")
    r = with_metric.post("/v1/price-plans", json=body)
    assert r.status_code == 201, r.text
    charges = r.json()["charges"]
    assert r.json()["currency"] == "jpy"
    assert charges[0] == {"id": "chg_1", "metric_key": "api_calls", "pricing_model": "per_unit",
                          "description": "API Calls (per_unit)", "unit_price": "0.000000000001"}
    assert charges[1]["package_price"] == "8"
    assert charges[1]["package_size"] == 1000


def test_inactive_metric_cannot_be_priced(with_metric):
    with_metric.post("/v1/metrics/api_calls/deactivate")
    assert error_of(with_metric.post("/v1/price-plans", content=PLAN_JSON, headers={"Content-Type": "application/json"})) == (
        422, "METRIC_INACTIVE", "charges.0.metric_key")


CUSTOMER_CASES = [
    ({"id": "x y", "name": "n"}, "INVALID_ID", "id"),
    ({"id": "c" * 129, "name": "n"}, "INVALID_ID", "id"),
    ({"id": "c"}, "MISSING_FIELD", "name"),
    ({"id": "c", "name": "n", "currency": "dollars"}, "INVALID_CURRENCY", "currency"),
    ({"id": "c", "name": "n", "email": "not-an-email"}, "INVALID_FIELD", "email"),
    ({"id": "c", "name": "n", "payment_provider_customer_id": "cus_1"}, "VALIDATION_ERROR", "payment_provider_customer_id"),
    ({"id": "c", "name": "n", "payment_provider": "paypal"}, "INVALID_FIELD", "payment_provider"),
    ({"id": "c", "name": "n", "metadata": {"k": 1}}, "INVALID_FIELD", "metadata"),
    ({"id": "c", "name": "n", "metadata": {f"k{i}": "v" for i in range(51)}}, "INVALID_FIELD", "metadata"),
]


@pytest.mark.parametrize(("body", "code", "field"), CUSTOMER_CASES)
def test_customer_validation(client, body, code, field):
    assert error_of(client.post("/v1/customers", json=body)) == (422, code, field)


def test_customer_already_exists(client):
    client.post("/v1/customers", json=CUSTOMER)
    assert error_of(client.post("/v1/customers", json=CUSTOMER)) == (409, "CUSTOMER_ALREADY_EXISTS", "id")


def test_subscription_validation(with_metric):
    c = with_metric
    c.post("/v1/price-plans", content=PLAN_JSON, headers={"Content-Type": "application/json"})
    c.post("/v1/customers", json={**CUSTOMER, "currency": "eur"})
    c.post("/v1/customers", json={"id": "usd_c", "name": "U", "currency": "usd"})
    base = {"customer_id": "usd_c", "plan_id": "plan_growth", "start_date": "2026-04-01T00:00:00Z"}
    cases = [
        ({**base, "customer_id": "ghost"}, "CUSTOMER_NOT_FOUND", "customer_id"),
        ({**base, "plan_id": "ghost"}, "PLAN_NOT_FOUND", "plan_id"),
        ({**base, "plan_version": 9}, "PLAN_VERSION_NOT_FOUND", "plan_version"),
        ({**base, "customer_id": "cust_acme"}, "CURRENCY_MISMATCH", "plan_id"),
        ({**base, "start_date": "2026-04-01"}, "INVALID_TIMESTAMP", "start_date"),
        ({**base, "start_date": "2026-04-01T00:00:00"}, "TIMESTAMP_NOT_ZONED", "start_date"),
        ({**base, "start_date": "1969-12-31T23:59:59Z"}, "INVALID_TIMESTAMP", "start_date"),
        ({**base, "end_date": "2026-03-01T00:00:00Z"}, "INVALID_DATE_RANGE", "end_date"),
        ({**base, "plan_version": "1"}, "INVALID_FIELD", "plan_version"),
    ]
    for body, code, field in cases:
        assert error_of(c.post("/v1/subscriptions", json=body)) == (422, code, field), body
    r = c.post("/v1/subscriptions", json={**base, "start_date": "2026-04-01T02:00:00.789+02:00"})
    assert r.json()["start_date"] == "2026-04-01T00:00:00Z"


@pytest.mark.parametrize(("content", "ctype", "status", "code"), [
    (b"{not json", "application/json", 400, "MALFORMED_JSON"),
    (b"[1, 2]", "application/json", 400, "MALFORMED_JSON"),
    (b"\xff\xfe{}", "application/json", 400, "MALFORMED_JSON"),
    (b'{"id": "c", "name": "n"}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
    (b'{"id": "c", "name": "n"}', "application/json; charset=latin-1", 415, "UNSUPPORTED_MEDIA_TYPE"),
    (b'{"id": "c", "name": "' + b"x" * 1_000_001 + b'"}', "application/json", 413, "PAYLOAD_TOO_LARGE"),
])
def test_bad_bodies_get_clear_errors(client, content, ctype, status, code):
    r = client.post("/v1/customers", content=content, headers={"Content-Type": ctype})
    assert error_of(r)[:2] == (status, code)


def test_unknown_route_and_method(client):
    assert error_of(client.get("/v1/nothing-here")) == (404, "NOT_FOUND", None)
    assert error_of(client.put("/v1/metrics")) == (405, "METHOD_NOT_ALLOWED", None)
    assert error_of(client.get("/v1/price-plans/ghost")) == (404, "PLAN_NOT_FOUND", None)
    assert error_of(client.get("/v1/price-plans/ghost/versions/1")) == (404, "PLAN_NOT_FOUND", None)
    assert error_of(client.get("/v1/subscriptions/sub_x")) == (404, "SUBSCRIPTION_NOT_FOUND", None)
    assert error_of(client.get("/v1/customers/ghost")) == (404, "CUSTOMER_NOT_FOUND", None)
