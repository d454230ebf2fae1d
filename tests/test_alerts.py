"""Usage alerts: usage sent over HTTP crosses a threshold once, and exactly one ``alert.triggered`` follows.

The HTTP test runs a real ``abaxus serve`` (alerts evaluated every 0.5 s) on SQLite and on
PostgreSQL, with a loopback receiver. The spend and per-period tests run the app over ASGI
and drive a second evaluator on the same stores round by round, at instants they choose.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from abaxus.api.app import create_app
from abaxus.billing.alerts import AlertEvaluator
from abaxus.settings import Settings
from abaxus.timefmt import add_months, format_ms, now_ms
from conftest import ADMIN_KEY, _reset_pg, error_of
from helpers import wait_until
from server_process import ServerProcess
from test_webhooks import Receiver, assert_signed, deliveries, endpoint

METRIC = {"key": "api_calls", "name": "API Calls", "aggregation": "sum"}
PLAN = {"id": "plan_metered", "name": "Metered", "currency": "usd", "billing_period": "monthly", "charges": [
    {"metric_key": "api_calls", "pricing_model": "per_unit", "unit_price": "0.01"},
    {"metric_key": None, "pricing_model": "flat_fee", "amount": "1.00"}]}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def setup(c: Any) -> dict[str, Any]:
    """A customer on a per-unit plan (0.01 usd a call, 1.00 usd a month) whose current period began 2 days ago."""
    start = (now_ms() - 2 * 86_400_000) // 1000 * 1000
    assert c.post("/v1/metrics", json=METRIC).status_code == 201
    assert c.post("/v1/price-plans", json=PLAN).status_code == 201
    assert c.post("/v1/customers", json={"id": "cust_acme", "name": "Acme"}).status_code == 201
    r = c.post("/v1/subscriptions", json={"customer_id": "cust_acme", "plan_id": "plan_metered",
                                          "start_date": format_ms(start)})
    assert r.status_code == 201, r.text
    return {"start": start, "end": add_months(start, 1)}


def usage_event(key: str, value: int) -> dict[str, Any]:
    return {"customer_id": "cust_acme", "metric_key": "api_calls", "value": value,
            "timestamp": format_ms(now_ms() - 60_000), "idempotency_key": key}


def alert(c: Any, **body: Any) -> dict[str, Any]:
    r = c.post("/v1/alerts", json={"customer_id": "cust_acme", **body})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def stored_quantity(c: Any, period: dict[str, Any]) -> Any:
    r = c.post("/v1/usage/compute", json={"customer_id": "cust_acme", "metric_key": "api_calls",
                                          "period_start": format_ms(period["start"]),
                                          "period_end": format_ms(period["end"] - 1000)})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    return data[0]["quantity"] if data else 0


# ---- over HTTP, a real server ------------------------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    env = {"ABAXUS_ALERT_INTERVAL": "0.5", "ABAXUS_EPOCH_SECONDS": "1", "ABAXUS_WEBHOOK_RETRY_BASE": "0.2"}
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_database")
        _reset_pg(url)
        env["ABAXUS_DATABASE_URL"] = url
    proc = ServerProcess(tmp_path / "data", ADMIN_KEY, extra_env=env)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_usage_sent_over_http_crossing_the_threshold_fires_exactly_once(server: ServerProcess, receiver: Receiver):
    with server.client() as c:
        hook = endpoint(c, receiver.url, ["alert.triggered"])
        period = setup(c)
        watched = alert(c, kind="usage", metric_key="api_calls", threshold=100)
        assert (watched["id"][:4], watched["status"], watched["last_triggered_at"]) == ("alr_", "active", None)

        assert c.post("/v1/events", json=usage_event("e1", 60)).status_code == 202
        wait_until(lambda: stored_quantity(c, period) == 60, timeout=30)
        assert c.post("/v1/events", json=usage_event("e2", 50)).status_code == 202
        wait_until(lambda: stored_quantity(c, period) == 110, timeout=30)
        stored_at = time.monotonic()
        fired = wait_until(lambda: c.get(f"/v1/alerts/{watched['id']}").json()["last_triggered_at"], timeout=60)
        assert time.monotonic() - stored_at < 60

        # More usage in the same period: it stays fired. A sentinel alert at 200 proves the
        # evaluator has looked again after that usage was stored.
        sentinel = alert(c, kind="usage", metric_key="api_calls", threshold=200)
        assert c.post("/v1/events", json=usage_event("e3", 100)).status_code == 202
        wait_until(lambda: stored_quantity(c, period) == 210, timeout=30)
        wait_until(lambda: c.get(f"/v1/alerts/{sentinel['id']}").json()["last_triggered_at"], timeout=60)
        wait_until(lambda: len(receiver.events("alert.triggered")) == 2
                   and {d["status"] for d in deliveries(c, hook["id"])} == {"succeeded"}, timeout=30)

        got = c.get(f"/v1/alerts/{watched['id']}").json()
        assert got["last_triggered_at"] == fired
        assert (got["triggered_period_start"], got["triggered_period_end"]) == (
            format_ms(period["start"]), format_ms(period["end"] - 1000))
        assert got["triggered_value"] == 110

    events = {e["data"]["alert_id"]: e for e in receiver.events("alert.triggered")}
    assert set(events) == {watched["id"], sentinel["id"]}
    first = events[watched["id"]]
    assert first["id"].startswith("whev_")
    assert first["id"] != events[sentinel["id"]]["id"]
    assert first["data"] == {
        "alert_id": watched["id"], "customer_id": "cust_acme", "kind": "usage", "metric_key": "api_calls",
        "threshold": 100, "value": 110, "currency": None, "subscription_id": first["data"]["subscription_id"],
        "period_start": format_ms(period["start"]), "period_end": format_ms(period["end"] - 1000), "triggered_at": fired}
    assert events[sentinel["id"]]["data"]["value"] == 210
    assert len(receiver.requests) == 2  # each event delivered once: nothing fired twice
    for request in receiver.requests:
        assert_signed(request, hook["secret"])
        assert json.loads(request["body"])["type"] == "alert.triggered"


# ---- round by round, over ASGI ---------------------------------------------------------------
@pytest.fixture
def app(tmp_path: Path, database_url: str | None) -> Iterator[TestClient[Any]]:
    """The app whose own evaluator waits an hour between rounds: the tests drive the rounds."""
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, bootstrap_key=ADMIN_KEY,
                        log_format="console", epoch_seconds=1.0, alert_interval_seconds=3600.0)
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        yield c


def evaluator(app: TestClient[Any]) -> AlertEvaluator:
    """A second evaluator on the app's own stores (the settings only set its interval, unused here)."""
    services = app.app.state.services
    return AlertEvaluator(services.engine, services.usage, services.ingestion.metrics, services.settings)


