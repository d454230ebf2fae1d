"""Invoices, pricing and bulk jobs (§11, §12, §14)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from abaxus.api.body import read_body
from abaxus.api.responses import json_response, list_response, page_params
from abaxus.api.routes import run
from abaxus.api.routes.events import _event_cursor, _parse_event_cursor
from abaxus.api.state import Services
from abaxus.billing.audit import list_entries
from abaxus.billing.usage import event_out
from abaxus.schemas.invoices import ArchiveIn, BulkIn, CalculateIn, EmptyIn, InvoiceCreate, PreviewIn
from abaxus.timefmt import parse_timestamp


def actor(request: Request[Any, Any, Any]) -> str:
    return str(request.scope["state"]["api_key"].id)


@post("/v1/pricing/calculate", tags=["pricing"])
async def calculate(request: Request[Any, Any, Any], svc: Services) -> Response[dict[str, Any]]:
    body = await read_body(request, CalculateIn)
    cutoff = parse_timestamp(body.cutoff_date, "cutoff_date")
    return json_response(await run(svc.invoicing.calculate, body.customer_id, cutoff, body.subscription_id))


@post("/v1/pricing/preview", tags=["pricing"])
async def preview(request: Request[Any, Any, Any], svc: Services) -> Response[dict[str, Any]]:
    body = await read_body(request, PreviewIn)
    return json_response(await run(svc.invoicing.preview, body.plan_id, body.plan_version, body.usage))


@post("/v1/invoices", tags=["invoices"])
async def create(request: Request[Any, Any, Any], svc: Services) -> Response[dict[str, Any]]:
    body = await read_body(request, InvoiceCreate)
    cutoff = parse_timestamp(body.cutoff_date, "cutoff_date")
    out = await run(svc.invoicing.create, body.customer_id, cutoff, body.subscription_id, body.calculation_id, actor(request))
    return json_response(out, 201)


@get("/v1/invoices", tags=["invoices"])
async def list_all(request: Request[Any, Any, Any], svc: Services) -> Response[list[dict[str, Any]]]:
    q = request.query_params
    filters = {name: q.get(name) for name in ("customer_id", "subscription_id", "status", "type")}
    return list_response(*await run(svc.invoicing.list, filters, *page_params(request)))


@get("/v1/invoices/{invoice_id:str}", tags=["invoices"])
async def get_one(invoice_id: str, svc: Services) -> Response[dict[str, Any]]:
    return json_response(await run(svc.invoicing.get, invoice_id))


@get("/v1/invoices/{invoice_id:str}/line-items/{charge_id:str}/events", tags=["invoices"])
async def line_events(invoice_id: str, charge_id: str, request: Request[Any, Any, Any], svc: Services) -> Response[dict[str, Any]]:
    limit, cursor = page_params(request)
    after = _parse_event_cursor(cursor) if cursor else None
    found = await run(svc.invoicing.line_events, invoice_id, charge_id, limit, after)
    rows = found["rows"]
    return json_response({"data": [event_out(r) for r in rows[:limit]],
                          "next_cursor": _event_cursor(rows[limit - 1]) if len(rows) > limit else None,
                          "event_count": found["event_count"], "events_checksum": found["events_checksum"]})


@post("/v1/invoices/{invoice_id:str}/archive", tags=["invoices"])
async def archive(invoice_id: str, request: Request[Any, Any, Any], svc: Services) -> Response[dict[str, Any]]:
    body = await read_body(request, ArchiveIn)
    return json_response(await run(svc.invoicing.archive, invoice_id, body.reason, actor(request)))


@post("/v1/invoices/{invoice_id:str}/adjustments", tags=["invoices"])
async def adjust(invoice_id: str, request: Request[Any, Any, Any], svc: Services) -> Response[dict[str, Any]]:
    await read_body(request, EmptyIn)
    return json_response(await run(svc.invoicing.adjust, invoice_id, actor(request)), 201)


@get("/v1/invoices/{invoice_id:str}/events", tags=["invoices"])
async def audit_trail(invoice_id: str, request: Request[Any, Any, Any], svc: Services) -> Response[list[dict[str, Any]]]:
    await run(svc.invoicing.get, invoice_id)
    return list_response(*await run(list_entries, svc.engine, invoice_id, *page_params(request)))


@post("/v1/invoices/bulk", tags=["invoices"])
async def bulk(request: Request[Any, Any, Any], svc: Services) -> Response[dict[str, Any]]:
    body = await read_body(request, BulkIn)
    cutoff = parse_timestamp(body.cutoff_date, "cutoff_date")
    return json_response(await run(svc.bulk.enqueue, cutoff, actor(request)), 202)


@get("/v1/jobs/{job_id:str}", tags=["invoices"])
async def job(job_id: str, svc: Services) -> Response[dict[str, Any]]:
    return json_response(await run(svc.bulk.get, job_id))


ROUTES = [calculate, preview, create, list_all, get_one, line_events, archive, adjust, audit_trail, bulk, job]
