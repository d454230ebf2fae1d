"""Subscription amendments (§8): plan changes, pauses, resumes, cancellations, end-date changes.

An amendment is stored once and never edited; it takes effect at ``effective_at`` exactly,
and everything that depends on it (billing windows, entitlements, status) reads the
timeline, so an amendment is "applied" the moment its instant has passed.
"""

from __future__ import annotations

from typing import Any

from msgspec import UNSET
from sqlalchemy import Engine, insert, select

from abaxus.billing.plans import load_version, subscribable_version
from abaxus.billing.subscriptions import load_subscription, period_containing
from abaxus.billing.timeline import Timeline, load_amendments
from abaxus.clock import Clock
from abaxus.errors import Conflict, InvalidInput
from abaxus.ids import new_id
from abaxus.schemas.catalog import AmendmentCreate, AmendmentOut
from abaxus.store.paging import fetch_page
from abaxus.store.tables import amendments, subscriptions
from abaxus.timefmt import format_ms, parse_timestamp

__all__ = ["amendment_out", "create_amendment", "list_amendments"]

_FIELDS = {"plan_change": {"plan_id", "plan_version", "prorate"}, "pause": {"resume_date"}, "resume": set(),
           "cancel": set(), "end_date_change": {"end_date"}}


def amendment_out(row: dict[str, Any], now: int) -> AmendmentOut:
    applied = row["effective_at"] <= now
    return AmendmentOut(
        id=row["id"], subscription_id=row["subscription_id"], type=row["type"], effective=row["effective"],
        effective_at=format_ms(row["effective_at"]) or "", plan_id=row["plan_id"], plan_version=row["plan_version"],
        prorate=bool(row["prorate"]), resume_date=format_ms(row["resume_date"]), end_date=format_ms(row["end_date"]),
        status="applied" if applied else "scheduled", created_at=format_ms(row["created_at"]) or "",
        applied_at=format_ms(max(row["effective_at"], row["created_at"])) if applied else None,
    )


def list_amendments(engine: Engine, subscription_id: str, limit: int,
                    cursor: str | None, *, clock: Clock) -> tuple[list[AmendmentOut], str | None]:
    """A subscription's amendments, newest first, scheduled and applied alike."""
    now = clock.now_ms()
    with engine.connect() as conn:
        load_subscription(conn, subscription_id)
        page = fetch_page(conn, select(amendments).where(amendments.c.subscription_id == subscription_id),
                          [amendments.c.created_at, amendments.c.id], kind="amendments", limit=limit, cursor=cursor)
    return [amendment_out(dict(r), now) for r in page.rows], page.next_cursor


def _effective_at(body: AmendmentCreate, timeline: Timeline, conn: Any, now: int) -> int:
    if body.effective == "immediate":
        return now
    if body.effective == "end_of_period":
        plan_id, version = timeline.version_at(now)
        pv = load_version(conn, plan_id, version)
        return period_containing(timeline.sub["start_date"], pv.months, now)[1]
    at = parse_timestamp(body.effective, "effective")
    if at < now:
        raise InvalidInput("INVALID_TIMESTAMP", "'effective' is in the past: use \"immediate\", \"end_of_period\" "
                           "or a future timestamp.", "effective")
    return at


def _check_state(body: AmendmentCreate, timeline: Timeline, at: int) -> None:
    state = timeline.upto(at).status_at(at)
    if state in ("cancelled", "ended"):
        raise Conflict("AMENDMENT_CONFLICT", f"The subscription is {state} at {format_ms(at)}; nothing can change after that.")
    if body.type == "pause" and state == "paused":
        raise Conflict("AMENDMENT_CONFLICT", f"The subscription is already paused at {format_ms(at)}.")
    if body.type == "resume" and state != "paused":
        raise Conflict("AMENDMENT_CONFLICT", f"The subscription is not paused at {format_ms(at)}; there is nothing to resume.")


def create_amendment(engine: Engine, subscription_id: str, body: AmendmentCreate, *, clock: Clock) -> AmendmentOut:
    """Validate an amendment against the subscription's state at its instant, then store it."""
    for name in ("plan_id", "plan_version", "prorate", "resume_date", "end_date"):
        if getattr(body, name) is not UNSET and name not in _FIELDS[body.type]:
            raise InvalidInput("INVALID_FIELD", f"'{name}' does not apply to a {body.type} amendment.", name)
    now = clock.now_ms()
    with engine.begin() as conn:
        # Serialise amendments of one subscription (PostgreSQL row lock; SQLite's writer lock).
        conn.execute(select(subscriptions.c.id).where(subscriptions.c.id == subscription_id).with_for_update())
        sub = load_subscription(conn, subscription_id)
        timeline = Timeline(sub, load_amendments(conn, [subscription_id])[subscription_id])
        at = _effective_at(body, timeline, conn, now)
        _check_state(body, timeline, at)
        row: dict[str, Any] = {
            "id": new_id("amd"), "subscription_id": subscription_id, "type": body.type,
            "effective": body.effective if body.effective in ("immediate", "end_of_period") else format_ms(at),
            "effective_at": at, "plan_id": None, "plan_version": None, "prorate": False, "resume_date": None,
            "end_date": None, "created_at": now, "credited_invoice_id": None,
        }
        if body.type == "plan_change":
            row.update(_plan_change(conn, body, timeline, at, now))
        elif body.type == "pause" and body.resume_date not in (UNSET, None):
            row["resume_date"] = parse_timestamp(body.resume_date, "resume_date")
            if row["resume_date"] <= at:
                raise InvalidInput("INVALID_DATE_RANGE", "resume_date must be after the pause takes effect.", "resume_date")
        elif body.type == "end_date_change":
            row["end_date"] = _new_end_date(body, sub, at)
        conn.execute(insert(amendments).values(**row))
    return amendment_out(row, now)


def _plan_change(conn: Any, body: AmendmentCreate, timeline: Timeline, at: int, now: int) -> dict[str, Any]:
    if body.plan_id is UNSET:
        raise InvalidInput("MISSING_FIELD", "A plan_change needs 'plan_id': the plan to move to.", "plan_id")
    target = subscribable_version(conn, body.plan_id, None if body.plan_version is UNSET else body.plan_version,
                                  "plan_version", now=now)
    current = load_version(conn, *timeline.upto(at).version_at(at))
    if (target.currency, target.billing_period) != (current.currency, current.billing_period):
        raise InvalidInput("PLAN_CHANGE_INCOMPATIBLE",
                           f"'{target.plan_id}' v{target.version} bills {target.billing_period} in {target.currency}; "
                           f"the subscription bills {current.billing_period} in {current.currency}.", "plan_id")
    if (target.plan_id, target.version) == (current.plan_id, current.version):
        raise Conflict("AMENDMENT_CONFLICT", f"The subscription is already on '{target.plan_id}' v{target.version} then.")
    return {"plan_id": target.plan_id, "plan_version": target.version,
            "prorate": bool(body.prorate) if body.prorate is not UNSET else False}


def _new_end_date(body: AmendmentCreate, sub: dict[str, Any], at: int) -> int | None:
    if body.end_date is UNSET:
        raise InvalidInput("MISSING_FIELD", "An end_date_change needs 'end_date': the new exclusive end, or null.", "end_date")
    if body.end_date is None:
        return None
    end = parse_timestamp(body.end_date, "end_date")
    if end <= max(at, sub["start_date"]):
        raise InvalidInput("INVALID_DATE_RANGE", "end_date must be after the change takes effect and after start_date.",
                           "end_date")
    return end
