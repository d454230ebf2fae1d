"""One reading of timestamps: events (msgspec's decoder, fast and per-event paths) and every
other instant in the API (``abaxus.timefmt``) accept the same texts, read the same instant and
refuse the rest with the same code and message.

The one difference left is a leap second: ``parse_timestamp`` reads :60 as :59, while Python's
datetime (so msgspec) has no :60, so an event with one gets the general INVALID_TIMESTAMP.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note
from hypothesis import strategies as st
from litestar.testing import TestClient

from abaxus.api.app import create_app
from abaxus.errors import InvalidInput
from abaxus.settings import Settings
from abaxus.timefmt import MAX_MS, now_ms, parse_timestamp
from conftest import ADMIN_KEY
from helpers import event
from quickstart_bodies import setup_quickstart_catalog

FUTURE_MS = 5 * 60 * 1000
_keys = itertools.count()

# Texts near the grammar, so most are valid or fail late (date, offset, range), plus oddities.
STAMPS = st.one_of(
    st.from_regex(r"\A(19[7-9][0-9]|20[0-9]{2}|21[0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-9]|3[01])[Tt ]"
                  r"([01][0-9]|2[0-4]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,10})?([Zz]|[+-]([01][0-9]|2[0-4]):?[0-6][0-9])\Z",
                  fullmatch=True),
    st.from_regex(r"\A(19[5-9][0-9]|2[0-2][0-9]{2}|0001|9999)-(0[0-9]|1[0-3])-([0-3][0-9])[Tt ]([0-2][0-9]):"
                  r"([0-6][0-9]):([0-6][0-9])(\.[0-9]{1,10})?([Zz]|[+-][0-2][0-9]:?[0-6][0-9])?\Z", fullmatch=True),
    st.sampled_from(["2026-04-01T00:00:00Z", "2026-04-01t00:00:00z", "2026-04-01 00:00:00+02:00",
                     "2026-04-01T00:00:00.9999995Z", "\uff12026-04-01T00:00:00Z", "2026-04-01T00:00:00", "2026-04-01",
                     "2026-04-01T00:00Z", "2026-02-30T00:00:00Z",
                     "2026-04-01T00:00:00+24:00", "2026-04-01T00:00:00+0200", "2026-04-01T00:00:00+02", "1969-12-31T23:59:59Z",
                     "1970-01-01T00:30:00+01:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59", "", "yesterday"]),
    st.integers(), st.none(), st.booleans(),
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient[Any]]:
    data = Path(tmp_path_factory.mktemp("timestamps")) / "data"
    cfg = Settings(data_dir=data, bootstrap_key=ADMIN_KEY, log_format="console", epoch_seconds=1.0, rate_limit_rpm=1_000_000)
    with TestClient(create_app(cfg)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        setup_quickstart_catalog(c)
        yield c


def _leap_second(stamp: object) -> bool:
    return isinstance(stamp, str) and re.match(r"^.{17}60", stamp) is not None


def expected_for_an_event(stamp: object, field: str) -> tuple[str, str] | None:
    """What an event with this timestamp must get: None (accepted) or (code, message)."""
    try:
        ms = parse_timestamp(stamp, field)
    except InvalidInput as err:
        if err.code == "INVALID_TIMESTAMP" and "2200-01-01" in err.message and str(stamp)[:4] >= "2199":
            return ("TIMESTAMP_IN_FUTURE", "The timestamp is more than 5 minutes ahead; check the sender's clock.")
        return (err.code, err.message)
    if _leap_second(stamp):
        return ("INVALID_TIMESTAMP", "Send an RFC 3339 timestamp such as 2026-04-01T00:00:00Z.")
    if ms > now_ms() + FUTURE_MS:
        assert ms < MAX_MS
        return ("TIMESTAMP_IN_FUTURE", "The timestamp is more than 5 minutes ahead; check the sender's clock.")
    return None


def _outcome(result: dict[str, Any]) -> tuple[str, str] | None:
    if result.get("status") in ("queued", "accepted"):
        return None
    error = result.get("error", result)
    return (error["code"], error["message"])


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stamp=STAMPS)
def test_an_event_timestamp_is_judged_as_every_other_instant_is(api: TestClient[Any], stamp: object):
    single = api.post("/v1/events", json=event(f"ts-{next(_keys)}", ts=stamp))  # type: ignore[arg-type]
    want = expected_for_an_event(stamp, "timestamp")
    note("accepted" if want is None else want[0])
    if want is None:
        assert single.status_code == 202, (stamp, single.text)
    else:
        assert (single.status_code, *_outcome(single.json()["error"])) == (422, *want), stamp  # type: ignore[misc]
        assert single.json()["error"]["field"] == "timestamp"

    # A batch of it alone takes the columnar fast path when it is valid; beside a bad event, the
    # per-event path. Both must agree with the single event.
    alone = api.post("/v1/events/batch", json={"events": [event(f"ts-{next(_keys)}", ts=stamp)]})  # type: ignore[arg-type]
    mixed = api.post("/v1/events/batch", json={"events": [event(f"ts-{next(_keys)}", customer="ghost"),
                                                          event(f"ts-{next(_keys)}", ts=stamp)]})  # type: ignore[arg-type]
    want_batch = expected_for_an_event(stamp, "events.0.timestamp")
    assert _outcome(alone.json()["results"][0]) == want_batch, (stamp, alone.text)
    assert _outcome(mixed.json()["results"][1]) == expected_for_an_event(stamp, "events.1.timestamp"), (stamp, mixed.text)
    if want_batch is not None:
        assert alone.json()["results"][0]["error"]["field"] == "events.0.timestamp"
        assert mixed.json()["results"][1]["error"]["field"] == "events.1.timestamp"


@pytest.mark.parametrize("stamp", ["yesterday", "2026-02-30T00:00:00Z", "2026-04-01T00:00:00+24:00", "2026-04-01T00:00:00",
                                   "1969-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00"])
def test_a_refused_event_timestamp_reads_exactly_as_a_refused_cutoff_date(api: TestClient[Any], stamp: object):
    as_event = api.post("/v1/events", json=event("ts-refused", ts=stamp)).json()["error"]  # type: ignore[arg-type]
    as_cutoff = api.post("/v1/invoices", json={"customer_id": "cust_acme", "cutoff_date": stamp}).json()["error"]
    assert (as_event["code"], as_event["message"]) == (as_cutoff["code"], as_cutoff["message"])
    assert (as_event["field"], as_cutoff["field"]) == ("timestamp", "cutoff_date")


def test_the_instant_an_event_stores_is_the_one_timefmt_reads():
    """Offsets with or without a colon, fractions rounded at the 7th digit, then cut to the ms."""
    assert parse_timestamp("2026-04-01T02:00:00.5+0200", "t") == parse_timestamp("2026-04-01T00:00:00.5Z", "t")
    assert parse_timestamp("2026-04-01T00:00:00.9999995Z", "t") == parse_timestamp("2026-04-01T00:00:01Z", "t")
    assert parse_timestamp("2026-04-01T00:00:00.9999994Z", "t") == parse_timestamp("2026-04-01T00:00:00.999Z", "t")
    assert parse_timestamp("2026-04-01T00:00:60Z", "t") == parse_timestamp("2026-04-01T00:00:59Z", "t")
    for bad in ("2026-04-01T00:00:61Z", "\uff12026-04-01T00:00:00Z", "2026-04-01T00:00:00.\u0661Z"):  # full-width, Arabic-Indic
        with pytest.raises(InvalidInput) as refused:
            parse_timestamp(bad, "t")
        assert refused.value.code == "INVALID_TIMESTAMP", bad