def backfill(app: TestClient[Any], key: str, value: int) -> None:
    r = app.post("/v1/events/backfill", json={"events": [usage_event(key, value)]})
    assert r.status_code == 200, r.text


def test_spend_alerts_fire_once_per_period_at_the_priced_value(app: TestClient[Any], receiver: Receiver):
    hook = endpoint(app, receiver.url, ["alert.triggered"])
    period = setup(app)
    rounds = evaluator(app)
    total = alert(app, kind="spend", threshold=150)  # all charges: 1.00 usd fee + 0.01 usd a call
    calls = alert(app, kind="spend", threshold=100, metric_key="api_calls")  # the api_calls line only
    assert rounds.evaluate_once() == []  # 100 cents of fee, no calls yet

    backfill(app, "s1", 60)
    [fired] = rounds.evaluate_once()
    assert (fired["alert_id"], fired["value"], fired["currency"]) == (total["id"], Decimal(160), "usd")
    backfill(app, "s2", 50)
    [fired] = rounds.evaluate_once()
    assert (fired["alert_id"], fired["value"], fired["threshold"]) == (calls["id"], Decimal(110), Decimal(100))
    backfill(app, "s3", 500)
    assert rounds.evaluate_once() == []  # both fired for this period
    assert rounds.evaluate_once() == []

    # The next period: the fee alone is 100 < 150, the calls line 0: nothing fires until it is crossed again.
    later = period["end"] + 3_600_000
    assert rounds.evaluate_once(now=later) == []
    low = alert(app, kind="spend", threshold=100)
    [fired] = rounds.evaluate_once(now=later)
    assert fired["alert_id"] == low["id"]
    assert fired["period_start"] == format_ms(period["end"])
    assert rounds.evaluate_once(now=later) == []

    got = app.get(f"/v1/alerts/{total['id']}").json()
    assert (got["triggered_period_start"], got["triggered_value"], got["threshold"]) == (format_ms(period["start"]), 160, 150)
    # The low alert fired in the next period only (in this one it was created after the evaluations).
    assert app.get(f"/v1/alerts/{low['id']}").json()["triggered_period_start"] == format_ms(period["end"])
    wait_until(lambda: len(receiver.events("alert.triggered")) == 3, timeout=30)
    assert sorted(e["data"]["alert_id"] for e in receiver.events()) == sorted([total["id"], calls["id"], low["id"]])
    assert len(deliveries(app, hook["id"])) == 3


