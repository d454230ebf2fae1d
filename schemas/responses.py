"""Response bodies of the resources the catalog module does not cover (§9–§14, §15, §17).

Every answer Abaxus gives is one of these frozen, ``kw_only`` structs, so the served OpenAPI
document describes it field by field and a generated client gets types, not ``object``.
Optional members that only some answers carry (a package line's ``packages``, an adjustment
line's ``previous_quantity``) are ``UNSET`` and left out of the JSON, as the spec shows them.
Quantities are ``Decimal`` (written as plain JSON numbers); amounts are integer minor units.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, Struct, UnsetType

from abaxus.schemas.types import Quantity

__all__ = [
    "AuditEntry",
    "BatchItem",
    "BatchResult",
    "Calculation",
    "ChargeResult",
    "EntitlementCheck",
    "EntitlementGrant",
    "Entitlements",
    "ErrorBody",
    "ErrorDetail",
    "EventOut",
    "EventQueued",
    "Health",
    "Invoice",
    "Job",
    "JobError",
    "JobQueued",
    "LineEvents",
    "LineItem",
    "Out",
    "PlanRef",
    "Preview",
    "Ready",
    "TierRow",
    "UsageCompute",
    "UsageComputeMeta",
    "UsageComputeRow",
    "UsageSummary",
    "UsageSummaryMeta",
    "UsageSummaryRow",
    "VoidItem",
    "VoidResult",
    "WebhookReceived",
    "page_of",
]


class Out(Struct, frozen=True, kw_only=True):
    """Base of every response body."""


# ---- errors (§3) -------------------------------------------------------------------------
class ErrorDetail(Out, frozen=True, kw_only=True):
    code: str
    message: str
    field: str | None
    existing_invoice_id: str | UnsetType = UNSET
    decline_code: str | None | UnsetType = UNSET
    payment_intent_id: str | None | UnsetType = UNSET
    checks: dict[str, str] | UnsetType = UNSET
    reasons: dict[str, str] | UnsetType = UNSET


class ErrorBody(Out, frozen=True, kw_only=True):
    error: ErrorDetail


# ---- operations (§17) --------------------------------------------------------------------
class Health(Out, frozen=True, kw_only=True):
    status: Literal["ok"]


class Ready(Out, frozen=True, kw_only=True):
    status: Literal["ready"]


# ---- events (§9) -------------------------------------------------------------------------
class EventQueued(Out, frozen=True, kw_only=True):
    event_id: str
    status: Literal["queued"]
    idempotency_key: str


class BatchError(Out, frozen=True, kw_only=True):
    code: str
    message: str
    field: str | None


class BatchItem(Out, frozen=True, kw_only=True):
    """One event's result: ``queued``/``stored``/``duplicate`` with its id, or ``rejected`` with why."""

    index: int
    status: Literal["queued", "stored", "duplicate", "rejected"]
    event_id: str | UnsetType = UNSET
    error: BatchError | UnsetType = UNSET


class BatchResult(Out, frozen=True, kw_only=True):
    accepted: int
    rejected: int
    results: list[BatchItem]


class VoidItem(Out, frozen=True, kw_only=True):
    idempotency_key: str
    event_id: str
    status: Literal["voided", "already_voided", "pending"]


class VoidResult(Out, frozen=True, kw_only=True):
    voided: int
    results: list[VoidItem]


class EventOut(Out, frozen=True, kw_only=True):
    event_id: str
    idempotency_key: str
    customer_id: str
    metric_key: str
    value: Quantity
    timestamp: str
    properties: dict[str, str]
    ingested_at: str
    voided: bool
    voided_at: str | None
    void_reason: str | None


# ---- usage (§10) -------------------------------------------------------------------------
class UsageSummaryRow(Out, frozen=True, kw_only=True):
    metric_key: str
    aggregation: str
    quantity: Quantity
    event_count: int


class UsageSummaryMeta(Out, frozen=True, kw_only=True):
    lag_seconds: float


class UsageSummary(Out, frozen=True, kw_only=True):
    customer_id: str
    from_: str = msgspec.field(name="from")
    to: str
    data: list[UsageSummaryRow]
    meta: UsageSummaryMeta


class UsageComputeRow(Out, frozen=True, kw_only=True):
    metric_key: str
    aggregation: str
    quantity: Quantity
    event_count: int
    events_checksum: str


class UsageComputeMeta(Out, frozen=True, kw_only=True):
    event_count: int
    late_event_count: int
    duplicate_count: int
    usage_as_of: str


class UsageCompute(Out, frozen=True, kw_only=True):
    customer_id: str
    period_start: str
    period_end: str
    data: list[UsageComputeRow]
    meta: UsageComputeMeta


