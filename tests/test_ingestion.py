"""Events through the real dataflow into real chDB: dedup, void, late events, limits."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from litestar.testing import TestClient

from abaxus.api.app import create_app
from abaxus.clock import ManualClock
from conftest import ADMIN_KEY, error_of
from helpers import compute, event, quantity, wait_until
from quickstart_bodies import setup_quickstart_catalog


@pytest.fixture
def acme(app_client):  # type: ignore[no-untyped-def]
    setup_quickstart_catalog(app_client)
    return app_client


def test_single_event_is_accepted_with_a_content_derived_id(acme):
    r = acme.post("/v1/events", json=event("req_7f8a9b2c3d4e5f6a"))
    assert r.status_code == 202
    assert r.json() == {"event_id": "evt_4p4erop5rryigojg47u5ojfyt7", "status": "queued",
                        "idempotency_key": "req_7f8a9b2c3d4e5f6a"}
    assert wait_until(lambda: quantity(acme) == (1, 1))


def test_a_mixed_batch_stores_the_good_events_and_reports_the_bad(acme):
    events = [event("ok-1", 2), event("ok-2", 3),
              event("bad-cust", customer="ghost"), event("bad-metric", metric="ghost"),
              event("bad-ts", ts="2026-04-03T09:30:00"), event("future", ts="2999-01-01T00:00:00Z"),
              event("bad-value", value="1.00000000001"), event("", 1), event("big", 10 ** 18),
              {"customer_id": "cust_acme", "metric_key": "api_calls", "timestamp": "2026-04-03T09:30:00Z"},
              event("extra", colour="red"), event("props", properties={f"p{i}": i for i in range(51)})]
    r = acme.post("/v1/events/batch", json={"events": events})
    assert r.status_code == 207
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, 10)
    errors = {res["index"]: (res["error"]["code"], res["error"]["field"])
              for res in body["results"] if res["status"] == "rejected"}
    assert errors == {
        2: ("CUSTOMER_NOT_FOUND", "events.2.customer_id"), 3: ("METRIC_NOT_FOUND", "events.3.metric_key"),
        4: ("TIMESTAMP_NOT_ZONED", "events.4.timestamp"), 5: ("TIMESTAMP_IN_FUTURE", "events.5.timestamp"),
        6: ("INVALID_DECIMAL", "events.6.value"), 7: ("IDEMPOTENCY_KEY_INVALID", "events.7.idempotency_key"),
        8: ("VALUE_OUT_OF_RANGE", "events.8.value"), 9: ("MISSING_FIELD", "events.9.idempotency_key"),
        10: ("UNKNOWN_FIELD", "events.10.colour"), 11: ("PROPERTIES_INVALID", "events.11.properties"),
    }
    assert wait_until(lambda: quantity(acme) == (5, 2))
    assert 'abaxus_events_rejected_total{code="CUSTOMER_NOT_FOUND"} 1.0' in acme.get("/metrics").text


def test_an_all_bad_batch_is_422_and_limits_are_enforced(acme):
    r = acme.post("/v1/events/batch", json={"events": [event("x", customer="ghost")]})
    assert r.status_code == 422
    assert r.json()["accepted"] == 0
    assert error_of(acme.post("/v1/events/batch", json={"events": [event(f"k{i}") for i in range(1001)]}))[:2] == (
        413, "PAYLOAD_TOO_LARGE")
    assert error_of(acme.post("/v1/events/batch", json={"events": []})) == (422, "VALIDATION_ERROR", "events")
    assert error_of(acme.post("/v1/events", json=event("x", metric="ghost"))) == (422, "METRIC_NOT_FOUND", "metric_key")
    acme.post("/v1/metrics", json={"key": "old", "name": "Old", "aggregation": "count"})
    acme.post("/v1/metrics/old/deactivate")
    assert error_of(acme.post("/v1/events", json=event("y", metric="old"))) == (422, "METRIC_INACTIVE", "metric_key")


def test_duplicates_within_and_across_batches_single_and_backfill_count_once(acme):
    r = acme.post("/v1/events/batch", json={"events": [event("d1", 10), event("d1", 99), event("d2", 1)]})
    assert r.json()["results"][0]["event_id"] == r.json()["results"][1]["event_id"]
    acme.post("/v1/events/batch", json={"events": [event("d1", 50), event("d2", 50)]})
    acme.post("/v1/events", json=event("d2", 70))
    r = acme.post("/v1/events/backfill", json={"events": [event("d1", 5), event("d3", 100), event("d3", 7)]})
    assert r.status_code == 200
    assert [x["status"] for x in r.json()["results"]] == ["duplicate", "stored", "duplicate"]
    # backfill is synchronous: already visible. First payload wins: 10 + 1 + 100.
    assert quantity(acme) == (111, 3)
    # d1 ×2 and d2 in the batches, d2 sent alone, d1 and d3 in the backfill: six refused submissions.
    assert compute(acme)["meta"]["duplicate_count"] == 6


def test_count_metrics_default_value_and_unique_count_properties(acme):
    acme.post("/v1/metrics", json={"key": "logins", "name": "Logins", "aggregation": "count"})
    acme.post("/v1/metrics", json={"key": "seats", "name": "Seats", "aggregation": "unique_count", "property": "user"})
    events = [{"customer_id": "cust_acme", "metric_key": "logins", "timestamp": "2026-04-02T00:00:00Z",
               "idempotency_key": f"l{i}"}
              for i in range(3)]
    events += [event(f"s{i}", metric="seats", properties={"user": u}) for i, u in enumerate([1.0, "1", True, "true", None])]
    acme.post("/v1/events/backfill", json={"events": events})
    assert quantity(acme, "logins") == (3, 3)
    # 1.0 and "1" are one value; true and "true" another; a null property adds nothing.
    assert quantity(acme, "seats") == (2, 5)


def test_a_void_is_excluded_from_usage_and_visible_in_raw_events(acme):
    acme.post("/v1/events/backfill", json={"events": [event("v1", 5), event("v2", 7)]})
    r = acme.post("/v1/events/void", json={"idempotency_keys": ["v1", "later"], "reason": "test data"})
    assert r.status_code == 200
    assert r.json()["voided"] == 1
    assert [x["status"] for x in r.json()["results"]] == ["voided", "pending"]
    assert quantity(acme) == (7, 1)
    raw = {e["idempotency_key"]: e for e in acme.get("/v1/events", params={"customer_id": "cust_acme"}).json()["data"]}
    assert raw["v1"]["voided"] is True
    assert raw["v1"]["void_reason"] == "test data"
    assert raw["v1"]["voided_at"]
    again = acme.post("/v1/events/void", json={"idempotency_keys": ["v1"], "reason": "again"}).json()
    assert again["results"][0]["status"] == "already_voided"
    # The pending void applies when its event arrives.
    acme.post("/v1/events/backfill", json={"events": [event("later", 100)]})
    assert quantity(acme) == (7, 1)


def test_a_late_event_counts_in_its_true_period(acme):
    acme.post("/v1/events/backfill", json={"events": [event("march", 4, ts="2026-03-15T00:00:00Z"),
                                                      event("april", 6, ts="2026-04-30T23:59:59.999Z")]})
    assert quantity(acme, start="2026-03-01T00:00:00Z", end="2026-03-31T23:59:59Z") == (4, 1)
    april = compute(acme)
    assert (april["data"][0]["quantity"], april["meta"]["late_event_count"]) == (6, 1)


def test_summary_and_compute_agree_once_caught_up(acme):
    acme.post("/v1/events/batch", json={"events": [event(f"a{i}", str(Decimal("0.1") * i)) for i in range(50)]})
    wait_until(lambda: quantity(acme)[1] == 50)
    s = acme.get("/v1/usage/summary", params={"customer_id": "cust_acme", "from": "2026-04-01T00:00:00Z",
                                              "to": "2026-04-30T23:59:59Z"}).json()
    c = compute(acme)
    assert s["data"][0]["quantity"] == c["data"][0]["quantity"] == 122.5
    assert s["data"][0]["event_count"] == c["data"][0]["event_count"] == 50
    assert s["meta"]["lag_seconds"] == 0


def test_events_list_pages_newest_first(acme):
    acme.post("/v1/events/backfill", json={"events": [event(f"p{i}", ts=f"2026-04-0{i + 1}T00:00:00Z") for i in range(5)]})
    seen, cursor = [], None
    while True:
        page = acme.get("/v1/events", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [e["idempotency_key"] for e in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["p4", "p3", "p2", "p1", "p0"]
    assert error_of(acme.get("/v1/events", params={"cursor": "nonsense"})) == (422, "INVALID_CURSOR", "cursor")


def test_duplicates_after_a_restart_count_once(embedded_settings):
    with TestClient(create_app(embedded_settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        setup_quickstart_catalog(c)
        c.post("/v1/events/batch", json={"events": [event("r1", 1), event("r2", 2)]})
        wait_until(lambda: quantity(c) == (3, 2))
    with TestClient(create_app(embedded_settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        c.post("/v1/events/batch", json={"events": [event("r1", 100), event("r3", 3)]})
        assert quantity(c) == (6, 3)  # exact usage waits for every acknowledged event


def test_committed_log_segments_are_deleted_and_a_restart_still_resumes(embedded_settings):
    settings = embedded_settings.with_(log_segment_bytes=32 * 1024)
    log_dir = settings.data_dir / "log"
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        setup_quickstart_catalog(c)
        for b in range(12):  # ~30 KB a record: a new segment every record or two
            r = c.post("/v1/events/batch", json={"events": [event(f"seg{b}-{i}", 1) for i in range(500)]})
            assert r.status_code == 202
        wait_until(lambda: quantity(c) == (6000, 6000))
        written = max(int(p.stem) for p in log_dir.glob("*.seg"))
        assert written >= 5  # the log did roll over many segments...
        wait_until(lambda: len(list(log_dir.glob("*.seg"))) <= 2)  # ...and kept only what is not committed
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        r = c.post("/v1/events/batch", json={"events": [event("seg0-0", 100), event("after-restart", 7)]})
        assert r.status_code == 202
        assert quantity(c) == (6007, 6001)  # exact usage waits for every acknowledged event


def test_a_resent_event_counts_once_however_much_later_and_after_a_restart(embedded_settings):
    clock = ManualClock(time.time_ns() // 1_000_000)
    settings = embedded_settings.with_(clock=clock)
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        setup_quickstart_catalog(c)
        c.post("/v1/events/backfill", json={"events": [event("w1", 1)]})
        clock.advance(30 * 86_400_000)  # a month later: the usage store still knows the key
        r = c.post("/v1/events/backfill", json={"events": [event("w1", 5), event("w0", 1)]})
        assert [x["status"] for x in r.json()["results"]] == ["duplicate", "stored"]
    with TestClient(create_app(settings)) as c:  # a restart: the filter is rebuilt from the stored event ids
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        r = c.post("/v1/events/backfill", json={"events": [event("w1", 9), event("w0", 9), event("w2", 2)]})
        assert [x["status"] for x in r.json()["results"]] == ["duplicate", "duplicate", "stored"]
        assert quantity(c) == (4, 3)


def test_summary_reads_pre_aggregated_hours_and_stays_exact_through_voids(acme):
    acme.post("/v1/metrics", json={"key": "hits", "name": "Hits", "aggregation": "count"})
    events = [event(f"h{i}", i + 1, ts=f"2026-04-0{1 + i % 3}T1{i % 10}:{i % 60:02d}:00Z") for i in range(30)]
    events += [event(f"hc{i}", metric="hits", ts="2026-04-02T10:15:00Z") for i in range(4)]
    acme.post("/v1/events/batch", json={"events": events})
    acme.post("/v1/events/void", json={"idempotency_keys": ["h3", "h4", "hc0", "pending-x"], "reason": "test"})
    acme.post("/v1/events/batch", json={"events": [event("pending-x", 1000)]})
    wait_until(lambda: quantity(acme)[1] == 28)

    def both(start: str, end: str) -> tuple[dict, dict]:  # type: ignore[type-arg]
        s = acme.get("/v1/usage/summary", params={"customer_id": "cust_acme", "from": start, "to": end}).json()
        c = compute(acme, start=start, end=end)
        key = lambda d: {r["metric_key"]: (r["quantity"], r["event_count"]) for r in d["data"]}  # noqa: E731
        return key(s), key(c)

    for start, end in [("2026-04-01T00:00:00Z", "2026-04-30T23:59:59Z"),       # whole hours
                       ("2026-04-01T10:30:00Z", "2026-04-02T11:45:59Z"),       # partial hours at both edges
                       ("2026-04-02T10:10:00Z", "2026-04-02T10:20:00Z")]:      # inside one hour
        summary, exact = both(start, end)
        assert summary == exact, (start, end)
    summary, _ = both("2026-04-01T00:00:00Z", "2026-04-30T23:59:59Z")
    assert summary["hits"] == (3, 3)
    assert summary["api_calls"][1] == 28
