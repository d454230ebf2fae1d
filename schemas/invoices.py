"""Invoice, pricing and job request bodies (§11, §12, §13)."""

from __future__ import annotations

from decimal import Decimal

from abaxus.schemas.catalog import Request

__all__ = ["ArchiveIn", "BulkIn", "CalculateIn", "EmptyIn", "InvoiceCreate", "PreviewIn"]


class InvoiceCreate(Request, kw_only=True):
    customer_id: str
    cutoff_date: str
    subscription_id: str | None = None
    calculation_id: str | None = None


class CalculateIn(Request, kw_only=True):
    customer_id: str
    cutoff_date: str
    subscription_id: str | None = None


class PreviewIn(Request, kw_only=True):
    plan_id: str
    usage: dict[str, Decimal]
    plan_version: int | None = None


class ArchiveIn(Request, kw_only=True):
    reason: str


class BulkIn(Request, kw_only=True):
    cutoff_date: str


class EmptyIn(Request, kw_only=True):
    """A POST whose body is ``{}`` (an idempotency_key is still allowed)."""
