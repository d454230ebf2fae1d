"""Invoices (§12–§14): issue, list, trace a line to its events, audit, archive, adjust, charge, bulk."""

from __future__ import annotations

from typing import TypeVar

from abaxus_client._pagination import AsyncPaginator, Paginator
from abaxus_client._transport import Call
from abaxus_client.models import (
    UNSET,
    AuditEntry,
    BulkInvoiceRequest,
    Invoice,
    InvoiceArchive,
    InvoiceCreate,
    JobRef,
    LineItemEventsPage,
    Page,
    Payment,
    StoredEvent,
    Timestamp,
    UnsetType,
)
from abaxus_client.resources._base import AsyncResource, SyncResource, seg

__all__ = ["AsyncInvoices", "Invoices"]

T = TypeVar("T")


def _path(invoice_id: str, tail: str = "") -> str:
    return f"/v1/invoices/{seg(invoice_id)}{tail}"


def _create(customer_id: str, cutoff_date: Timestamp, subscription_id: str | UnsetType,
            calculation_id: str | UnsetType, idempotency_key: str | None) -> Call[Invoice]:
    body = InvoiceCreate(customer_id=customer_id, cutoff_date=cutoff_date, subscription_id=subscription_id,
                         calculation_id=calculation_id)
    return Call("POST", "/v1/invoices", Invoice, body=body, write=True, idempotency_key=idempotency_key)


def _post(path: str, out: type[T], body: object, idempotency_key: str | None) -> Call[T]:
    return Call("POST", path, out, body=body, write=True, idempotency_key=idempotency_key)


def _filters(customer_id: str | None, subscription_id: str | None, status: str | None,
             type: str | None) -> dict[str, str | None]:
    return {"customer_id": customer_id, "subscription_id": subscription_id, "status": status, "type": type}


class Invoices(SyncResource):
    def create(self, *, customer_id: str, cutoff_date: Timestamp, subscription_id: str | UnsetType = UNSET,
               calculation_id: str | UnsetType = UNSET, idempotency_key: str | None = None) -> Invoice:
        """Issue the invoice of the period containing ``cutoff_date`` (pass its last second to bill it whole).

        Retried calls reuse one ``Idempotency-Key``, so a retry after a lost answer returns the
        invoice already issued instead of raising ``INVOICE_ALREADY_EXISTS``.
        """
        return self._t.request(_create(customer_id, cutoff_date, subscription_id, calculation_id, idempotency_key))

    def get(self, invoice_id: str) -> Invoice:
        return self._t.request(Call("GET", _path(invoice_id), Invoice))

    def list(self, *, customer_id: str | None = None, subscription_id: str | None = None, status: str | None = None,
             type: str | None = None, limit: int | None = None) -> Paginator[Page[Invoice], Invoice]:
        return self._list("/v1/invoices", Invoice, _filters(customer_id, subscription_id, status, type), limit)

    def line_item_events(self, invoice_id: str, charge_id: str, *,
                         limit: int | None = None) -> Paginator[LineItemEventsPage, StoredEvent]:
        """The events behind one line, oldest first; each page also carries the line's totals."""
        return Paginator(self._t, _path(invoice_id, f"/line-items/{seg(charge_id)}/events"), {}, LineItemEventsPage,
                         limit)

    def audit_events(self, invoice_id: str, *, limit: int | None = None) -> Paginator[Page[AuditEntry], AuditEntry]:
        """The invoice's append-only audit trail, oldest first."""
        return self._list(_path(invoice_id, "/events"), AuditEntry, {}, limit)

    def archive(self, invoice_id: str, *, reason: str, idempotency_key: str | None = None) -> Invoice:
        """Void an issued invoice; its period may then be invoiced anew."""
        return self._t.request(_post(_path(invoice_id, "/archive"), Invoice, InvoiceArchive(reason=reason),
                                     idempotency_key))

    def adjust(self, invoice_id: str, *, idempotency_key: str | None = None) -> Invoice:
        """An adjustment invoice for usage that arrived after issue (``ConflictError`` NO_CHANGE if none)."""
        return self._t.request(_post(_path(invoice_id, "/adjustments"), Invoice, {}, idempotency_key))

    def charge(self, invoice_id: str, *, idempotency_key: str | None = None) -> Payment:
        """Charge through Stripe; a decline raises ``PaymentFailedError`` and the invoice stays chargeable."""
        return self._t.request(_post(_path(invoice_id, "/charge"), Payment, {}, idempotency_key))

    def bulk(self, *, cutoff_date: Timestamp, idempotency_key: str | None = None) -> JobRef:
        """Invoice every billable subscription in a background job; follow it with ``jobs.wait``."""
        return self._t.request(_post("/v1/invoices/bulk", JobRef, BulkInvoiceRequest(cutoff_date=cutoff_date),
                                     idempotency_key))


class AsyncInvoices(AsyncResource):
    async def create(self, *, customer_id: str, cutoff_date: Timestamp, subscription_id: str | UnsetType = UNSET,
                     calculation_id: str | UnsetType = UNSET, idempotency_key: str | None = None) -> Invoice:
        return await self._t.request(_create(customer_id, cutoff_date, subscription_id, calculation_id,
                                             idempotency_key))

    async def get(self, invoice_id: str) -> Invoice:
        return await self._t.request(Call("GET", _path(invoice_id), Invoice))

    def list(self, *, customer_id: str | None = None, subscription_id: str | None = None, status: str | None = None,
             type: str | None = None, limit: int | None = None) -> AsyncPaginator[Page[Invoice], Invoice]:
        return self._list("/v1/invoices", Invoice, _filters(customer_id, subscription_id, status, type), limit)

    def line_item_events(self, invoice_id: str, charge_id: str, *,
                         limit: int | None = None) -> AsyncPaginator[LineItemEventsPage, StoredEvent]:
        return AsyncPaginator(self._t, _path(invoice_id, f"/line-items/{seg(charge_id)}/events"), {},
                              LineItemEventsPage, limit)

    def audit_events(self, invoice_id: str, *,
                     limit: int | None = None) -> AsyncPaginator[Page[AuditEntry], AuditEntry]:
        return self._list(_path(invoice_id, "/events"), AuditEntry, {}, limit)

    async def archive(self, invoice_id: str, *, reason: str, idempotency_key: str | None = None) -> Invoice:
        return await self._t.request(_post(_path(invoice_id, "/archive"), Invoice, InvoiceArchive(reason=reason),
                                           idempotency_key))

    async def adjust(self, invoice_id: str, *, idempotency_key: str | None = None) -> Invoice:
        return await self._t.request(_post(_path(invoice_id, "/adjustments"), Invoice, {}, idempotency_key))

    async def charge(self, invoice_id: str, *, idempotency_key: str | None = None) -> Payment:
        return await self._t.request(_post(_path(invoice_id, "/charge"), Payment, {}, idempotency_key))

    async def bulk(self, *, cutoff_date: Timestamp, idempotency_key: str | None = None) -> JobRef:
        return await self._t.request(_post("/v1/invoices/bulk", JobRef, BulkInvoiceRequest(cutoff_date=cutoff_date),
                                           idempotency_key))
