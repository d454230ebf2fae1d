"""Validation that needs state of its own: duplicates, inactive metrics, subscriptions, routes.

The table-driven refusals of every code are in ``test_validation_cases.py``."""

from __future__ import annotations

import pytest

from conftest import error_of
from quickstart_bodies import CUSTOMER, METRIC, PLAN_JSON
from test_validation_cases import _plan


@pytest.fixture
def with_metric(client):  # type: ignore[no-untyped-def]
    assert client.post("/v1/metrics", json=METRIC).status_code == 201
    return client


def test_metric_key_duplicate(with_metric):
    assert error_of(with_metric.post("/v1/metrics", json=METRIC)) == (409, "METRIC_KEY_DUPLICATE", "key")


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


def test_unknown_route_and_method(client):
    assert error_of(client.get("/v1/nothing-here")) == (404, "NOT_FOUND", None)
    assert error_of(client.put("/v1/metrics")) == (405, "METHOD_NOT_ALLOWED", None)
    assert error_of(client.get("/v1/price-plans/ghost")) == (404, "PLAN_NOT_FOUND", None)
    assert error_of(client.get("/v1/price-plans/ghost/versions/1")) == (404, "PLAN_NOT_FOUND", None)
    assert error_of(client.get("/v1/subscriptions/sub_x")) == (404, "SUBSCRIPTION_NOT_FOUND", None)
    assert error_of(client.get("/v1/customers/ghost")) == (404, "CUSTOMER_NOT_FOUND", None)
