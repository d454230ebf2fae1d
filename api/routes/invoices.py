"""Invoices, pricing and bulk jobs (§11, §12, §14)."""

from __future__ import annotations

from typing import Any, Literal

from litestar import Request, Response, get, post
from sqlalchemy import Engine

from abaxus.api.contract import StrictBody, errors
from abaxus.api.routes import Paging, page, run, typed
from abaxus.billing.audit import list_entries
from abaxus.billing.invoices import Invoicing
from abaxus.billing.jobs import BulkInvoicing
from abaxus.billing.usage import event_out
from abaxus.schemas.invoices import ArchiveIn, BulkIn, CalculateIn, EmptyIn, InvoiceCreate, PreviewIn
from abaxus.schemas.responses import AuditEntry, Calculation, Invoice, Job, JobQueued, LineEvents, Preview, page_of
from abaxus.store.paging import event_cursor, parse_event_cursor
from abaxus.timefmt import parse_timestamp

__all__ = ["ROUTES", "actor"]

InvoicePage = page_of(Invoice)
AuditPage = page_of(AuditEntry)
BODY = (400, 409, 413, 415)


def actor(request: Request[Any, Any, Any]) -> str:
    return str(request.scope["state"]["api_key"].id)


@post("/v1/pricing/calculate", tags=["pricing"], status_code=200, dto=StrictBody[CalculateIn], return_dto=None,
      responses=errors(*BODY))
async def calculate(data: CalculateIn, invoicing: Invoicing) -> Response[Calculation]:
    cutoff = parse_timestamp(data.cutoff_date, "cutoff_date")
    return typed(await run(invoicing.calculate, data.customer_id, cutoff, data.subscription_id), Calculation)


@post("/v1/pricing/preview", tags=["pricing"], status_code=200, dto=StrictBody[PreviewIn], return_dto=None,
      responses=errors(*BODY))
async def preview(data: PreviewIn, invoicing: Invoicing) -> Response[Preview]:
    return typed(await run(invoicing.preview, data.plan_id, data.plan_version, data.usage), Preview)


@post("/v1/invoices", tags=["invoices"], dto=StrictBody[InvoiceCreate], return_dto=None, responses=errors(*BODY, 409))
async def create(data: InvoiceCreate, request: Request[Any, Any, Any], invoicing: Invoicing) -> Response[Invoice]:
    cutoff = parse_timestamp(data.cutoff_date, "cutoff_date")
    out = await run(invoicing.create, data.customer_id, cutoff, data.subscription_id, data.calculation_id, actor(request))
    return typed(out, Invoice, 201)


@get("/v1/invoices", tags=["invoices"], responses=errors())
async def list_all(paging: Paging, invoicing: Invoicing, customer_id: str | None = None, subscription_id: str | None = None,
                   status: Literal["issued", "paid", "archived"] | None = None,
                   type: Literal["standard", "adjustment"] | None = None) -> Response[InvoicePage]:  # type: ignore[valid-type]
    filters = {"customer_id": customer_id, "subscription_id": subscription_id, "status": status, "type": type}
    return page(*await run(invoicing.list, filters, paging.limit, paging.cursor), Invoice)


@get("/v1/invoices/{invoice_id:str}", tags=["invoices"], responses=errors(404))
async def get_one(invoice_id: str, invoicing: Invoicing) -> Response[Invoice]:
    return typed(await run(invoicing.get, invoice_id), Invoice)


@get("/v1/invoices/{invoice_id:str}/line-items/{charge_id:str}/events", tags=["invoices"], responses=errors(404))
async def line_events(invoice_id: str, charge_id: str, paging: Paging, invoicing: Invoicing) -> Response[LineEvents]:
    after = parse_event_cursor(paging.cursor) if paging.cursor else None
    limit = paging.limit
    found = await run(invoicing.line_events, invoice_id, charge_id, limit, after)
    rows = found["rows"]
    return typed({"data": [event_out(r) for r in rows[:limit]],
                  "next_cursor": event_cursor(rows[limit - 1]) if len(rows) > limit else None,
                  "event_count": found["event_count"], "events_checksum": found["events_checksum"]}, LineEvents)


@post("/v1/invoices/{invoice_id:str}/archive", tags=["invoices"], status_code=200, dto=StrictBody[ArchiveIn],
      return_dto=None, responses=errors(*BODY, 404, 409))
async def archive(invoice_id: str, data: ArchiveIn, request: Request[Any, Any, Any],
                  invoicing: Invoicing) -> Response[Invoice]:
    return typed(await run(invoicing.archive, invoice_id, data.reason, actor(request)), Invoice)


@post("/v1/invoices/{invoice_id:str}/adjustments", tags=["invoices"], dto=StrictBody[EmptyIn], return_dto=None,
      responses=errors(*BODY, 404, 409))
async def adjust(invoice_id: str, request: Request[Any, Any, Any], invoicing: Invoicing,
                 data: EmptyIn | None = None) -> Response[Invoice]:
    return typed(await run(invoicing.adjust, invoice_id, actor(request)), Invoice, 201)


@get("/v1/invoices/{invoice_id:str}/events", tags=["invoices"], responses=errors(404))
async def audit_trail(invoice_id: str, paging: Paging, invoicing: Invoicing,
                      engine: Engine) -> Response[AuditPage]:  # type: ignore[valid-type]
    await run(invoicing.get, invoice_id)
    return page(*await run(list_entries, engine, invoice_id, paging.limit, paging.cursor), AuditEntry)


@post("/v1/invoices/bulk", tags=["invoices"], status_code=202, dto=StrictBody[BulkIn], return_dto=None,
      responses=errors(*BODY))
async def bulk(data: BulkIn, request: Request[Any, Any, Any], bulk: BulkInvoicing) -> Response[JobQueued]:
    cutoff = parse_timestamp(data.cutoff_date, "cutoff_date")
    return typed(await run(bulk.enqueue, cutoff, actor(request)), JobQueued, 202)


@get("/v1/jobs/{job_id:str}", tags=["invoices"], responses=errors(404))
async def job(job_id: str, bulk: BulkInvoicing) -> Response[Job]:
    return typed(await run(bulk.get, job_id), Job)


ROUTES = [calculate, preview, create, list_all, get_one, line_events, archive, adjust, audit_trail, bulk, job]
