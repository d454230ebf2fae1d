"""Subscriptions (§8): a customer pinned to one plan version, billed in anchored periods."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from abaxus.billing.customers import load_customer
from abaxus.billing.plans import subscribable_version
from abaxus.billing.timeline import Timeline, load_amendments
from abaxus.clock import Clock
from abaxus.errors import InvalidInput, NotFound
from abaxus.ids import new_id
from abaxus.schemas.catalog import SubscriptionCreate, SubscriptionOut
from abaxus.store.paging import fetch_page
from abaxus.store.tables import subscriptions
from abaxus.timefmt import add_months, format_ms, parse_timestamp

__all__ = ["create_subscription", "get_subscription", "list_subscriptions", "load_subscription", "period_containing"]

_STATUSES = ("active", "paused", "cancelled", "ended")


def subscription_out(row: Any, now: int, changes: list[dict[str, Any]] | None = None) -> SubscriptionOut:
    """The subscription as its amendments effective by ``now`` left it: version, status, end."""
    timeline = Timeline(dict(row), changes or []).upto(now)
    plan_id, plan_version = timeline.version_at(now)
    return SubscriptionOut(
        id=row["id"], customer_id=row["customer_id"], plan_id=plan_id, plan_version=plan_version,
        status=timeline.status_at(now), start_date=format_ms(row["start_date"]) or "",
        end_date=format_ms(timeline.end_date()), created_at=format_ms(row["created_at"]) or "",
    )


def period_containing(start: int, months: int, instant: int) -> tuple[int, int]:
    """The period [S + i·P, S + (i+1)·P) that holds ``instant`` (months added to S itself)."""
    if instant < start:
        return start, add_months(start, months)
    i = max(0, ((instant - start) // (86_400_000 * 28 * months)) - 1)
    while add_months(start, (i + 1) * months) <= instant:
        i += 1
    while i > 0 and add_months(start, i * months) > instant:
        i -= 1
    return add_months(start, i * months), add_months(start, (i + 1) * months)


def create_subscription(engine: Engine, body: SubscriptionCreate, *, clock: Clock) -> SubscriptionOut:
    start = parse_timestamp(body.start_date, "start_date") // 1000 * 1000  # fractional seconds dropped
    end = parse_timestamp(body.end_date, "end_date") if body.end_date is not None else None
    if end is not None and end <= start:
        raise InvalidInput("INVALID_DATE_RANGE", "end_date (exclusive) must be after start_date.", "end_date")
    with engine.begin() as conn:
        customer = load_customer(conn, body.customer_id, "customer_id")
        now = clock.now_ms()
        pv = subscribable_version(conn, body.plan_id, body.plan_version, now=now)
        if customer["currency"] is not None and customer["currency"] != pv.currency:
            raise InvalidInput("CURRENCY_MISMATCH",
                               f"Customer bills in {customer['currency']} but plan '{pv.plan_id}' is in {pv.currency}.",
                               "plan_id")
        row = {"id": new_id("sub"), "customer_id": body.customer_id, "plan_id": pv.plan_id,
               "plan_version": pv.version, "start_date": start, "end_date": end, "created_at": now}
        conn.execute(insert(subscriptions).values(**row))
    return subscription_out(row, now)


def load_subscription(conn: Connection, subscription_id: str, field: str | None = None) -> dict[str, Any]:
    row = conn.execute(select(subscriptions).where(subscriptions.c.id == subscription_id)).mappings().first()
    if row is None:
        raise NotFound("SUBSCRIPTION_NOT_FOUND", f"No subscription '{subscription_id}'.", field)
    return dict(row)


def get_subscription(engine: Engine, subscription_id: str, *, clock: Clock) -> SubscriptionOut:
    with engine.connect() as conn:
        sub = load_subscription(conn, subscription_id)
        return subscription_out(sub, clock.now_ms(), load_amendments(conn, [subscription_id])[subscription_id])


def list_subscriptions(engine: Engine, customer_id: str | None, status: str | None, limit: int,
                       cursor: str | None, *, clock: Clock) -> tuple[list[SubscriptionOut], str | None]:
    query = select(subscriptions)
    now = clock.now_ms()
    if customer_id is not None:
        query = query.where(subscriptions.c.customer_id == customer_id)
    if status is not None and status not in _STATUSES:
        raise InvalidInput("INVALID_FIELD", "status must be active, paused, cancelled or ended.", "status")
    with engine.connect() as conn:
        if status is not None:
            # Status follows from amendments at this instant, so it is resolved here, then paged by id.
            rows = [dict(r) for r in conn.execute(query).mappings()]
            changes = load_amendments(conn, None)
            matching = [r["id"] for r in rows if Timeline(r, changes.get(r["id"], [])).status_at(now) == status]
            query = select(subscriptions).where(subscriptions.c.id.in_(matching))
        page = fetch_page(conn, query, [subscriptions.c.created_at, subscriptions.c.id],
                          kind="subscriptions", limit=limit, cursor=cursor)
        changes = load_amendments(conn, [r["id"] for r in page.rows])
    return [subscription_out(r, now, changes[r["id"]]) for r in page.rows], page.next_cursor
