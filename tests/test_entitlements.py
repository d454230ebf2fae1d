"""Entitlements (§15) over the real app, dataflow and chDB: limits add up, usage counts since
the oldest contributing subscription's current period, only live subscriptions grant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conftest import error_of, make_key
from helpers import event, wait_until

NOW = datetime.now(UTC).replace(microsecond=0)


def ts(delta: timedelta) -> str:
    return (NOW + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def quota_check(client, usage: int) -> dict | None:  # type: ignore[no-untyped-def, type-arg]
    """The api_quota check once the summary shows ``usage``, else None (poll with wait_until)."""
    r = client.get("/v1/entitlements/check", params={"customer_id": "cust_acme", "feature_key": "api_quota"})
    assert r.status_code == 200, r.text
    body = r.json()
    return body if body["current_usage"] == usage else None


def plan(plan_id: str, entitlements: list[dict]) -> dict:  # type: ignore[type-arg]
    return {"id": plan_id, "name": plan_id, "currency": "usd", "billing_period": "monthly",
            "charges": [{"metric_key": None, "pricing_model": "flat_fee", "amount": 10}], "entitlements": entitlements}


@pytest.fixture
def entitled(app_client):  # type: ignore[no-untyped-def]
    c = app_client
    assert c.post("/v1/metrics", json={"key": "api_calls", "name": "API Calls", "aggregation": "sum"}).status_code == 201
    assert c.post("/v1/customers", json={"id": "cust_acme", "name": "Acme"}).status_code == 201
    plans = [
        plan("plan_growth", [{"feature_key": "api_quota", "type": "limit", "value": 500_000, "metric_key": "api_calls"},
                             {"feature_key": "sso", "type": "boolean", "value": False},
                             {"feature_key": "audit_log", "type": "boolean", "value": True},
                             {"feature_key": "support_tier", "type": "custom", "value": "standard"}]),
        plan("plan_addon_api", [{"feature_key": "api_quota", "type": "limit", "value": 1, "metric_key": "api_calls"}]),
        plan("plan_addon_api", [{"feature_key": "api_quota", "type": "limit", "value": 100_000, "metric_key": "api_calls"},
                                {"feature_key": "sso", "type": "boolean", "value": True},
                                {"feature_key": "support_tier", "type": "custom", "value": "priority"}]),
        plan("plan_old", [{"feature_key": "legacy_export", "type": "boolean", "value": True}]),
        plan("plan_beta", [{"feature_key": "beta", "type": "boolean", "value": True}]),
    ]
    for body in plans:
        assert c.post("/v1/price-plans", json=body).status_code == 201
    subs = [("plan_growth", None, -40, None), ("plan_addon_api", 2, -10, None), ("plan_old", None, -60, -5),
            ("plan_beta", None, 5, None)]
    for plan_id, version, start_days, end_days in subs:
        body = {"customer_id": "cust_acme", "plan_id": plan_id, "start_date": ts(timedelta(days=start_days))}
        if version:
            body["plan_version"] = version
        if end_days is not None:
            body["end_date"] = ts(timedelta(days=end_days))
        assert c.post("/v1/subscriptions", json=body).status_code == 201, body
    events = [event("now-1", 40_000, ts(timedelta(minutes=-2))), event("now-2", 7_293, ts(timedelta(minutes=-1))),
              event("last-period", 1_000, ts(timedelta(days=-39)))]
    assert c.post("/v1/events/batch", json={"events": events}).status_code == 202
    return c


def test_limits_add_up_and_count_usage_of_the_current_period(entitled):
    check = wait_until(lambda: quota_check(entitled, 47_293))
    assert check == {"feature_key": "api_quota", "type": "limit", "granted": True, "limit": 600_000,
                     "current_usage": 47_293, "remaining": 552_707, "exceeded": False}


def test_the_full_list_resolves_booleans_custom_values_and_only_live_subscriptions(entitled):
    wait_until(lambda: quota_check(entitled, 47_293))
    body = entitled.get("/v1/entitlements", params={"customer_id": "cust_acme"}).json()
    assert body["customer_id"] == "cust_acme"
    assert body["resolved_at"].endswith("Z")
    by_key = {e["feature_key"]: e for e in body["entitlements"]}
    assert set(by_key) == {"api_quota", "sso", "audit_log", "support_tier"}  # ended and future plans grant nothing
    assert by_key["sso"] == {"feature_key": "sso", "type": "boolean", "granted": True, "value": True,
                             "source_plans": [{"plan_id": "plan_growth", "plan_version": 1},
                                              {"plan_id": "plan_addon_api", "plan_version": 2}]}
    assert by_key["audit_log"]["granted"] is True
    assert by_key["support_tier"]["value"] == "priority"  # the most recently started subscription's value
    assert by_key["api_quota"]["limit"] == 600_000  # the addon subscription is pinned to version 2, not 1


def test_a_limit_is_exceeded_when_usage_passes_it_and_unknown_features_are_not_granted(entitled):
    assert entitled.post("/v1/events", json=event("big", 600_000, ts(timedelta(minutes=-1)))).status_code == 202
    check = wait_until(lambda: quota_check(entitled, 647_293))
    assert (check["granted"], check["exceeded"], check["remaining"]) == (False, True, 0)
    r = entitled.get("/v1/entitlements/check", params={"customer_id": "cust_acme", "feature_key": "nope"})
    assert r.status_code == 200
    assert r.json() == {"feature_key": "nope", "type": None, "granted": False}


def test_entitlement_errors_and_scopes(entitled):
    assert error_of(entitled.get("/v1/entitlements")) == (422, "MISSING_FIELD", "customer_id")
    assert error_of(entitled.get("/v1/entitlements/check", params={"customer_id": "cust_acme"})) == (
        422, "MISSING_FIELD", "feature_key")
    assert error_of(entitled.get("/v1/entitlements", params={"customer_id": "ghost"})) == (
        422, "CUSTOMER_NOT_FOUND", "customer_id")  # a reference in the query, like /v1/usage/summary
    read, ingest = make_key(entitled, "read"), make_key(entitled, "ingest", "i")
    params = {"customer_id": "cust_acme"}
    assert entitled.get("/v1/entitlements", params=params, headers={"Authorization": f"Bearer {read}"}).status_code == 200
    assert error_of(entitled.get("/v1/entitlements", params=params,
                                 headers={"Authorization": f"Bearer {ingest}"}))[:2] == (403, "INSUFFICIENT_SCOPE")
