"""Request and response bodies of outbound webhooks and usage alerts.

Webhook endpoint secrets appear in exactly one answer, the ``201`` of their creation
(``UNSET`` everywhere else, so left out of the JSON). Alert thresholds are exact decimals
written as plain JSON numbers: a quantity for ``usage`` alerts, integer minor units for
``spend`` alerts.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import UNSET, Meta, UnsetType

from abaxus.schemas.catalog import Request
from abaxus.schemas.responses import Out
from abaxus.schemas.types import ClientId, DecimalIn, MetricKey, Quantity, text

__all__ = [
    "AlertCreate", "AlertOut", "EventType", "WebhookAttemptOut", "WebhookDeliveryOut", "WebhookEndpointCreate",
    "WebhookEndpointOut", "WebhookEndpointPatch",
]

EventType = Literal["invoice.issued", "invoice.paid", "invoice.payment_failed", "invoice.adjusted", "alert.triggered",
                    "credit_grant.depleted", "*"]
Url = Annotated[str, Meta(min_length=1, max_length=2048, description="An absolute http:// or https:// URL")]
EventTypes = Annotated[list[EventType], Meta(min_length=1, max_length=7, description="Event types, or [\"*\"] for all")]


# ---- webhook endpoints -------------------------------------------------------------------
class WebhookEndpointCreate(Request, kw_only=True):
    url: Url
    events: EventTypes
    description: Annotated[str, text(500, 0)] | None = None


class WebhookEndpointPatch(Request, kw_only=True):
    url: Url | UnsetType = UNSET
    events: EventTypes | UnsetType = UNSET
    description: Annotated[str, text(500, 0)] | None | UnsetType = UNSET


class WebhookEndpointOut(Out, frozen=True, kw_only=True):
    id: str
    url: str
    events: list[str]
    description: str | None
    status: Literal["enabled", "disabled"]
    created_at: str
    updated_at: str
    disabled_at: str | None
    secret: str | UnsetType = UNSET


class WebhookAttemptOut(Out, frozen=True, kw_only=True):
    """One POST to the endpoint: its HTTP status (null if none came back) or the error."""

    attempt: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookDeliveryOut(Out, frozen=True, kw_only=True):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: Literal["pending", "succeeded", "failed"]
    attempt_count: int
    attempts: list[WebhookAttemptOut]
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: str | None
    retry_until: str
    created_at: str
    delivered_at: str | None


# ---- alerts ------------------------------------------------------------------------------
class AlertCreate(Request, kw_only=True):
    customer_id: ClientId
    kind: Literal["usage", "spend"]
    threshold: DecimalIn
    metric_key: MetricKey | None = None


class AlertOut(Out, frozen=True, kw_only=True):
    id: str
    customer_id: str
    metric_key: str | None
    kind: Literal["usage", "spend"]
    threshold: Quantity
    status: Literal["active", "disabled"]
    created_at: str
    disabled_at: str | None
    last_triggered_at: str | None
    triggered_period_start: str | None
    triggered_period_end: str | None
    triggered_value: Quantity | None
