"""Pricing (§11), invoices and bulk jobs (§12), payments (§13), audit (§14), entitlements (§15).

Money amounts (``amount``, ``total_amount``) are ``int`` in the currency's minor unit
(cents for usd); prices and quantities are exact ``Decimal``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from abaxus_client.models._base import UNSET, DecimalLike, Request, Response, Timestamp, UnsetType

__all__ = [
    "AuditEntry", "BulkInvoiceRequest", "Calculation", "EntitlementCheck", "Entitlements", "Invoice",
    "InvoiceArchive", "InvoiceCreate", "Job", "JobError", "JobRef", "LineItem", "Payment", "Preview",
    "PricingCalculateRequest", "PricingPreviewRequest", "ResolvedEntitlement", "SourcePlan", "TierBreakdown",
]


class TierBreakdown(Response, frozen=True, kw_only=True):
    """One tier of a tiered/volume line: ``from_`` is the exclusive lower bound (JSON ``from``)."""

    tier: int
    from_: Decimal = msgspec.field(name="from")
    up_to: int | None = None
    quantity: Decimal
    unit_price: Decimal
    flat_amount: Decimal = Decimal(0)
    amount: int


class LineItem(Response, frozen=True, kw_only=True):
    charge_id: str
    description: str | None = None
    pricing_model: str
    metric_key: str | None = None
    quantity: Decimal
    unit_price: Decimal | None = None
    amount: int
    tier_breakdown: list[TierBreakdown] | None = None
    packages: int | None = None
    event_count: int | None = None
    events_checksum: str | None = None
    previous_quantity: Decimal | None = None  # adjustment lines only


class InvoiceCreate(Request, frozen=True, kw_only=True):
    customer_id: str
    cutoff_date: Timestamp
    subscription_id: str | UnsetType = UNSET
    calculation_id: str | UnsetType = UNSET


class Invoice(Response, frozen=True, kw_only=True):
    id: str
    type: str  # standard | adjustment
    adjusts_invoice_id: str | None = None
    customer_id: str
    subscription_id: str | None = None
    plan_id: str | None = None
    plan_version: int | None = None
    status: str  # issued | paid | archived
    currency: str
    period_start: str
    period_end: str
    total_amount: int
    line_items: list[LineItem]
    calculation_id: str | None = None
    usage_as_of: str | None = None
    payment_intent_id: str | None = None
    created_at: str
    paid_at: str | None = None
    archived_at: str | None = None
    archive_reason: str | None = None


class PricingCalculateRequest(Request, frozen=True, kw_only=True):
    customer_id: str
    cutoff_date: Timestamp
    subscription_id: str | UnsetType = UNSET


class Calculation(Response, frozen=True, kw_only=True):
    """What an invoice would be, kept 24 h: pass ``calculation_id`` to issue exactly these lines."""

    calculation_id: str
    customer_id: str
    subscription_id: str | None = None
    plan_id: str
    plan_version: int
    period_start: str
    period_end: str
    currency: str
    total_amount: int
    line_items: list[LineItem]
    usage_as_of: str | None = None
    created_at: str
    expires_at: str


class PricingPreviewRequest(Request, frozen=True, kw_only=True):
    plan_id: str
    usage: dict[str, DecimalLike]
    plan_version: int | UnsetType = UNSET


class Preview(Response, frozen=True, kw_only=True):
    plan_id: str
    plan_version: int
    currency: str
    total_amount: int
    line_items: list[LineItem]


class InvoiceArchive(Request, frozen=True, kw_only=True):
    reason: str


class Payment(Response, frozen=True, kw_only=True):
    """A successful charge; ``payment_intent_id`` is None for a zero total (Stripe not called)."""

    invoice_id: str
    status: str
    payment_intent_id: str | None = None
    amount: int
    currency: str
    charged_at: str


class AuditEntry(Response, frozen=True, kw_only=True):
    id: str
    type: str
    actor: str
    at: str
    data: dict[str, Any] = {}


class BulkInvoiceRequest(Request, frozen=True, kw_only=True):
    cutoff_date: Timestamp


class JobRef(Response, frozen=True, kw_only=True):
    job_id: str
    status: str


class JobError(Response, frozen=True, kw_only=True):
    customer_id: str | None = None
    subscription_id: str | None = None
    error: str


class Job(Response, frozen=True, kw_only=True):
    id: str
    status: str  # queued | running | succeeded | failed
    cutoff_date: str
    invoices_created: int = 0
    invoices_skipped: int = 0
    invoices_existing: int = 0
    errors: list[JobError] = []
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed")


class SourcePlan(Response, frozen=True, kw_only=True):
    plan_id: str
    plan_version: int


class EntitlementCheck(Response, frozen=True, kw_only=True):
    """One feature for one customer; ``type`` is None when no live subscription defines it."""

    feature_key: str
    type: str | None = None
    granted: bool
    value: bool | int | str | None = None
    limit: int | None = None
    current_usage: Decimal | None = None
    remaining: Decimal | None = None
    exceeded: bool | None = None


class ResolvedEntitlement(EntitlementCheck, frozen=True, kw_only=True):
    source_plans: list[SourcePlan] = []


class Entitlements(Response, frozen=True, kw_only=True):
    customer_id: str
    resolved_at: str
    entitlements: list[ResolvedEntitlement]
