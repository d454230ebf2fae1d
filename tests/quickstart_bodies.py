"""The Quick Start request bodies exactly as the spec's walk-through (§19) prints them."""

METRIC = {"key": "api_calls", "name": "API Calls", "aggregation": "sum",
          "description": "Total API calls made during the billing period"}
PLAN_JSON = b"""{"id": "plan_growth", "name": "Growth", "currency": "usd", "billing_period": "monthly", "charges": [
 {"metric_key": "api_calls", "pricing_model": "tiered", "tiers": [
  {"up_to": 100000, "unit_price": 0}, {"up_to": 1000000, "unit_price": 0.0001}, {"up_to": null, "unit_price": 0.00005}]},
 {"metric_key": null, "pricing_model": "flat_fee", "amount": 49.00, "description": "Growth base fee"}]}"""
CUSTOMER = {"id": "cust_acme", "name": "Acme Corp", "email": "billing@acme.io", "payment_provider": "stripe",
            "payment_provider_customer_id": "cus_stripe_acme123"}
SUBSCRIPTION = {"customer_id": "cust_acme", "plan_id": "plan_growth", "start_date": "2026-04-01T00:00:00Z"}
JSON = {"Content-Type": "application/json"}


def setup_quickstart_catalog(client) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """Steps 1–4; returns the subscription."""
    assert client.post("/v1/metrics", json=METRIC).status_code == 201
    assert client.post("/v1/price-plans", content=PLAN_JSON, headers=JSON).status_code == 201
    assert client.post("/v1/customers", json=CUSTOMER).status_code == 201
    r = client.post("/v1/subscriptions", json=SUBSCRIPTION)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]
