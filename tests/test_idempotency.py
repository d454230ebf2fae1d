"""Write idempotency (§16): replays, key reuse, body field vs header, per-key scoping."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select

from abaxus.billing.idempotency import CLAIM_ATTEMPTS, STALE_CLAIM_MS, claim
from abaxus.clock import ManualClock, SystemClock
from abaxus.errors import Conflict
from abaxus.store.tables import idempotency_records
from conftest import error_of, make_key
from quickstart_bodies import JSON, METRIC, PLAN_JSON


def test_a_retried_plan_post_does_not_create_a_second_version(client):
    client.post("/v1/metrics", json=METRIC)
    headers = {**JSON, "Idempotency-Key": "plan-growth-v1"}
    first = client.post("/v1/price-plans", content=PLAN_JSON, headers=headers)
    # Same request, reformatted JSON: compared as parsed JSON, so still a replay.
    again = client.post("/v1/price-plans", content=PLAN_JSON.replace(b"\n", b" "), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.json() == first.json()
    assert client.get("/v1/price-plans/plan_growth").json()["version"] == 1


def test_the_same_key_on_a_different_request_is_refused(client):
    client.post("/v1/customers", json={"id": "a", "name": "A"}, headers={"Idempotency-Key": "k"})
    r = client.post("/v1/customers", json={"id": "a", "name": "B"}, headers={"Idempotency-Key": "k"})
    assert error_of(r) == (409, "IDEMPOTENCY_KEY_REUSED", None)
    r = client.patch("/v1/customers/a", json={"id": "a", "name": "A"}, headers={"Idempotency-Key": "k"})
    assert error_of(r)[:2] == (409, "IDEMPOTENCY_KEY_REUSED")


def test_body_field_wins_over_header_and_errors_replay_too(client):
    body = {"id": "bad id", "name": "n", "idempotency_key": "body-key"}
    first = client.post("/v1/customers", json=body, headers={"Idempotency-Key": "header-key"})
    assert error_of(first) == (422, "INVALID_ID", "id")
    again = client.post("/v1/customers", json=body)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    # The header key was never used, so it is free for another request.
    assert client.post("/v1/customers", json={"id": "ok", "name": "n"},
                       headers={"Idempotency-Key": "header-key"}).status_code == 201


def test_keys_are_scoped_per_api_key(client):
    other = make_key(client, "admin", "second-admin")
    r1 = client.post("/v1/customers", json={"id": "one", "name": "n"}, headers={"Idempotency-Key": "shared"})
    r2 = client.post("/v1/customers", json={"id": "two", "name": "n"},
                     headers={"Idempotency-Key": "shared", "Authorization": f"Bearer {other}"})
    assert r1.status_code == r2.status_code == 201


def test_an_oversized_key_is_invalid(client):
    r = client.post("/v1/customers", json={"id": "c", "name": "n"}, headers={"Idempotency-Key": "k" * 256})
    assert error_of(r) == (422, "IDEMPOTENCY_KEY_INVALID", "idempotency_key")


def test_a_claim_abandoned_by_a_dead_request_is_taken_over(client):
    """A process that died mid-request leaves its claim 'running'; after two minutes it is reclaimed."""
    engine = client.app.state.services.engine
    clock = ManualClock(1_800_000_000_000)
    assert claim(engine, "key_dead", "k1", "fp", clock=clock) is None
    clock.advance(STALE_CLAIM_MS)
    with pytest.raises(Conflict) as running:  # two minutes on, not yet stale
        claim(engine, "key_dead", "k1", "fp", clock=clock)
    assert running.value.code == "IDEMPOTENCY_KEY_IN_USE"
    clock.advance(1)
    assert claim(engine, "key_dead", "k1", "fp", clock=clock) is None  # taken over: this request runs
    with pytest.raises(Conflict):  # and it is now the live claim
        claim(engine, "key_dead", "k1", "fp", clock=clock)


def _competing_request(engine, release_times: int):
    """Another request with the same key that claims it just before our insert and releases it
    just before our read, ``release_times`` times (on our connection: SQLite has one writer)."""
    state = {"inserts": 0, "releases": 0}

    def before(conn, cursor, statement, parameters, context, executemany):
        if "idempotency_records" not in statement or state["releases"] >= release_times:
            return
        raw = cursor.connection
        if statement.lstrip().upper().startswith("INSERT"):
            state["inserts"] += 1
            raw.execute("INSERT INTO idempotency_records (api_key_id, key, fingerprint, status, response_body, created_at)"
                        " VALUES ('key_race', 'k', 'other', NULL, NULL, 0)")
        elif statement.lstrip().upper().startswith("SELECT"):
            state["releases"] += 1
            raw.execute("DELETE FROM idempotency_records WHERE api_key_id = 'key_race' AND key = 'k'")

    event.listen(engine, "before_cursor_execute", before)
    return state, lambda: event.remove(engine, "before_cursor_execute", before)


def test_a_claim_released_under_it_is_tried_again_and_wins(client):
    engine = client.app.state.services.engine
    state, stop = _competing_request(engine, release_times=1)
    try:
        assert claim(engine, "key_race", "k", "fp", clock=SystemClock()) is None
    finally:
        stop()
    assert state == {"inserts": 1, "releases": 1}
    with engine.connect() as conn:
        rows = conn.execute(select(idempotency_records.c.fingerprint, idempotency_records.c.status)
                            .where(idempotency_records.c.api_key_id == "key_race")).all()
    assert [tuple(r) for r in rows] == [("fp", None)]  # ours, running


def test_a_key_released_under_every_claim_gives_up_after_a_few_tries_as_in_use(client):
    """It used to recurse without bound (a RecursionError, so a 500, under a storm of retries)."""
    engine = client.app.state.services.engine
    state, stop = _competing_request(engine, release_times=10_000)
    try:
        with pytest.raises(Conflict) as refused:
            claim(engine, "key_race", "k", "fp", clock=SystemClock())
    finally:
        stop()
    assert (refused.value.code, refused.value.status) == ("IDEMPOTENCY_KEY_IN_USE", 409)
    assert CLAIM_ATTEMPTS == 5
    assert state == {"inserts": 5, "releases": 5}
