"""The catalog over the real app: Quick Start steps 1–4, versions, deprecation, lists."""

from __future__ import annotations

import re

from sqlalchemy import insert

from abaxus.store.tables import plan_versions
from conftest import error_of
from quickstart_bodies import CUSTOMER, JSON, METRIC, PLAN_JSON, SUBSCRIPTION, setup_quickstart_catalog

ULID = r"[0-9a-hjkmnp-tv-z]{26}"
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z"


def test_quickstart_steps_1_to_4_answer_with_the_spec_fields(client):
    r = client.post("/v1/metrics", json=METRIC)
    assert r.status_code == 201
    m = r.json()
    assert re.fullmatch(f"met_{ULID}", m.pop("id"))
    assert re.fullmatch(TS, m.pop("created_at"))
    assert m == {"key": "api_calls", "name": "API Calls", "aggregation": "sum", "property": None, "percentile": None,
                 "description": "Total API calls made during the billing period", "status": "active"}

    r = client.post("/v1/price-plans", content=PLAN_JSON, headers=JSON)
    assert r.status_code == 201, r.text
    plan = r.json()
    assert re.fullmatch(TS, plan.pop("effective_from"))
    assert re.fullmatch(TS, plan.pop("created_at"))
    assert plan == {
        "id": "plan_growth", "version": 1, "name": "Growth", "status": "active", "currency": "usd",
        "billing_period": "monthly",
        "charges": [
            {"id": "chg_1", "metric_key": "api_calls", "pricing_model": "tiered", "description": "API Calls (tiered)",
             "tiers": [{"up_to": 100000, "unit_price": "0.00", "flat_amount": "0.00"},
                       {"up_to": 1000000, "unit_price": "0.0001", "flat_amount": "0.00"},
                       {"up_to": None, "unit_price": "0.00005", "flat_amount": "0.00"}]},
            {"id": "chg_2", "metric_key": None, "pricing_model": "flat_fee", "description": "Growth base fee",
             "amount": "49.00"}],
        "entitlements": [], "changelog": None, "deprecated_at": None}

    r = client.post("/v1/customers", json=CUSTOMER)
    assert r.status_code == 201
    c = r.json()
    assert c.pop("created_at") == c.pop("updated_at")
    assert c == {**CUSTOMER, "currency": None, "payment_method_id": None, "metadata": {}}

    r = client.post("/v1/subscriptions", json=SUBSCRIPTION)
    assert r.status_code == 201
    s = r.json()
    assert re.fullmatch(f"sub_{ULID}", s.pop("id"))
    assert re.fullmatch(TS, s.pop("created_at"))
    assert s == {"customer_id": "cust_acme", "plan_id": "plan_growth", "plan_version": 1, "status": "active",
                 "start_date": "2026-04-01T00:00:00Z", "end_date": None}


def test_reposting_a_plan_makes_version_2_and_the_subscription_stays_on_1(client):
    sub = setup_quickstart_catalog(client)
    r = client.post("/v1/price-plans", content=PLAN_JSON, headers=JSON)
    assert r.json()["version"] == 2
    assert r.json()["status"] == "active"
    v1 = client.get("/v1/price-plans/plan_growth/versions/1").json()
    assert v1["status"] == "superseded"
    assert client.get("/v1/price-plans/plan_growth").json()["version"] == 2
    assert client.get(f"/v1/subscriptions/{sub['id']}").json()["plan_version"] == 1
    new_sub = client.post("/v1/subscriptions", json=SUBSCRIPTION).json()
    assert new_sub["plan_version"] == 2


