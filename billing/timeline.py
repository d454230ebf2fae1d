"""A subscription's history (§8): its pinned version, pauses, cancellation and end, as of any instant.

Amendments are immutable and take effect at their exact ``effective_at``, so the timeline is
a pure function of the subscription row and its amendments: billing, entitlements and the
subscription's status all read it, and re-pricing a past period gives the same windows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from abaxus.store.tables import amendments

__all__ = ["FOREVER", "Timeline", "load_amendments", "load_timeline", "subtract"]

FOREVER = 2 ** 62


def load_amendments(conn: Connection, subscription_ids: Iterable[str] | None) -> dict[str, list[dict[str, Any]]]:
    """Amendments by subscription (all of them for None), in the order they take effect
    (ties: the earlier request first). Subscriptions without amendments map to []."""
    query = select(amendments).order_by(amendments.c.effective_at, amendments.c.created_at, amendments.c.id)
    out: dict[str, list[dict[str, Any]]] = {}
    if subscription_ids is not None:
        ids = list(subscription_ids)
        out = {i: [] for i in ids}
        if not ids:
            return out
        query = query.where(amendments.c.subscription_id.in_(ids))
    for row in conn.execute(query).mappings():
        out.setdefault(row["subscription_id"], []).append(dict(row))
    return out


def load_timeline(conn: Connection, sub: dict[str, Any]) -> Timeline:
    return Timeline(sub, load_amendments(conn, [sub["id"]])[sub["id"]])


def subtract(start: int, end: int, holes: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """[start, end) minus the holes, as sorted disjoint non-empty intervals."""
    pieces = [(start, end)]
    for a, b in sorted(holes):
        nxt = []
        for s, e in pieces:
            if b <= s or a >= e:
                nxt.append((s, e))
                continue
            if s < a:
                nxt.append((s, a))
            if b < e:
                nxt.append((b, e))
        pieces = nxt
    return [(s, e) for s, e in pieces if e > s]


@dataclass(frozen=True)
class Timeline:
    """The subscription as its amendments shape it (``upto`` keeps those effective by an instant)."""

    sub: dict[str, Any]
    amendments: list[dict[str, Any]]

    def upto(self, instant: int) -> Timeline:
        """The timeline as it stood with only the amendments effective at or before ``instant``."""
        return Timeline(self.sub, [a for a in self.amendments if a["effective_at"] <= instant])

    def versions(self) -> list[tuple[int, str, int]]:
        """(from, plan_id, version) in time order, starting with the subscription's pinned version."""
        out = [(self.sub["start_date"], self.sub["plan_id"], self.sub["plan_version"])]
        for a in self.amendments:
            if a["type"] == "plan_change":
                out.append((max(a["effective_at"], self.sub["start_date"]), a["plan_id"], a["plan_version"]))
        return out

    def version_at(self, instant: int) -> tuple[str, int]:
        current = self.versions()[0]
        for v in self.versions():
            if v[0] <= instant:
                current = v
        return current[1], current[2]

    def pauses(self) -> list[tuple[int, int]]:
        """Paused intervals [from, to); an open pause runs until a resume (or for ever)."""
        out: list[list[int]] = []
        for a in self.amendments:
            if a["type"] == "pause":
                out.append([a["effective_at"], a["resume_date"] if a["resume_date"] is not None else FOREVER])
            elif a["type"] == "resume" and out and out[-1][0] <= a["effective_at"] < out[-1][1]:
                out[-1][1] = a["effective_at"]
        return [(s, e) for s, e in out if e > s]

    def end_date(self) -> int | None:
        end = self.sub["end_date"]
        for a in self.amendments:
            if a["type"] == "end_date_change":
                end = a["end_date"]
        return end  # type: ignore[no-any-return]

    def cancelled_at(self) -> int | None:
        return next((a["effective_at"] for a in self.amendments if a["type"] == "cancel"), None)

    def stop(self) -> int:
        """Where billing stops: the end date or the cancellation, whichever comes first."""
        return min(x for x in (self.end_date(), self.cancelled_at(), FOREVER) if x is not None)

    def status_at(self, instant: int) -> str:
        at = self.upto(instant)
        cancelled = at.cancelled_at()
        if cancelled is not None and cancelled <= instant:
            return "cancelled"
        end = at.end_date()
        if end is not None and end <= instant:
            return "ended"
        if any(s <= instant < e for s, e in at.pauses()):
            return "paused"
        return "active"
