"""Events (§9): single, batch, backfill, void, and the raw event list."""

from __future__ import annotations

import base64
from typing import Any

import msgspec
from litestar import Request, Response, get, post

from abaxus.api.body import FIVE_MB, read_body, read_raw
from abaxus.api.responses import json_response, list_response, page_params
from abaxus.api.routes import run
from abaxus.api.state import Services
from abaxus.billing.usage import event_out
from abaxus.errors import AbaxusError, InvalidInput
from abaxus.pipeline.intake import Accepted, Rejected
from abaxus.schemas.codec import decode_json, empty_body_error, require_utf8
from abaxus.schemas.events import EventBatchIn, EventBatchTyped, VoidIn
from abaxus.timefmt import parse_timestamp

MAX_BATCH = 1000


def _rejection(r: Rejected) -> dict[str, Any]:
    return {"index": r.index, "status": "rejected",
            "error": {"code": r.error.code, "message": r.error.message, "field": r.error.field}}


async def _validated_batch(request: Request[Any, Any, Any], svc: Services) -> tuple[list[Accepted], list[Rejected], Any]:
    """Validate a batch body: the columnar fast path, else event by event."""
    raw = await read_raw(request, FIVE_MB)
    fast = svc.intake.validator.validate_batch(raw)
    if fast is not None:
        return fast
    result = svc.intake.validator.validate(_batch_raws(raw))
    svc.intake.reject_counts([r.error.code for r in result[1]])
    return result


def _batch_raws(raw: bytes) -> list[bytes]:
    body = decode_json(raw, EventBatchIn, shape=EventBatchTyped)
    require_utf8(raw)  # the events are kept raw: checked once here, not one by one as 422s
    if len(body.events) > MAX_BATCH:
        raise AbaxusError("PAYLOAD_TOO_LARGE", f"Send at most {MAX_BATCH} events per batch; split the rest.", "events", status=413)
    if not body.events:
        raise InvalidInput("VALIDATION_ERROR", "Send 1–1,000 events.", "events")
    return [bytes(raw) for raw in body.events]


@post("/v1/events", tags=["events"])
async def ingest_one(request: Request[Any, Any, Any], svc: Services) -> Response[dict[str, Any]]:
    raw = await read_raw(request)
    if not raw.strip():
        raise empty_body_error("customer_id")
    accepted, rejected, batch = svc.intake.validator.validate([raw], prefix_fmt="")
    if rejected:
        svc.intake.reject_counts([rejected[0].error.code])
        raise rejected[0].error
    await svc.intake.submit(batch)
    a = accepted[0]
    return json_response({"event_id": a.event_id, "status": "queued", "idempotency_key": a.idempotency_key}, 202)


def _batch_status(accepted: list[Any], rejected: list[Rejected], ok: int) -> int:
    if not accepted:
        return 422
    return ok if not rejected else 207


@post("/v1/events/batch", tags=["events"])
async def ingest_batch(request: Request[Any, Any, Any], svc: Services) -> Response[dict[str, Any]]:
    accepted, rejected, batch = await _validated_batch(request, svc)
    if batch is not None:
        await svc.intake.submit(batch)
    results = _in_order([{"index": a.index, "event_id": a.event_id, "status": "queued"} for a in accepted], rejected)
    return json_response({"accepted": len(accepted), "rejected": len(rejected), "results": results},
                         _batch_status(accepted, rejected, 202))


def _in_order(ok: list[dict[str, Any]], rejected: list[Rejected]) -> list[dict[str, Any]]:
    """Per-event results by index (accepted ones are already in order; a clean batch needs no sort)."""
    if not rejected:
        return ok
    return sorted(ok + [_rejection(r) for r in rejected], key=lambda r: r["index"])


def _backfill_results(accepted: list[Accepted], kept: set[str]) -> list[dict[str, Any]]:
    out = []
    first_seen: set[str] = set()
    for a in accepted:
        stored = a.idempotency_key in kept and a.idempotency_key not in first_seen
        first_seen.add(a.idempotency_key)
        out.append({"index": a.index, "event_id": a.event_id, "status": "stored" if stored else "duplicate"})
    return out


@post("/v1/events/backfill", tags=["events"])
async def backfill(request: Request[Any, Any, Any], svc: Services) -> Response[dict[str, Any]]:
    accepted, rejected, batch = await _validated_batch(request, svc)
    kept: set[str] = set()
    if batch is not None:
        position = await svc.intake.submit(batch, backfill=True)
        kept = await svc.intake.wait_stored(position) or set()
    results = _in_order(_backfill_results(accepted, kept), rejected)
    return json_response({"accepted": len(accepted), "rejected": len(rejected), "results": results},
                         _batch_status(accepted, rejected, 200))


@post("/v1/events/void", tags=["events"])
async def void(request: Request[Any, Any, Any], svc: Services) -> Response[dict[str, Any]]:
    body = await read_body(request, VoidIn)
    if not (1 <= len(body.idempotency_keys) <= 1000):
        raise InvalidInput("VALIDATION_ERROR", "Send 1–1,000 idempotency_keys.", "idempotency_keys")
    for i, k in enumerate(body.idempotency_keys):
        if not (1 <= len(k) <= 255):
            raise InvalidInput("IDEMPOTENCY_KEY_INVALID", "Idempotency keys are 1–255 characters.", f"idempotency_keys.{i}")
    if not (1 <= len(body.reason) <= 500):
        raise InvalidInput("INVALID_FIELD", "reason must be 1–500 characters.", "reason")
    results = await run(svc.intake.void, body.idempotency_keys, body.reason)
    return json_response({"voided": sum(r["status"] == "voided" for r in results), "results": results})


def _event_cursor(row: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(["events", row["timestamp"], row["idempotency_key"]])).decode().rstrip("=")


def _parse_event_cursor(cursor: str) -> tuple[int, str]:
    try:
        kind, ts, key = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if kind == "events" and isinstance(ts, int) and isinstance(key, str):
            return ts, key
    except Exception:
        pass
    raise InvalidInput("INVALID_CURSOR", "Pass back the next_cursor this list returned, unchanged.", "cursor")


def time_range(request: Request[Any, Any, Any]) -> tuple[int | None, int | None]:
    """``from`` (inclusive) and ``to`` (inclusive to the end of its second) as [from, to+1s)."""
    q = request.query_params
    # Present but empty (``?from=``) is a bad timestamp, not "no bound": it would widen the range.
    start = parse_timestamp(q["from"], "from") if "from" in q else None
    end = parse_timestamp(q["to"], "to") // 1000 * 1000 + 1000 if "to" in q else None
    if start is not None and end is not None and start >= end:
        raise InvalidInput("INVALID_DATE_RANGE", "'from' must not be after 'to'.", "from")
    return start, end


@get("/v1/events", tags=["events"])
async def list_events(request: Request[Any, Any, Any], svc: Services) -> Response[list[dict[str, Any]]]:
    limit, cursor = page_params(request)
    start, end = time_range(request)
    filters = {"customer_id": request.query_params.get("customer_id"),
               "metric_key": request.query_params.get("metric_key"), "from": start, "to": end}
    after = _parse_event_cursor(cursor) if cursor else None
    rows = await run(svc.intake.usage.list_events, filters, limit + 1, after)
    next_cursor = _event_cursor(rows[limit - 1]) if len(rows) > limit else None
    return list_response([event_out(r) for r in rows[:limit]], next_cursor)


ROUTES = [ingest_one, ingest_batch, backfill, void, list_events]