def test_a_deprecated_version_refuses_new_subscriptions_and_keeps_existing_ones(client):
    sub = setup_quickstart_catalog(client)
    r = client.post("/v1/price-plans/plan_growth/versions/1/deprecate")
    assert r.status_code == 200
    assert r.json()["status"] == "deprecated"
    assert r.json()["deprecated_at"]
    assert error_of(client.post("/v1/subscriptions", json={**SUBSCRIPTION, "plan_version": 1})) == (
        422, "PLAN_VERSION_DEPRECATED", "plan_version")
    assert error_of(client.post("/v1/subscriptions", json=SUBSCRIPTION))[:2] == (422, "PLAN_VERSION_DEPRECATED")
    kept = client.get(f"/v1/subscriptions/{sub['id']}").json()
    assert kept["plan_version"] == 1
    assert kept["status"] == "active"


def test_scheduled_version_is_not_the_default_until_it_takes_effect(client):
    setup_quickstart_catalog(client)
    body = PLAN_JSON[:-1] + b', "effective_from": "2199-01-01T00:00:00Z"}'
    r = client.post("/v1/price-plans", content=body, headers=JSON)
    assert r.json()["status"] == "scheduled"
    assert client.get("/v1/price-plans/plan_growth/versions/1").json()["status"] == "active"
    assert client.post("/v1/subscriptions", json=SUBSCRIPTION).json()["plan_version"] == 1


def test_lists_page_newest_first_with_cursors(client):
    for i in range(5):
        assert client.post("/v1/customers", json={"id": f"c{i}", "name": f"C{i}"}).status_code == 201
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/customers", params=params).json()
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["c4", "c3", "c2", "c1", "c0"]
    foreign = client.get("/v1/metrics", params={"limit": 1}).json()["next_cursor"]
    assert foreign is None
    metrics_cursor = client.get("/v1/customers", params={"limit": 1}).json()["next_cursor"]
    assert error_of(client.get("/v1/metrics", params={"cursor": metrics_cursor})) == (422, "INVALID_CURSOR", "cursor")
    assert error_of(client.get("/v1/customers", params={"limit": 0})) == (422, "INVALID_FIELD", "limit")


def test_metric_lifecycle_and_filters(client):
    client.post("/v1/metrics", json=METRIC)
    client.post("/v1/metrics", json={"key": "seats", "display_name": "Seats", "aggregation_type": "unique_count",
                                     "property": "user_id"})
    client.post("/v1/metrics", json={"key": "p95", "name": "Latency", "aggregation": "percentile", "percentile": 99.9})
    assert client.get("/v1/metrics/p95").json()["percentile"] == 99.9
    r = client.post("/v1/metrics/seats/deactivate")
    assert r.json()["status"] == "inactive"
    assert [m["key"] for m in client.get("/v1/metrics", params={"status": "inactive"}).json()["data"]] == ["seats"]
    assert len(client.get("/v1/metrics", params={"status": "active"}).json()["data"]) == 2
    assert error_of(client.get("/v1/metrics/nope")) == (404, "METRIC_NOT_FOUND", None)


def test_customer_patch_replaces_clears_and_refuses_frozen_fields(client):
    client.post("/v1/customers", json={**CUSTOMER, "metadata": {"tier": "gold", "region": "eu"}})
    r = client.patch("/v1/customers/cust_acme", json={"name": "Acme Inc", "email": None, "metadata": {"tier": "platinum"}})
    assert r.status_code == 200, r.text
    c = r.json()
    assert (c["name"], c["email"], c["metadata"]) == ("Acme Inc", None, {"tier": "platinum"})
    assert c["payment_provider_customer_id"] == "cus_stripe_acme123"
    assert client.get("/v1/customers/cust_acme").json() == c
    assert error_of(client.patch("/v1/customers/cust_acme", json={"currency": "eur"})) == (422, "INVALID_FIELD", "currency")
    assert error_of(client.patch("/v1/customers/cust_acme", json={"id": "x"})) == (422, "INVALID_FIELD", "id")
    assert error_of(client.patch("/v1/customers/nobody", json={"name": "x"})) == (404, "CUSTOMER_NOT_FOUND", None)


