"""A seeded, bounded fuzz of every JSON write: odd input gets a contract error, never a 5xx.

Each POST/PATCH starts from a valid body and is mutated: a member replaced by a nasty value
(numbers past every range, NaN-ish and padded strings, lone surrogates, NUL, RTL marks,
4-byte emoji, far dates, deep nesting), an odd key added, the whole body swapped for a
non-object, or its bytes broken (cut, not UTF-8, a BOM). Every answer must be below 500 and
every error must have the §3 shape. ``derandomize=True`` makes the run the same each time;
one app serves the whole module (40 examples per endpoint, ~10 s in all).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from abaxus.api.app import create_app
from abaxus.settings import Settings
from conftest import ADMIN_KEY
from helpers import event
from quickstart_bodies import PLAN_JSON, setup_quickstart_catalog

EXAMPLES = 40


class Raw(str):
    """JSON text placed into a body as is (what ``json.dumps`` cannot write: 1e400, "\\ud800")."""


def _s(text: str) -> Raw:
    return Raw(json.dumps(text, ensure_ascii=False))


NASTY: list[Raw] = [Raw(t) for t in (
    "1e400", "-1e400", "1" + "0" * 400, "-" + "9" * 400, "-0", "-0.0", "1e-400", "0.00000000001", "1E+18",
    "18446744073709551616", "-9223372036854775809", "3.14159265358979323846264338327950288",
    '"NaN"', '"-Infinity"', '"1e400"', '"  5 "', '"5_0"', '"\\u0665"', '"0x10"', '""',
    "true", "false", "null", "[]", "{}", '[1, "a", null, {"k": []}]',
    '"\\ud800"', '"\\udfff"', '"\\ud83d\\ude00"', '"a\\u0000b"', '"\\u202eevil\\u200f"', '"\U0001F600"',
    '"' + "\U0001F600" * 300 + '"', '"' + "x" * 3000 + '"',
    '"2026-04-01T00:00:00Z"', '"9999-12-31T23:59:59Z"', '"2200-01-01T00:00:00Z"', '"0001-01-01T00:00:00+01:00"',
    '"9999-12-31T23:59:59-23:59"', '"2026-02-30T00:00:00Z"', '"2026-04-01T00:00:60Z"', '"1969-12-31T23:59:59Z"',
    '"2026-04-01T00:00:00+24:00"', '"2026-04-01T00:00:00"',
    '"cust_acme"', '"plan_growth"', '"api_calls"', '"sum"', '"admin"',
    '{"\\ud800": 1}', '{"\U0001F600": "\U0001F600"}', '{"a": {"b": {"c": 1}}}',
    "[" * 1000 + "]" * 1000, '{"a": ' * 1000 + "1" + "}" * 1000, "[" * 70 + "]" * 70,
)]
ODD_KEYS: list[Raw] = [Raw(k) for k in (
    '"\U0001F600"', '"\\ud800"', '"a\\u0000"', '"\\u202eid"', '""', '"' + "k" * 300 + '"', '"id"', '"idempotency_key"',
)]
BROKEN: list[bytes] = [b"", b"   ", b"null", b"NaN", b"[]", b'"x"', b"0", b"{", b"}", b'{"a":}', b"\xef\xbb\xbf{}"]

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=8,
)

MONTH = {"customer_id": "cust_acme", "cutoff_date": "2026-04-30T23:59:59Z"}
PERIOD = {"customer_id": "cust_acme", "period_start": "2026-04-01T00:00:00Z", "period_end": "2026-04-30T23:59:59Z"}
# (method, path, a valid body); {sub} is the module's subscription.
ENDPOINTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/events", event("fz-one")),
    ("POST", "/v1/events/batch", {"events": [event("fz-b1"), event("fz-b2", "2.5", properties={"region": "eu"})]}),
    ("POST", "/v1/events/backfill", {"events": [event("fz-f1", 3)]}),
    ("POST", "/v1/events/void", {"idempotency_keys": ["fz-v1"], "reason": "fuzz"}),
    ("POST", "/v1/customers", {"id": "cust_fz", "name": "Fuzz", "email": "f@z.io", "currency": "usd", "metadata": {"k": "v"}}),
    ("PATCH", "/v1/customers/cust_acme", {"name": "Acme", "email": "billing@acme.io", "metadata": {"k": "v"}}),
    ("POST", "/v1/metrics", {"key": "fz_metric", "name": "Fuzz", "aggregation": "percentile", "percentile": 95,
                             "property": "latency"}),
    ("POST", "/v1/price-plans", {**json.loads(PLAN_JSON), "id": "plan_fz", "effective_from": "2026-04-01T00:00:00Z",
                                 "entitlements": [{"feature_key": "sso", "type": "boolean", "value": True}]}),
    ("POST", "/v1/subscriptions", {"customer_id": "cust_acme", "plan_id": "plan_growth", "start_date": "2026-05-01T00:00:00Z",
                                   "end_date": "2027-01-01T00:00:00Z"}),
    ("POST", "/v1/subscriptions/{sub}/amendments", {"type": "pause", "effective": "2199-01-01T00:00:00Z",
                                                   "resume_date": "2199-02-01T00:00:00Z"}),
    ("POST", "/v1/invoices", {**MONTH, "subscription_id": "{sub}"}),
    ("POST", "/v1/pricing/calculate", {**MONTH, "subscription_id": "{sub}"}),
    ("POST", "/v1/pricing/preview", {"plan_id": "plan_growth", "usage": {"api_calls": 1_200_000}}),
    ("POST", "/v1/usage/compute", {**PERIOD, "metric_key": "api_calls"}),
    ("POST", "/v1/api-keys", {"name": "fuzz", "scope": "read", "mode": "test"}),
    ("POST", "/v1/invoices/bulk", {"cutoff_date": "2026-04-30T23:59:59Z"}),
]


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient[Any], str]]:
    """One embedded app (SQLite, chDB) for the whole module, with the Quick Start catalog."""
    data = Path(tmp_path_factory.mktemp("fuzz")) / "data"
    cfg = Settings(data_dir=data, bootstrap_key=ADMIN_KEY, log_format="console", epoch_seconds=1.0, rate_limit_rpm=1_000_000)
    with TestClient(create_app(cfg)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        sub = setup_quickstart_catalog(c)
        yield c, sub["id"]


# ---- building bodies ------------------------------------------------------------------------
def render(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k if isinstance(k, Raw) else _s(k)}: {render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every member's path (dict keys, list indexes), the body's own children first."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    out = []
    for k, v in children:
        out.append((*prefix, k))
        out.extend(paths(v, (*prefix, k)))
    return out


def _parent(body: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        body = body[part]
    return body


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    """A valid body changed one to three times; now and then not an object, or broken as bytes."""
    if draw(st.integers(0, 14)) == 0:
        return render(draw(st.sampled_from(NASTY) | JSON_VALUES.filter(lambda v: not isinstance(v, dict)))).encode(
            "utf-8", "surrogatepass")
    body: Any = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["nasty", "generated", "nasty", "odd_key", "nasty", "rename", "generated"]))
        targets = paths(body)
        if not targets:
            break
        path = draw(st.sampled_from(targets))
        parent = _parent(body, path)
        if kind == "nasty":
            parent[path[-1]] = draw(st.sampled_from(NASTY))
        elif kind == "generated":
            parent[path[-1]] = draw(JSON_VALUES)
        elif isinstance(parent, dict):
            value = parent.pop(path[-1]) if kind == "rename" else draw(st.sampled_from(NASTY))
            parent[draw(st.sampled_from(ODD_KEYS))] = value
    text = render(body).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 14)) == 0:  # broken bytes
        broken = draw(st.sampled_from(["cut", "xff", "bom", "fixed"]))
        at = draw(st.integers(0, max(len(text) - 1, 0)))
        text = {"cut": text[:at], "xff": text[:at] + b"\xff" + text[at:], "bom": b"\xef\xbb\xbf" + text,
                "fixed": draw(st.sampled_from(BROKEN))}[broken]
    return text


# ---- the contract ---------------------------------------------------------------------------
def _error_shape(error: Any) -> None:
    assert isinstance(error, dict), error
    assert {"code", "message", "field"} <= set(error), error
    assert isinstance(error["code"], str)
    assert error["code"].isupper()
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["field"] is None or isinstance(error["field"], str)


def assert_contract(r: Any, what: str) -> None:
    assert r.status_code < 500, f"{what} → {r.status_code} {r.text[:300]}"
    if r.status_code < 400 and r.status_code != 207:
        return
    body = r.json()
    if "results" in body:  # a batch answer: every rejected event carries its own error
        assert r.status_code in (207, 422)
        assert isinstance(body["accepted"], int)
        assert isinstance(body["rejected"], int)
        for result in body["results"]:
            if result["status"] == "rejected":
                _error_shape(result["error"])
        return
    assert set(body) == {"error"}, f"{what} → {body}"
    _error_shape(body["error"])


def _fill(value: Any, sub: str) -> Any:
    if isinstance(value, str):
        return value.replace("{sub}", sub)
    if isinstance(value, dict):
        return {k: _fill(v, sub) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, sub) for v in value]
    return value


@pytest.mark.parametrize(("method", "path", "base"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_odd_bodies_never_get_a_5xx(fuzz_app, method, path, base):  # type: ignore[no-untyped-def]
    client, sub = fuzz_app
    url = path.replace("{sub}", sub)
    base = _fill(base, sub)
    valid = client.request(method, url, content=render(base).encode(), headers={"Content-Type": "application/json"})
    assert_contract(valid, f"{method} {url} (valid body)")

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body=mutated(base))
    def fuzz(body: bytes) -> None:
        r = client.request(method, url, content=body, headers={"Content-Type": "application/json"})
        assert_contract(r, f"{method} {url} {body[:200]!r}")

    fuzz()