# ---- invoices, pricing (§11, §12) --------------------------------------------------------
class TierRow(Out, frozen=True, kw_only=True):
    tier: int
    from_: int = msgspec.field(name="from")
    up_to: int | None
    quantity: Quantity
    unit_price: str
    flat_amount: str
    amount: int


class LineItem(Out, frozen=True, kw_only=True):
    """An invoice, calculation or preview line; ``event_count``/``events_checksum`` trace it to its events."""

    charge_id: str
    description: str
    pricing_model: str
    metric_key: str | None
    quantity: Quantity
    unit_price: str | None
    amount: int
    event_count: int | None
    events_checksum: str | None
    packages: int | UnsetType = UNSET
    tier_breakdown: list[TierRow] | UnsetType = UNSET
    previous_quantity: Quantity | UnsetType = UNSET


class Invoice(Out, frozen=True, kw_only=True):
    id: str
    type: Literal["standard", "adjustment"]
    adjusts_invoice_id: str | None
    customer_id: str
    subscription_id: str
    plan_id: str
    plan_version: int
    status: Literal["issued", "paid", "archived"]
    currency: str
    period_start: str
    period_end: str
    total_amount: int
    line_items: list[LineItem]
    calculation_id: str | None
    usage_as_of: str | None
    payment_intent_id: str | None
    created_at: str
    paid_at: str | None
    archived_at: str | None
    archive_reason: str | None


class Calculation(Out, frozen=True, kw_only=True):
    calculation_id: str
    customer_id: str
    subscription_id: str
    plan_id: str
    plan_version: int
    period_start: str
    period_end: str
    currency: str
    total_amount: int
    line_items: list[LineItem]
    usage_as_of: str
    created_at: str
    expires_at: str


class Preview(Out, frozen=True, kw_only=True):
    plan_id: str
    plan_version: int
    currency: str
    total_amount: int
    line_items: list[LineItem]


class LineEvents(Out, frozen=True, kw_only=True):
    """A page of the events behind one line, with the line's own count and checksum."""

    data: list[EventOut]
    next_cursor: str | None
    event_count: int | None
    events_checksum: str | None


class JobError(Out, frozen=True, kw_only=True):
    customer_id: str
    subscription_id: str
    error: Any


class Job(Out, frozen=True, kw_only=True):
    id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    cutoff_date: str
    invoices_created: int
    invoices_skipped: int
    invoices_existing: int
    errors: list[JobError]
    created_at: str
    started_at: str | None
    finished_at: str | None


class JobQueued(Out, frozen=True, kw_only=True):
    job_id: str
    status: Literal["queued"]


# ---- payments and audit (§13, §14) -------------------------------------------------------
class ChargeResult(Out, frozen=True, kw_only=True):
    invoice_id: str
    status: Literal["paid"]
    payment_intent_id: str | None
    amount: int
    currency: str
    charged_at: str


class WebhookReceived(Out, frozen=True, kw_only=True):
    received: bool


class AuditEntry(Out, frozen=True, kw_only=True):
    id: str
    type: str
    actor: str
    at: str
    data: dict[str, Any]


# ---- entitlements (§15) ------------------------------------------------------------------
class PlanRef(Out, frozen=True, kw_only=True):
    plan_id: str
    plan_version: int


class EntitlementCheck(Out, frozen=True, kw_only=True):
    feature_key: str
    type: Literal["boolean", "limit", "custom"] | None
    granted: bool
    value: bool | int | str | None | UnsetType = UNSET
    limit: int | UnsetType = UNSET
    current_usage: Quantity | UnsetType = UNSET
    remaining: Quantity | UnsetType = UNSET
    exceeded: bool | UnsetType = UNSET


class EntitlementGrant(EntitlementCheck, frozen=True, kw_only=True):
    source_plans: list[PlanRef] = []


class Entitlements(Out, frozen=True, kw_only=True):
    customer_id: str
    resolved_at: str
    entitlements: list[EntitlementGrant]


# ---- pages (§1) --------------------------------------------------------------------------
_pages: dict[type, type[Struct]] = {}


def page_of(item: type) -> type[Struct]:
    """The ``{data, next_cursor}`` list page of ``item`` (one named struct per item type).

    The struct is built at run time, so a type checker cannot read ``list[item]`` here or a
    handler's ``Response[CustomerPage]``: those carry ``type: ignore[valid-type]``; the served
    OpenAPI document and the strict decoders see the real struct.
    """
    if item not in _pages:
        _pages[item] = msgspec.defstruct(
            f"{item.__name__}Page", [("data", list[item]), ("next_cursor", str | None)],  # type: ignore[valid-type]
            bases=(Out,), frozen=True, kw_only=True, module=__name__)
    return _pages[item]
