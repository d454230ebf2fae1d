"""Event intake bodies (§9)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec
from msgspec import Struct

__all__ = ["EventBatchIn", "EventBatchTyped", "EventIn", "UsageComputeIn", "VoidIn"]

PropertyValue = str | int | float | bool | None


class EventIn(Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    """One event as sent. ``gc=False``: a batch decodes 1,000 of these, and as tracked objects
    they would trigger the cyclic GC several times per request (they hold no cycles)."""

    customer_id: str
    metric_key: str
    timestamp: datetime
    idempotency_key: str
    value: Decimal | None = None
    properties: dict[str, PropertyValue] | None = None


class EventBatchIn(Struct, forbid_unknown_fields=True, kw_only=True):
    events: list[msgspec.Raw]


class EventBatchTyped(Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    """The whole batch decoded in one call: the fast path when every event is well formed."""

    events: list[EventIn]


class VoidIn(Struct, forbid_unknown_fields=True, kw_only=True):
    idempotency_keys: list[str]
    reason: str


class UsageComputeIn(Struct, forbid_unknown_fields=True, kw_only=True):
    customer_id: str
    period_start: str
    period_end: str
    metric_key: str | None = None
