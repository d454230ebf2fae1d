"""The transactional outbox of outbound webhooks: an event is written beside the change it announces.

``emit`` runs inside the caller's transaction. It stores the event once (``whev_…``: the id
receivers deduplicate on, with the exact JSON body every delivery of it sends) and one pending
delivery per enabled endpoint subscribed to its type. If the change rolls back, the event
never existed; once it commits, the delivery worker (``abaxus.billing.webhooks``) sends it at
least once, whatever crashes or restarts come between. No network call happens here, so an
API request never waits for a receiver.

An event no endpoint subscribes to is not stored: without webhooks configured, invoicing
pays one cached read per transaction and nothing else.
"""

from __future__ import annotations

import weakref
from typing import Any

import msgspec
from sqlalchemy import Connection, insert, select

from abaxus.ids import new_id
from abaxus.schemas.codec import encode_json
from abaxus.store.tables import outbox_events, webhook_deliveries, webhook_endpoints
from abaxus.timefmt import format_ms

__all__ = ["EVENT_TYPES", "emit", "invoice_data"]

EVENT_TYPES = (
    "invoice.issued",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.adjusted",
    "alert.triggered",
    "credit_grant.depleted",
)

_CACHE = "abaxus_outbox_subscribers"
_decode_types = msgspec.json.Decoder(list[str])


def _subscribers(conn: Connection) -> list[tuple[str, frozenset[str]]]:
    """Enabled endpoints and their event types, read once per transaction.

    A bulk run emits thousands of events in one transaction; they all see the endpoints as
    they were when its first event was written. The cache entry (on the pooled connection)
    names its transaction by weak reference, so it matches this very transaction only.
    """
    tx = conn.get_transaction()
    cached = conn.info.get(_CACHE)
    if cached is not None and tx is not None and cached[0]() is tx:
        return cached[1]  # type: ignore[no-any-return]
    rows = conn.execute(select(webhook_endpoints.c.id, webhook_endpoints.c.events)
                        .where(webhook_endpoints.c.status == "enabled")
                        .order_by(webhook_endpoints.c.id)).all()
    found = [(r.id, frozenset(_decode_types.decode(r.events))) for r in rows]
    if tx is not None:
        conn.info[_CACHE] = (weakref.ref(tx), found)
    return found


def emit(conn: Connection, type_: str, data: dict[str, Any], *, now: int) -> str:
    """Record event ``type_`` with ``data`` in the caller's transaction; its ``whev_…`` id.

    Call it in the same ``engine.begin()`` block as the change it announces, after the change;
    ``now`` is the change's instant (the event's ``created_at``, its deliveries' first attempt).
    """
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {type_!r}; add it to EVENT_TYPES and the docs")
    event_id = new_id("whev")
    targets = [endpoint_id for endpoint_id, types in _subscribers(conn) if type_ in types or "*" in types]
    if not targets:
        return event_id
    payload = encode_json({"id": event_id, "type": type_, "created_at": format_ms(now), "data": data}).decode()
    conn.execute(insert(outbox_events).values(id=event_id, type=type_, payload=payload, created_at=now))
    conn.execute(insert(webhook_deliveries), [
        {"id": new_id("whdl"), "event_id": event_id, "endpoint_id": endpoint_id, "event_type": type_,
         "status": "pending", "attempt_count": 0, "next_attempt_at": now, "retry_until": None, "claimed_until": None,
         "last_status_code": None, "last_error": None, "created_at": now, "delivered_at": None}
        for endpoint_id in targets])
    return event_id


def invoice_data(row: Any, **extra: Any) -> dict[str, Any]:
    """The ``data`` of an ``invoice.*`` event: the invoice's identity, state and total (no lines).

    Receivers fetch ``GET /v1/invoices/{id}`` for the lines; the event stays small and cheap
    to build inside a bulk run's transaction.
    """
    return {
        "invoice_id": row["id"], "type": row["type"], "adjusts_invoice_id": row["adjusts_invoice_id"],
        "customer_id": row["customer_id"], "subscription_id": row["subscription_id"], "status": row["status"],
        "currency": row["currency"], "total_amount": row["total_amount"],
        "period_start": format_ms(row["period_start"]), "period_end": format_ms(row["period_end"]),
        "created_at": format_ms(row["created_at"]), "paid_at": format_ms(row["paid_at"]), **extra,
    }
