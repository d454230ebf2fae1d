"""The served OpenAPI document is the contract: typed, complete, and true of the running server.

Two checks. First, structure: every operation declares its request body (where it takes one),
its parameters, a typed schema for every answer, and security. Second, behaviour: a bounded,
seeded schemathesis run against a real ``abaxus serve`` process, with an admin key, finds no
5xx, no undeclared status, and no answer that breaks its own declared schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import ADMIN_KEY
from server_process import ServerProcess

BODY_OPERATIONS = {"post", "patch", "put"}
# Bodiless POSTs: an action on the object the path names, or the signed Stripe webhook (raw bytes).
NO_BODY = {("post", "/v1/metrics/{key}/deactivate"), ("post", "/v1/price-plans/{plan_id}/versions/{version}/deprecate"),
           ("post", "/v1/webhooks/stripe")}
PUBLIC = {"/healthz", "/readyz", "/v1/webhooks/stripe"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("openapi") / "data", ADMIN_KEY)
    proc.start()
    with proc.client() as c:  # something to find, so reads can answer 200 as well as 404
        c.post("/v1/metrics", json={"key": "api_calls", "name": "API Calls", "aggregation": "sum"})
        c.post("/v1/customers", json={"id": "cust_acme", "name": "Acme"})
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def document(server: ServerProcess) -> dict[str, Any]:
    return httpx.get(f"{server.url}/schema/openapi.json", timeout=30).json()  # type: ignore[no-any-return]


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in {"get", "post", "patch", "put", "delete"}:
                yield method, path, op


def _typed(schema: dict[str, Any], doc: dict[str, Any]) -> bool:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _typed(doc["components"]["schemas"][name], doc)
    if "oneOf" in schema or "anyOf" in schema:
        return all(_typed(s, doc) for s in schema.get("oneOf", schema.get("anyOf")))
    if schema.get("type") == "object":
        return bool(schema.get("properties"))
    return "type" in schema


def test_every_operation_is_typed_and_secured(document: dict[str, Any]):
    problems = []
    ops = list(_operations(document))
    assert len(ops) >= 45
    assert document["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer",
                                                                    "description": "An API key: sk_live_… or sk_test_…"}
    for method, path, op in ops:
        where = f"{method.upper()} {path}"
        if method in BODY_OPERATIONS and (method, path) not in NO_BODY:
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if not body or not _typed(body, document):
                problems.append(f"{where}: no typed request body")
        for status, answer in op["responses"].items():
            content = answer.get("content", {})
            if not content:
                problems.append(f"{where} {status}: no content")
            for media, spec in content.items():
                if media.startswith("application/json") and not _typed(spec.get("schema", {}), document):
                    problems.append(f"{where} {status}: untyped schema")
        if path not in PUBLIC and op.get("security") == [{}]:
            problems.append(f"{where}: declared public")
        if path in PUBLIC and op.get("security") != [{}]:
            problems.append(f"{where}: should be declared public")
    assert not problems, "\n".join(problems)


def test_lists_are_pages_and_event_routes_answer_202(document: dict[str, Any]):
    schemas = document["components"]["schemas"]
    page = schemas["CustomerOutPage"]
    assert set(page["properties"]) == {"data", "next_cursor"}
    names = {p["name"] for p in document["paths"]["/v1/customers"]["get"]["parameters"]}
    assert {"limit", "cursor"} <= names
    assert "202" in document["paths"]["/v1/events"]["post"]["responses"]
    assert {"202", "207", "422"} <= set(document["paths"]["/v1/events/batch"]["post"]["responses"])
    assert "200" in document["paths"]["/v1/events/backfill"]["post"]["responses"]
    assert "201" not in document["paths"]["/v1/events/batch"]["post"]["responses"]
    paths = document["paths"]
    assert "/v1/customers/{object_id}" not in paths
    assert "/v1/customers/{customer_id}" in paths
    assert set(paths["/v1/customers/{customer_id}"]) >= {"get", "patch"}
    assert schemas["LineItem"]["properties"]["quantity"] == {"type": "number"}


def test_schemathesis_finds_no_5xx_and_no_answer_off_its_schema(server: ServerProcess):
    """Every operation, a bounded seeded sample of generated requests (schemathesis's own checks)."""
    schema = schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    failures: list[str] = []
    operations = 0
    calls: list[tuple[str, int]] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=10, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def exercise(case: Any) -> None:
            response = case.call_and_validate(base_url=server.url, headers=headers, timeout=60, checks=checks)
            calls.append((case.operation.label, response.status_code))

        try:
            exercise()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {str(exc)[:600]}")
    assert operations >= 45
    assert len({label for label, _ in calls}) == operations, "an operation was never exercised"
    writes = sorted({label for label, status in calls if label.startswith(("POST", "PATCH")) and status < 300})
    print("successful writes:", writes)
    assert len(writes) >= 3, f"generated requests made too few successful writes: {writes}"
    assert not failures, "\n\n".join(failures)
