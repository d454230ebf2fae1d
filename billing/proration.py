"""Proration credits (§8): a prorated plan change refunds the unused part of old flat fees.

Each flat fee of the version left behind yields one credit line on the next invoice created
for the subscription: credit = −round_half_up(amount_minor × U / D), D the days of the period
holding the change, U the whole days from the change to that period's end. A credit is
carried by exactly one live invoice; archiving that invoice frees it for the next one.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Connection, or_, select, update

from abaxus.billing.plans import load_version
from abaxus.billing.pricing import Window
from abaxus.billing.subscriptions import period_containing
from abaxus.billing.timeline import Timeline
from abaxus.money import round_minor
from abaxus.schemas.catalog import FlatFeeCharge
from abaxus.store.tables import amendments, invoices

__all__ = ["credit_lines", "mark_credited"]

_DAY_MS = 86_400_000
PREFIX = "proration:"


def credit_lines(conn: Connection, window: Window, timeline: Timeline) -> list[dict[str, Any]]:
    """Credit lines not yet carried by a live invoice, for prorated changes effective by the
    cutoff of ``window`` (the subscription's last window in the period being invoiced)."""
    sub, cutoff_ms, currency = timeline.sub, window.period_end, window.plan.currency
    carried = select(invoices.c.id).where(invoices.c.id == amendments.c.credited_invoice_id,
                                          invoices.c.status != "archived").exists()
    rows = conn.execute(select(amendments).where(
        amendments.c.subscription_id == sub["id"], amendments.c.type == "plan_change", amendments.c.prorate.is_(True),
        amendments.c.effective_at <= cutoff_ms, or_(amendments.c.credited_invoice_id.is_(None), ~carried),
    ).order_by(amendments.c.effective_at, amendments.c.created_at, amendments.c.id)).mappings().all()
    lines = []
    for amd in rows:
        at = amd["effective_at"]
        old_plan, old_version = timeline.upto(at - 1).version_at(at - 1)
        old = load_version(conn, old_plan, old_version)
        p_start, p_end = period_containing(sub["start_date"], old.months, at)
        days, unused = (p_end - p_start) // _DAY_MS, (p_end - at) // _DAY_MS
        for charge in old.charges:
            if not isinstance(charge, FlatFeeCharge):
                continue
            credit = (Decimal(round_minor(charge.amount, currency)) * unused / days).quantize(Decimal(1), ROUND_HALF_UP)
            lines.append({
                "charge_id": f"{PREFIX}{amd['id']}:{charge.id}",
                "description": f"Proration credit: {charge.description or charge.id} ({unused} of {days} days unused)",
                "pricing_model": "proration_credit", "metric_key": None, "quantity": Decimal(unused),
                "unit_price": None, "amount": -int(credit), "event_count": 0, "events_checksum": None,
            })
    return lines


def mark_credited(conn: Connection, invoice_id: str, lines: list[dict[str, Any]]) -> None:
    """Record that ``invoice_id`` carries its proration lines' credits."""
    ids = sorted({line["charge_id"][len(PREFIX):].split(":", 1)[0] for line in lines
                  if str(line["charge_id"]).startswith(PREFIX)})
    if ids:
        conn.execute(update(amendments).where(amendments.c.id.in_(ids)).values(credited_invoice_id=invoice_id))
