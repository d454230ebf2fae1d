"""Every validation code of the catalog sections, with the field at fault; never a 500.

The cases share one app per database (``refusing``): a refused body changes nothing, which
the last test checks. chDB opens one data directory per process at a time, so these cases
live apart from the tests that start an app each.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from abaxus.api.app import create_app
from abaxus.settings import Settings
from conftest import ADMIN_KEY, error_of, throwaway_pg_database
from quickstart_bodies import METRIC, PLAN_JSON

PLAN = json.loads(PLAN_JSON)


def _plan(**changes):  # type: ignore[no-untyped-def]
    body = copy.deepcopy(PLAN)
    body.update(changes)
    return body


def _tiers(*tiers):  # type: ignore[no-untyped-def]
    return _plan(charges=[{"metric_key": "api_calls", "pricing_model": "tiered", "tiers": list(tiers)}])


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def refusing(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient[Any]]:
    """One app per database for the table-driven cases, with the metric ``api_calls``.

    Every case is refused, and a refused body changes nothing (``test_refused_bodies_left_no_trace``
    checks that at the end), so the cases share one app instead of starting one each.
    """
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(throwaway_pg_database("abaxus_validation")) if request.param == "postgres" else None
        settings = Settings(data_dir=tmp_path_factory.mktemp("validation") / "data", database_url=url,
                            bootstrap_key=ADMIN_KEY, log_format="console")
        client = stack.enter_context(TestClient(create_app(settings)))
        client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        assert client.post("/v1/metrics", json=METRIC).status_code == 201
        yield client



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
def test_metric_validation(refusing, body, code, field):
    assert error_of(refusing.post("/v1/metrics", json=body)) == (422, code, field)


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
def test_plan_validation(refusing, body, code, field):
    assert error_of(refusing.post("/v1/price-plans", json=body)) == (422, code, field)


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
def test_customer_validation(refusing, body, code, field):
    assert error_of(refusing.post("/v1/customers", json=body)) == (422, code, field)


@pytest.mark.parametrize(("content", "ctype", "status", "code"), [
    (b"{not json", "application/json", 400, "MALFORMED_JSON"),
    (b"[1, 2]", "application/json", 400, "MALFORMED_JSON"),
    (b"\xff\xfe{}", "application/json", 400, "MALFORMED_JSON"),
    (b'{"id": "c", "name": "n"}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
    (b'{"id": "c", "name": "n"}', "application/json; charset=latin-1", 415, "UNSUPPORTED_MEDIA_TYPE"),
    (b'{"id": "c", "name": "' + b"x" * 1_000_001 + b'"}', "application/json", 413, "PAYLOAD_TOO_LARGE"),
])
def test_bad_bodies_get_clear_errors(refusing, content, ctype, status, code):
    r = refusing.post("/v1/customers", content=content, headers={"Content-Type": ctype})
    assert error_of(r)[:2] == (status, code)


def test_refused_bodies_left_no_trace(refusing):
    """After every refused case above: the one metric the fixture made, no plan, no customer."""
    assert [m["key"] for m in refusing.get("/v1/metrics").json()["data"]] == ["api_calls"]
    assert refusing.get("/v1/price-plans").json()["data"] == []
    assert refusing.get("/v1/customers").json()["data"] == []
