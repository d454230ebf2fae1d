"""The intake's fast path answers as the slow path does, or leaves the batch to it (issue 11).

``EventValidator.validate_batch`` checks whole columns and returns ``None`` on any doubt;
``validate`` reads events one by one and names each bad one. For random batches, good and bad
mixed (a seeded hypothesis run), the fast path either returns ``None`` or exactly the slow
path's answer for the same events: the same accepted indexes, ids and keys, and the same Arrow
batch (both paths read one ``ManualClock``, so even ``accepted_at`` agrees). Every kind of bad
event sends its batch to the slow path, which names it; common good batches stay on the fast
path. The catalog is a real SQLite metadata store filled through the billing functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abaxus.billing.customers import create_customer
from abaxus.billing.metrics import create_metric, deactivate_metric
from abaxus.clock import ManualClock
from abaxus.pipeline.catalog_view import CatalogView
from abaxus.pipeline.intake import EventValidator
from abaxus.schemas.catalog import CustomerCreate, MetricCreate
from abaxus.schemas.events import EventBatchIn
from abaxus.store.metadata import migrate, open_engine

NOW = "2026-04-15T12:00:00Z"
NOW_MS = 1_776_254_400_000  # NOW in milliseconds
EXAMPLES = 300


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventValidator]:
    """Two customers; metrics that sum, count and count uniques; one deactivated; a fixed clock."""
    engine = open_engine(f"sqlite:///{Path(tmp_path_factory.mktemp('fast')) / 'metadata.db'}")
    migrate(engine)
    clock = ManualClock(NOW_MS)
    for cid in ("cust_a", "cust_b"):
        create_customer(engine, CustomerCreate(id=cid, name=cid), clock=clock)
    for key, aggregation, prop in (("api_calls", "sum", None), ("logins", "count", None), ("seats", "unique_count", "user"),
                                   ("old", "sum", None)):
        create_metric(engine, MetricCreate(key=key, name=key, aggregation=aggregation, property=prop), clock=clock)
    deactivate_metric(engine, "old", clock=clock)
    yield EventValidator(CatalogView(engine), clock=clock)
    engine.dispose()


# ---- bodies ---------------------------------------------------------------------------------
def body_of(events: list[dict[str, str]]) -> bytes:
    """A batch body from events whose members are JSON texts already (so 1e400 can be sent)."""
    return ('{"events": [' + ", ".join("{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in e.items()) + "}"
                                        for e in events) + "]}").encode("utf-8", "surrogatepass")


def j(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def good(key: str, value: Any = 1, **members: Any) -> dict[str, str]:
    event = {"customer_id": j("cust_a"), "metric_key": j("api_calls"), "value": j(value), "timestamp": j(NOW),
             "idempotency_key": j(key), "properties": j({"region": "eu"})}
    event.update({k: j(v) for k, v in members.items()})
    return event


GOOD_VALUES = [j(v) for v in (0, 1, 7, -3, 10**17, 999_999_999_999_999_999, -999_999_999_999_999_999, "12.5", "0.0000000001",
                              "-4.25", "999999999999999999.9999999999", "1.00000000000", "1e3", "+7", ".5", "5.", "0012")]
BAD_VALUES = [j(v) for v in (10**18, -(10**18), "1000000000000000000", "1.00000000001", "NaN", "Infinity", " 5", "5_0",
                             "\u0665", "", "abc", True, [1], {"v": 1}, 2**64)] + ["1e400", "-1e400", "1e-400", "1.5e-11",
                                                                                   '"\\u0031"', "null"]
GOOD_STAMPS = [j(t) for t in (NOW, "2026-04-15T12:04:59.999Z", "2026-04-15T14:03:00+02:00", "1970-01-01T00:00:00Z",
                              "2026-04-15T12:00:00.123456Z", "2026-04-15t12:00:00z", "2026-04-15 11:00:00-01:00",
                              "2026-04-01T00:00:00.1234567Z", "2025-12-31T23:59:59+0100")]
BAD_STAMPS = [j(t) for t in ("2026-04-15T12:05:00.001Z", "2026-04-15T12:00:00", "1969-12-31T23:59:59.9995Z",
                             "2999-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-04-15T12:00:60Z", "yesterday", 1_776_254_400)]
PROPERTY_VALUES = st.one_of(st.text(max_size=8), st.integers(-(10**20), 10**20),
                            st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(),
                            st.sampled_from(["\x01" * 1400, "é" * 3000, "x" * 8200, '"\\' * 2000]))
PROPERTIES = st.one_of(
    st.just(None), st.just("absent"),
    st.dictionaries(st.text(max_size=6), PROPERTY_VALUES, max_size=4),
    st.dictionaries(st.text(min_size=1, max_size=3), st.text(max_size=3), min_size=48, max_size=52),
)


def fits(properties: object) -> bool:
    """Properties a good event may carry: at most 50, at most 8 KB as compact JSON."""
    return not isinstance(properties, dict) or (len(properties) <= 50 and len(msgspec.json.encode(properties)) <= 8192)


@st.composite
def events(draw: st.DrawFn, bad: bool) -> dict[str, str]:
    """One event: with ``bad``, any member may be off (each rarely, so most batches mix)."""
    def pick(good_choices: list[str], bad_choices: list[str]) -> str:
        return draw(st.sampled_from(bad_choices if bad and draw(st.integers(0, 39)) == 0 else good_choices))

    key = draw(st.text(min_size=1, max_size=20) | st.sampled_from(["k" * 255] + (["", "k" * 256] if bad else [])))
    event = {"customer_id": pick([j("cust_a"), j("cust_b")], [j("ghost"), j(""), "null", "5"]),
             "metric_key": pick([j("api_calls"), j("logins"), j("seats")], [j("old"), j("nope")]),
             "timestamp": pick(GOOD_STAMPS, BAD_STAMPS), "idempotency_key": j(key)}
    if draw(st.integers(0, 5)) or (event["metric_key"] == j("api_calls") and not bad):
        event["value"] = pick(GOOD_VALUES, BAD_VALUES)
    props = draw(PROPERTIES if bad else PROPERTIES.filter(fits))
    if props != "absent":
        event["properties"] = j(props)
    if bad and draw(st.integers(0, 30)) == 0:
        event["colour"] = j("red")
    return event


FAULTS: list[tuple[str, list[str]]] = [
    ("customer_id", [j("ghost"), j(""), "null"]), ("metric_key", [j("old"), j("nope")]), ("timestamp", BAD_STAMPS),
    ("value", BAD_VALUES), ("idempotency_key", [j(""), j("k" * 256)]),
    ("properties", [j({f"p{i}": i for i in range(51)}), j({"k": "x" * 8185}), j({"k": "\x01" * 1400}), "[]"]),
]


@st.composite
def one_fault(draw: st.DrawFn) -> list[dict[str, str]]:
    """Good events, one of which has one member off: the batch the fast path must not pass."""
    batch = draw(st.lists(events(bad=False), min_size=1, max_size=8))
    i = draw(st.integers(0, len(batch) - 1))
    member, choices = draw(st.sampled_from(FAULTS))
    batch[i] = {**batch[i], member: draw(st.sampled_from(choices))}
    return batch


# ---- the property ---------------------------------------------------------------------------
def slow_answer(validator: EventValidator, body: bytes) -> Any:
    raws = [bytes(raw) for raw in msgspec.json.decode(body, type=EventBatchIn).events]
    return validator.validate(raws)


def assert_fast_is_slow(validator: EventValidator, body: bytes) -> bool:
    """The fast answer, if any, is the slow one: True if the fast path answered."""
    fast = validator.validate_batch(body)
    if fast is None:
        return False
    accepted, rejected, batch = slow_answer(validator, body)
    assert rejected == [], f"the fast path accepted a batch the slow path refuses in part: {rejected}"
    assert list(fast[0]) == accepted
    # The answer written from columns is the one the slow path's results encode to.
    assert msgspec.json.decode(fast[0].results_json()) == [
        {"index": a.index, "event_id": a.event_id, "status": "queued"} for a in accepted]
    assert fast[1] == []
    assert fast[2].schema == batch.schema
    assert fast[2].equals(batch), (fast[2].to_pylist()[:3], batch.to_pylist()[:3])
    return True


SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


@SETTINGS
@given(batch=st.lists(events(bad=True), min_size=1, max_size=12))
def test_the_fast_path_gives_the_slow_answer_or_none(validator, batch):
    assert_fast_is_slow(validator, body_of(batch))


@SETTINGS
@given(batch=one_fault())
def test_one_fault_anywhere_never_passes_the_fast_path(validator, batch):
    """(Unless the member is fine for that event after all, such as no value for a count.)"""
    assert_fast_is_slow(validator, body_of(batch))


@SETTINGS
@given(batch=st.lists(events(bad=False), min_size=1, max_size=12))
def test_good_batches_agree_on_both_paths(validator, batch):
    """Good events only: whichever path answers, the answer is the same, and nothing is refused."""
    body = body_of(batch)
    assert_fast_is_slow(validator, body)
    assert slow_answer(validator, body)[1] == []


def test_common_batches_stay_on_the_fast_path(validator):
    """Integers, short decimal strings, string properties, counts without a value, offsets, 1,000 events."""
    counted = {k: v for k, v in good("c").items() if k != "value"}
    shapes = [
        [good(f"i{i}", i, properties={"region": "eu", "plan": "growth"}) for i in range(1000)],
        [good(f"d{i}", f"{i}.{i:04d}", timestamp="2026-04-15T14:00:00.250+02:00") for i in range(500)],
        [good(f"m{i}", "1e3" if i % 2 else 5, properties={"n": i, "ok": True, "ratio": 0.5, "gone": None}) for i in range(50)],
        [{**counted, "metric_key": j("logins"), "idempotency_key": j(f"c{i}")} for i in range(20)] + [good("x", 2)],
        [good(f"p{i}", 1, properties=None) for i in range(3)] + [{**good("q"), "properties": "null"}],
        [good("big", 1, properties={"k": "x" * 8184})],  # {"k":"x…"} is 8,192 bytes: the limit, accepted
    ]
    for shape in shapes:
        assert assert_fast_is_slow(validator, body_of(shape)), shape[0]


def test_the_spec_event_id_on_the_fast_path(validator):
    fast = validator.validate_batch(body_of([good("req_7f8a9b2c3d4e5f6a")]))
    assert fast is not None
    assert fast[0][0].event_id == "evt_4p4erop5rryigojg47u5ojfyt7"
    assert fast[2].column("event_id").to_pylist() == ["evt_4p4erop5rryigojg47u5ojfyt7"]


ONE_BAD = [
    ({"customer_id": j("ghost")}, "CUSTOMER_NOT_FOUND", "customer_id"),
    ({"metric_key": j("old")}, "METRIC_INACTIVE", "metric_key"),
    ({"metric_key": j("nope")}, "METRIC_NOT_FOUND", "metric_key"),
    ({"idempotency_key": j("k" * 256)}, "IDEMPOTENCY_KEY_INVALID", "idempotency_key"),
    ({"idempotency_key": j("")}, "IDEMPOTENCY_KEY_INVALID", "idempotency_key"),
    ({"properties": j({f"p{i}": i for i in range(51)})}, "PROPERTIES_INVALID", "properties"),
    ({"properties": j({"k": "x" * 8185})}, "PROPERTIES_INVALID", "properties"),
    ({"properties": j({"k": "\x01" * 1400})}, "PROPERTIES_INVALID", "properties"),  # 1,400 bytes, 8,400 as JSON
    ({"properties": j({"n": 1, "k": "x" * 8180})}, "PROPERTIES_INVALID", "properties"),  # not all strings: 8,194 bytes
    ({"value": j("1.00000000001")}, "INVALID_DECIMAL", "value"),
    ({"value": "0.00000000001"}, "INVALID_DECIMAL", "value"),
    ({"value": j(10**18)}, "VALUE_OUT_OF_RANGE", "value"),
    ({"value": j("-1000000000000000000")}, "VALUE_OUT_OF_RANGE", "value"),
    ({"value": "1e18"}, "VALUE_OUT_OF_RANGE", "value"),
    ({"value": j("NaN")}, "INVALID_DECIMAL", "value"),
    ({"value": j(" 5")}, "INVALID_DECIMAL", "value"),
    ({"value": "null"}, "MISSING_FIELD", "value"),
    ({"timestamp": j("2026-04-15T12:05:00.001Z")}, "TIMESTAMP_IN_FUTURE", "timestamp"),
    ({"timestamp": j("2026-04-15T12:00:00")}, "TIMESTAMP_NOT_ZONED", "timestamp"),
    ({"timestamp": j("1969-12-31T23:59:59Z")}, "INVALID_TIMESTAMP", "timestamp"),
    ({"colour": j("red")}, "UNKNOWN_FIELD", "colour"),
]


@pytest.mark.parametrize(("change", "code", "field"), ONE_BAD, ids=[f"{c}-{next(iter(ch))}" for ch, c, _ in ONE_BAD])
def test_one_bad_event_sends_its_batch_to_the_slow_path_which_names_it(validator, change, code, field):
    batch = [good("a", 2), {**good("b"), **change}, good("c", "3.5")]
    body = body_of(batch)
    assert validator.validate_batch(body) is None
    accepted, rejected, _ = slow_answer(validator, body)
    assert [a.idempotency_key for a in accepted] == ["a", "c"]
    assert [(r.index, r.error.code, r.error.field) for r in rejected] == [(1, code, f"events.1.{field}")]
    assert validator.validate_batch(body_of([batch[0], batch[2]])) is not None  # without it, the fast path answers