def test_alerts_are_validated_listed_and_disabled_for_good(app: TestClient[Any]):
    setup(app)
    rounds = evaluator(app)
    body = {"customer_id": "cust_acme", "kind": "usage", "metric_key": "api_calls", "threshold": 10}
    assert error_of(app.post("/v1/alerts", json={**body, "customer_id": "cust_nobody"})) \
        == (422, "CUSTOMER_NOT_FOUND", "customer_id")
    assert error_of(app.post("/v1/alerts", json={**body, "metric_key": "nope"})) == (422, "METRIC_NOT_FOUND", "metric_key")
    assert error_of(app.post("/v1/alerts", json={**body, "metric_key": None})) == (422, "MISSING_FIELD", "metric_key")
    assert error_of(app.post("/v1/alerts", json={**body, "threshold": 0})) == (422, "VALUE_OUT_OF_RANGE", "threshold")
    assert error_of(app.post("/v1/alerts", json={**body, "threshold": "0.00000000001"})) \
        == (422, "INVALID_DECIMAL", "threshold")
    assert error_of(app.post("/v1/alerts", json={**body, "kind": "spend", "threshold": 10.5})) \
        == (422, "INVALID_FIELD", "threshold")
    assert error_of(app.post("/v1/alerts", json={**body, "kind": "budget"})) == (422, "INVALID_FIELD", "kind")
    assert error_of(app.post("/v1/alerts", json={k: v for k, v in body.items() if k != "kind"})) \
        == (422, "MISSING_FIELD", "kind")
    assert error_of(app.get("/v1/alerts/alr_nope")) == (404, "ALERT_NOT_FOUND", None)

    kept = alert(app, kind="usage", metric_key="api_calls", threshold="2.5")
    dropped = alert(app, kind="usage", metric_key="api_calls", threshold=1)
    assert kept["threshold"] == 2.5
    assert kept["triggered_value"] is None
    assert [a["id"] for a in app.get("/v1/alerts", params={"customer_id": "cust_acme"}).json()["data"]] == [
        dropped["id"], kept["id"]]
    assert app.get("/v1/alerts", params={"customer_id": "cust_other"}).json() == {"data": [], "next_cursor": None}
    off = app.delete(f"/v1/alerts/{dropped['id']}")
    assert off.status_code == 200
    assert off.json()["status"] == "disabled"
    assert off.json()["disabled_at"]
    assert app.delete(f"/v1/alerts/{dropped['id']}").json() == off.json()

    backfill(app, "v1", 3)
    assert [f["alert_id"] for f in rounds.evaluate_once()] == [kept["id"]]  # the disabled one never fires
    assert app.get(f"/v1/alerts/{dropped['id']}").json()["last_triggered_at"] is None
