"""The auth matrix (§2): no key, unknown key, revoked key, and each scope per endpoint class."""

from __future__ import annotations

import pytest

from abaxus.api.auth import allowed_scopes
from conftest import error_of, make_key

# (method, path, body): one request per endpoint class.
ADMIN_WRITE = ("POST", "/v1/customers", '{"id": "c_scope", "name": "S"}')
ADMIN_READ_KEYS = ("GET", "/v1/api-keys", None)
CATALOG_READ = ("GET", "/v1/metrics", None)
OPS_METRICS = ("GET", "/metrics", None)

# Expected: does the scope pass authorization (True), or get 403 INSUFFICIENT_SCOPE (False)?
MATRIX = {
    "admin": {ADMIN_WRITE: True, ADMIN_READ_KEYS: True, CATALOG_READ: True, OPS_METRICS: True},
    "read": {ADMIN_WRITE: False, ADMIN_READ_KEYS: False, CATALOG_READ: True, OPS_METRICS: True},
    "ingest": {ADMIN_WRITE: False, ADMIN_READ_KEYS: False, CATALOG_READ: False, OPS_METRICS: False},
}


def _call(client, request, headers):  # type: ignore[no-untyped-def]
    method, path, body = request
    if body is not None:
        headers = {**headers, "Content-Type": "application/json"}
    return client.request(method, path, content=body, headers=headers)


@pytest.mark.parametrize("scope", ["admin", "read", "ingest"])
def test_each_scope_against_each_endpoint_class(client, scope):
    secret = make_key(client, scope, f"{scope}-key")
    headers = {"Authorization": f"Bearer {secret}"}
    for request, allowed in MATRIX[scope].items():
        r = _call(client, request, headers)
        if allowed:
            assert r.status_code < 400, (scope, request, r.text)
        else:
            assert error_of(r) == (403, "INSUFFICIENT_SCOPE", None), (scope, request)


def test_scope_rules_for_event_and_compute_endpoints():
    assert allowed_scopes("POST", "/v1/events") == {"admin", "ingest"}
    assert allowed_scopes("POST", "/v1/events/batch") == {"admin", "ingest"}
    assert allowed_scopes("GET", "/v1/events") == {"admin", "ingest", "read"}
    assert allowed_scopes("POST", "/v1/usage/compute") == {"admin", "read"}
    assert allowed_scopes("POST", "/v1/pricing/calculate") == {"admin", "read"}
    assert allowed_scopes("POST", "/v1/invoices") == {"admin"}
    assert allowed_scopes("GET", "/v1/api-keys") == {"admin"}


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer sk_live_" + "x" * 40, "Basic abc", "sk_test_" + "A" * 40])
def test_missing_or_unknown_keys_get_401_without_saying_which(client, header):
    headers = {"Authorization": header} if header is not None else {}
    client.headers.pop("Authorization")
    r = client.get("/v1/metrics", headers=headers)
    assert error_of(r) == (401, "UNAUTHENTICATED", None)


def test_public_endpoints_need_no_key(client):
    client.headers.pop("Authorization")
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/schema/openapi.json").status_code == 200


def test_a_key_used_many_times_fails_the_instant_it_is_revoked(client):
    """The embedded app remembers found keys (no store query per request); revoking must still bite at once."""
    secret = make_key(client, "ingest", "hot-key")
    headers = {"Authorization": f"Bearer {secret}"}
    for _ in range(5):  # found once in the store, then answered from memory
        assert client.get("/v1/events", headers=headers).status_code == 200
    key_id = next(k["id"] for k in client.get("/v1/api-keys").json()["data"] if k["name"] == "hot-key")
    assert client.delete(f"/v1/api-keys/{key_id}").status_code == 200
    assert error_of(client.get("/v1/events", headers=headers)) == (401, "UNAUTHENTICATED", None)
    # Other keys still work, found in the store again.
    assert client.get("/v1/metrics").status_code == 200


def test_key_cache_forgets_a_lookup_that_raced_a_revocation():
    from abaxus.api.auth import KeyCache  # noqa: PLC0415
    from abaxus.billing.api_keys import AuthenticatedKey  # noqa: PLC0415

    cache = KeyCache()
    key = AuthenticatedKey("key_1", "admin", "live")
    started = cache.generation()  # a lookup starts, reads the row (not revoked yet) ...
    cache.changed()  # ... the key is revoked meanwhile ...
    cache.remember("sk_live_x", key, started)  # ... and the stale answer arrives
    assert cache.get("sk_live_x") is None
    cache.remember("sk_live_x", key, cache.generation())
    assert cache.get("sk_live_x") == key
