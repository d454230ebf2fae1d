"""Events (§9) and usage (§10)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from abaxus_client.models._base import UNSET, DecimalLike, Page, Request, Response, Timestamp, UnsetType

__all__ = [
    "BatchEventResult", "BatchResult", "ErrorDetail", "Event", "EventAck", "EventBatch", "EventVoid", "LineItemEventsPage",
    "StoredEvent", "UsageCompute", "UsageComputeMeta", "UsageComputeRequest", "UsageComputeRow",
    "UsageSummary", "UsageSummaryMeta", "UsageSummaryRow", "VoidItem", "VoidResult",
]

PropertyValue = str | int | float | bool | None


class Event(Request, frozen=True, kw_only=True, gc=False):
    """One usage event. ``idempotency_key`` names it for all time: resending it is always safe.

    ``value`` may be left out for ``count``/``unique_count`` metrics (it defaults to 1).
    """

    customer_id: str
    metric_key: str
    timestamp: Timestamp
    idempotency_key: str
    value: DecimalLike | UnsetType = UNSET
    properties: dict[str, PropertyValue] | UnsetType = UNSET


class EventBatch(Request, frozen=True, kw_only=True):
    events: list[Event]


class EventVoid(Request, frozen=True, kw_only=True):
    idempotency_keys: list[str]
    reason: str


class ErrorDetail(Response, frozen=True, kw_only=True):
    """Why one event (or one request) was refused: the §3 code, message and field."""

    code: str
    message: str = ""
    field: str | None = None


class EventAck(Response, frozen=True, kw_only=True):
    """``202``: the event is durable (``status: "queued"``); a duplicate gets the same id."""

    event_id: str
    status: str
    idempotency_key: str


class BatchEventResult(Response, frozen=True, kw_only=True):
    """One event of a batch: ``queued``/``stored``/``duplicate`` with its id, or ``rejected`` with why."""

    index: int
    status: str
    event_id: str | None = None
    error: ErrorDetail | None = None

    @property
    def ok(self) -> bool:
        return self.status != "rejected"


class BatchResult(Response, frozen=True, kw_only=True):
    """The answer to a batch or backfill, whether 202/200 (all in), 207 (some) or 422 (none)."""

    accepted: int
    rejected: int
    results: list[BatchEventResult]


class VoidItem(Response, frozen=True, kw_only=True):
    idempotency_key: str
    event_id: str | None = None
    status: str  # voided | already_voided | pending


class VoidResult(Response, frozen=True, kw_only=True):
    voided: int
    results: list[VoidItem]


class StoredEvent(Response, frozen=True, kw_only=True):
    """An event as stored (``GET /v1/events``, line-item events); properties come back as strings."""

    event_id: str
    idempotency_key: str
    customer_id: str
    metric_key: str
    value: Decimal
    timestamp: str
    properties: dict[str, Any] = {}
    ingested_at: str | None = None
    voided: bool = False
    voided_at: str | None = None
    void_reason: str | None = None


class UsageSummaryRow(Response, frozen=True, kw_only=True):
    metric_key: str
    aggregation: str
    quantity: Decimal
    event_count: int


class UsageSummaryMeta(Response, frozen=True, kw_only=True):
    lag_seconds: float = 0.0


class UsageSummary(Response, frozen=True, kw_only=True):
    """Pre-aggregated usage (fast, may lag: see ``meta.lag_seconds``)."""

    customer_id: str
    from_: str = msgspec.field(name="from")
    to: str
    data: list[UsageSummaryRow]
    meta: UsageSummaryMeta = UsageSummaryMeta()


class UsageComputeRequest(Request, frozen=True, kw_only=True):
    customer_id: str
    period_start: Timestamp
    period_end: Timestamp
    metric_key: str | UnsetType = UNSET


class UsageComputeRow(Response, frozen=True, kw_only=True):
    metric_key: str
    aggregation: str
    quantity: Decimal
    event_count: int
    events_checksum: str | None = None


class UsageComputeMeta(Response, frozen=True, kw_only=True):
    event_count: int
    late_event_count: int = 0
    duplicate_count: int = 0
    usage_as_of: str | None = None


class UsageCompute(Response, frozen=True, kw_only=True):
    """Exact usage from raw events, as an invoice would count it."""

    customer_id: str
    period_start: str
    period_end: str
    data: list[UsageComputeRow]
    meta: UsageComputeMeta


class LineItemEventsPage(Page[StoredEvent], frozen=True, kw_only=True):
    """A page of the events behind an invoice line, with the line's totals."""

    event_count: int = 0
    events_checksum: str | None = None