def test_subscription_lists_filter_by_customer_and_status(client):
    setup_quickstart_catalog(client)
    client.post("/v1/customers", json={"id": "cust_b", "name": "B"})
    client.post("/v1/subscriptions", json={"customer_id": "cust_b", "plan_id": "plan_growth",
                                           "start_date": "2020-01-01T00:00:00Z", "end_date": "2020-06-01T00:00:00Z"})
    assert [s["customer_id"] for s in client.get("/v1/subscriptions",
                                                 params={"customer_id": "cust_b"}).json()["data"]] == ["cust_b"]
    ended = client.get("/v1/subscriptions", params={"status": "ended"}).json()["data"]
    assert [s["status"] for s in ended] == ["ended"]
    assert [s["customer_id"] for s in client.get("/v1/subscriptions",
                                                 params={"status": "active"}).json()["data"]] == ["cust_acme"]


def test_api_keys_are_shown_once_and_revocation_is_immediate(client):
    r = client.post("/v1/api-keys", json={"name": "ci", "scope": "read", "mode": "test"})
    assert r.status_code == 201
    key = r.json()
    assert re.fullmatch(r"sk_test_[A-Za-z0-9]{40}", key["secret"])
    assert key["revoked_at"] is None
    listed = client.get("/v1/api-keys").json()["data"]
    assert all("secret" not in k for k in listed)
    assert key["id"] in [k["id"] for k in listed]
    auth = {"Authorization": f"Bearer {key['secret']}"}
    assert client.get("/v1/metrics", headers=auth).status_code == 200
    r = client.delete(f"/v1/api-keys/{key['id']}")
    assert r.status_code == 200
    assert r.json()["revoked_at"]
    assert error_of(client.get("/v1/metrics", headers=auth)) == (401, "UNAUTHENTICATED", None)
    assert error_of(client.delete("/v1/api-keys/key_nope")) == (404, "API_KEY_NOT_FOUND", None)


def test_a_version_stored_before_charges_were_a_tagged_union_reads_back(client):
    """Versions stored earlier list every model's price fields, the unused ones null."""
    legacy = ('[{"id":"chg_1","metric_key":"api_calls","pricing_model":"package","description":"Calls (package)",'
              '"unit_price":null,"tiers":null,"package_size":"1000","package_price":"8","amount":null},'
              '{"id":"fee","metric_key":null,"pricing_model":"flat_fee","description":"Base","unit_price":null,'
              '"tiers":null,"package_size":null,"package_price":null,"amount":"49"}]')
    with client.app.state.services.engine.begin() as conn:
        conn.execute(insert(plan_versions).values(
            plan_id="plan_old", version=1, name="Old", currency="usd", billing_period="monthly", charges=legacy,
            entitlements="[]", changelog=None, effective_from=0, created_at=0, deprecated_at=None, minimum=None))
    charges = client.get("/v1/price-plans/plan_old").json()["charges"]
    assert charges == [
        {"id": "chg_1", "metric_key": "api_calls", "pricing_model": "package", "description": "Calls (package)",
         "package_size": 1000, "package_price": "8.00"},
        {"id": "fee", "metric_key": None, "pricing_model": "flat_fee", "description": "Base", "amount": "49.00"}]


def test_a_charge_refuses_the_fields_of_other_models_and_names_them(client):
    body = {"id": "p", "name": "P", "currency": "usd", "billing_period": "monthly",
            "charges": [{"pricing_model": "flat_fee", "amount": 1, "unit_price": 2}]}
    r = client.post("/v1/price-plans", json=body)
    assert error_of(r) == (422, "INVALID_FIELD", "charges.0.unit_price")
    assert r.json()["error"]["message"] == "'unit_price' is not used when pricing_model is 'flat_fee'; remove it."
    body["charges"] = [{"pricing_model": "flat_fee", "amount": 1, "colour": "red"}]
    assert error_of(client.post("/v1/price-plans", json=body)) == (422, "UNKNOWN_FIELD", "charges.0.colour")
