"""Invoices (§11, §12): calculate, issue, list, archive, adjust, explain.

Every invoice records ``usage_as_of``: the watermark its usage was read at. Its lines count
exactly the events stored by then and not voided by then, so a line can be reproduced (and
its events listed) whatever arrives or is voided later.

Commercial terms (``billing.commercial``, docs/commercial-terms.md): the minimum true-up is
priced with the usage; discounts and prepaid credits are worked out inside the issuing
transaction, with the subscription's discounts and the customer's grants locked, so what an
invoice draws is written with it and two invoices issued at once never draw the same credit.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from abaxus.billing import audit, outbox
from abaxus.billing.commercial import DISCOUNT, MINIMUM, TERM_MODELS, Applied, apply_terms, discount_lines
from abaxus.billing.coupons import coupon_terms, live_discounts, record_redemptions
from abaxus.billing.credits import record_drawdown, restore_drawdown, usable_grants
from abaxus.billing.customers import load_customer
from abaxus.billing.plans import active_version, load_version
from abaxus.billing.pricing import Priced, Window, billable_windows, choose_subscription, load_specs, price_windows
from abaxus.billing.proration import credit_lines, mark_credited
from abaxus.billing.subscriptions import load_subscription
from abaxus.billing.timeline import load_timeline
from abaxus.clock import Clock, SystemClock
from abaxus.errors import Conflict, InvalidInput, NotFound
from abaxus.ids import new_id
from abaxus.money import format_quantity, parse_decimal
from abaxus.schemas.codec import encode_json
from abaxus.store.paging import fetch_page
from abaxus.store.tables import calculations, invoices
from abaxus.store.usage import UsageStore
from abaxus.timefmt import format_ms

__all__ = ["Invoicing", "invoice_out"]

_MAX_REASON_LENGTH = 500

CALCULATION_TTL_MS = 24 * 3600 * 1000
_decode_lines = msgspec.json.Decoder(list[dict[str, Any]], float_hook=Decimal)
_decode_body = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)


def invoice_out(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"], "type": row["type"], "adjusts_invoice_id": row["adjusts_invoice_id"],
        "customer_id": row["customer_id"], "subscription_id": row["subscription_id"], "plan_id": row["plan_id"],
        "plan_version": row["plan_version"], "status": row["status"], "currency": row["currency"],
        "period_start": format_ms(row["period_start"]), "period_end": format_ms(row["period_end"]),
        "total_amount": row["total_amount"], "line_items": _decode_lines.decode(row["line_items"]),
        "calculation_id": row["calculation_id"], "usage_as_of": format_ms(row["usage_as_of"]),
        "payment_intent_id": row["payment_intent_id"], "created_at": format_ms(row["created_at"]),
        "paid_at": format_ms(row["paid_at"]), "archived_at": format_ms(row["archived_at"]),
        "archive_reason": row["archive_reason"],
    }


class Invoicing:
    """Calculating, issuing, adjusting and archiving invoices; ``clock`` dates what it writes
    (and ages calculations), ``as_of`` is the usage watermark an invoice is priced at."""

    def __init__(self, engine: Engine, usage: UsageStore, as_of: Callable[[], int], *, clock: Clock | None = None) -> None:
        self.engine, self.usage, self.as_of = engine, usage, as_of
        self.clock: Clock = clock or SystemClock()

    # ---- pricing -----------------------------------------------------------------------
    def _price(self, customer_id: str, cutoff_ms: int, subscription_id: str | None) -> tuple[Priced, int]:
        with self.engine.connect() as conn:
            load_customer(conn, customer_id, "customer_id")
            windows = choose_subscription(conn, customer_id, cutoff_ms, subscription_id)
            specs = load_specs(conn, windows)
            credits = credit_lines(conn, windows[-1], load_timeline(conn, windows[-1].subscription))
        as_of = self.as_of()
        priced = price_windows(self.usage, windows, specs, as_of)[0]
        priced.lines.extend(credits)
        return priced, as_of

    def calculate(self, customer_id: str, cutoff_ms: int, subscription_id: str | None) -> dict[str, Any]:
        """The lines an invoice would get now, terms included: credits are drawn on paper only."""
        priced, as_of = self._price(customer_id, cutoff_ms, subscription_id)
        with self.engine.connect() as conn:
            [(priced, _, _)] = self._terms(conn, [priced], lock=False)
        w = priced.window
        now = self.clock.now_ms()
        body = {
            "calculation_id": new_id("calc"), "customer_id": customer_id, "subscription_id": w.subscription["id"],
            "plan_id": w.plan.plan_id, "plan_version": w.plan.version, "period_start": format_ms(w.period_start),
            "period_end": format_ms(w.period_end), "currency": w.plan.currency, "total_amount": priced.total,
            "line_items": priced.lines, "usage_as_of": format_ms(as_of), "created_at": format_ms(now),
            "expires_at": format_ms(now + CALCULATION_TTL_MS),
        }
        with self.engine.begin() as conn:
            conn.execute(insert(calculations).values(
                id=body["calculation_id"], customer_id=customer_id, subscription_id=w.subscription["id"],
                cutoff=w.period_end, body=encode_json({**body, "_as_of": as_of}).decode(), created_at=now,
                expires_at=now + CALCULATION_TTL_MS))
        return body

    def preview(self, plan_id: str, plan_version: int | None, usage: dict[str, Any]) -> dict[str, Any]:
        with self.engine.connect() as conn:
            pv = (load_version(conn, plan_id, plan_version, "plan_id") if plan_version is not None
                  else active_version(conn, plan_id, now=self.clock.now_ms()))
            charged = {c.metric_key for c in pv.charges if c.metric_key}
            quantities: dict[tuple[str, str, int], Decimal] = {}
            for key, value in usage.items():
                if key not in charged:
                    raise InvalidInput("UNKNOWN_METRIC", f"Plan '{plan_id}' v{pv.version} does not charge '{key}'.",
                                       f"usage.{key}")
                q = parse_decimal(value, f"usage.{key}", max_places=10, upper=Decimal(10) ** 18)
                quantities[("preview", key, 0)] = q
            window = Window({"id": "preview", "customer_id": ""}, pv, 0, 0, 0, 1)
        priced = price_windows(self.usage, [window], [], None, quantities)[0]
        return {"plan_id": pv.plan_id, "plan_version": pv.version, "currency": pv.currency,
                "total_amount": priced.total, "line_items": priced.lines}

    # ---- issuing -----------------------------------------------------------------------
    def create(self, customer_id: str, cutoff_ms: int, subscription_id: str | None, calculation_id: str | None,
               actor: str) -> dict[str, Any]:
        if calculation_id is not None:
            priced, as_of = self._from_calculation(calculation_id, customer_id, cutoff_ms, subscription_id)
        else:
            priced, as_of = self._price(customer_id, cutoff_ms, subscription_id)
        return self._issue(priced, as_of, calculation_id, actor)

    def _from_calculation(self, calculation_id: str, customer_id: str, cutoff_ms: int,
                          subscription_id: str | None) -> tuple[Priced, int]:
        with self.engine.connect() as conn:
            row = conn.execute(select(calculations).where(calculations.c.id == calculation_id)).mappings().first()
            if row is None:
                raise NotFound("CALCULATION_NOT_FOUND", f"No calculation '{calculation_id}'.", "calculation_id")
            if row["expires_at"] <= self.clock.now_ms():
                raise InvalidInput("CALCULATION_EXPIRED", "The calculation is over 24 h old; calculate again.", "calculation_id")
            windows = (choose_subscription(conn, customer_id, cutoff_ms, subscription_id)
                       if row["customer_id"] == customer_id else [])
            window = windows[-1] if windows else None
            if (window is None or row["subscription_id"] != window.subscription["id"]
                    or row["cutoff"] != cutoff_ms // 1000 * 1000):
                raise InvalidInput("CALCULATION_MISMATCH", "The calculation was for another customer, subscription or cutoff.",
                                   "calculation_id")
            body = _decode_body.decode(row["body"])
        return Priced(window, body["line_items"]), body["_as_of"]

    # ---- commercial terms --------------------------------------------------------------
    @staticmethod
    def _terms(conn: Any, priced: list[Priced], lock: bool) -> list[tuple[Priced, Applied, list[str]]]:
        """Each invoice-to-be with its discount and credit lines, and the discounts it uses.

        Worked out on the discounts and grants as ``conn``'s transaction sees them (locked when
        issuing); invoices of one customer draw in turn, each on what the previous left. The
        ``Priced`` given are not changed (a failed bulk chunk is issued again one by one).
        """
        discounts = live_discounts(conn, [p.window.subscription["id"] for p in priced], lock)
        pool = usable_grants(conn, [p.window.subscription["customer_id"] for p in priced], lock)
        out = []
        for p in priced:
            w = p.window
            # Usage and flat lines, proration credits, then the true-up (priced with the usage).
            base = ([li for li in p.lines if li["pricing_model"] not in TERM_MODELS]
                    + [li for li in p.lines if li["pricing_model"] == MINIMUM])
            attached = discounts.get(w.subscription["id"], [])
            grants = pool.get((w.subscription["customer_id"], w.plan.currency), {})
            applied = apply_terms(base, w.plan.currency, [c for _, c in attached], grants.values(), w.period_end)
            for grant_id, amount in applied.drawdown.items():
                grants[grant_id] = dataclasses.replace(grants[grant_id], remaining=grants[grant_id].remaining - amount)
            used = [discount_id for discount_id, c in attached if c.id in applied.coupons]
            out.append((Priced(w, [*base, *applied.lines]), applied, used))
        return out

    @staticmethod
    def _record_terms(conn: Any, row: dict[str, Any], applied: Applied, used: list[str], actor: str, now: int) -> None:
        """Write what the terms did, beside the invoice: the drawdown, the discounts used, and a
        total the terms brought to 0 settled at once (``invoice.paid``, ``source: "zero_total"``)."""
        record_drawdown(conn, row["id"], row["customer_id"], row["currency"], applied.drawdown, now)
        record_redemptions(conn, [(discount_id, row["id"]) for discount_id in used], now)
        if row["total_amount"] == 0 and applied.lines and sum(-int(li["amount"]) for li in applied.lines) > 0:
            conn.execute(update(invoices).where(invoices.c.id == row["id"]).values(status="paid", paid_at=now))
            row.update(status="paid", paid_at=now)
            audit.append(conn, row["id"], "invoice.paid", actor,
                         {"payment_intent_id": None, "amount": 0, "source": "zero_total"}, at=now)
            outbox.emit(conn, "invoice.paid", outbox.invoice_data(row, payment_intent_id=None, source="zero_total"), now=now)

    def _row(self, priced: Priced, as_of: int, calculation_id: str | None, now: int) -> dict[str, Any]:
        w = priced.window
        return {
            "id": new_id("inv"), "type": "standard", "adjusts_invoice_id": None,
            "customer_id": w.subscription["customer_id"], "subscription_id": w.subscription["id"],
            "plan_id": w.plan.plan_id, "plan_version": w.plan.version, "status": "issued", "currency": w.plan.currency,
            "period_start": w.period_start, "period_end": w.period_end, "total_amount": priced.total,
            "line_items": encode_json(priced.lines).decode(), "calculation_id": calculation_id, "usage_as_of": as_of,
            "payment_intent_id": None, "created_at": now, "paid_at": None, "archived_at": None, "archive_reason": None,
            "period_slot": f"{w.subscription['id']}:{w.period_start}", "charge_attempt": 0, "charge_lock": None,
        }

    def issue_many(self, priced: list[Priced], as_of: int, actor: str) -> int:
        """Issue several invoices in one transaction (bulk runs); returns how many were created.

        If another run invoiced one of these periods meanwhile, the chunk falls back to one
        invoice at a time so every other invoice is still issued.
        """
        if not priced:
            return 0
        now = self.clock.now_ms()
        try:
            with self.engine.begin() as conn:
                terms = self._terms(conn, priced, lock=True)
                rows = [self._row(final, as_of, None, now) for final, _, _ in terms]
                conn.execute(insert(invoices), rows)
                for (final, applied, used), row in zip(terms, rows, strict=True):
                    mark_credited(conn, row["id"], final.lines)
                    audit.append(conn, row["id"], "invoice.issued", actor, {
                        "total_amount": final.total, "line_count": len(final.lines), "calculation_id": None,
                        "usage_as_of": format_ms(as_of)}, at=now)
                    outbox.emit(conn, "invoice.issued", outbox.invoice_data(row), now=now)
                    self._record_terms(conn, row, applied, used, actor, now)
            return len(rows)
        except IntegrityError:
            created = 0
            for p in priced:
                try:
                    self._issue(p, as_of, None, actor)
                    created += 1
                except Conflict:
                    pass
            return created

    def _issue(self, priced: Priced, as_of: int, calculation_id: str | None, actor: str) -> dict[str, Any]:
        now = self.clock.now_ms()
        slot = f"{priced.window.subscription['id']}:{priced.window.period_start}"
        try:
            with self.engine.begin() as conn:
                [(final, applied, used)] = self._terms(conn, [priced], lock=True)
                row = self._row(final, as_of, calculation_id, now)
                conn.execute(insert(invoices).values(**row))
                mark_credited(conn, row["id"], final.lines)
                audit.append(conn, row["id"], "invoice.issued", actor, {
                    "total_amount": final.total, "line_count": len(final.lines), "calculation_id": calculation_id,
                    "usage_as_of": format_ms(as_of)}, at=now)
                outbox.emit(conn, "invoice.issued", outbox.invoice_data(row), now=now)
                self._record_terms(conn, row, applied, used, actor, now)
        except IntegrityError:
            with self.engine.connect() as conn:
                existing = conn.execute(select(invoices.c.id).where(invoices.c.period_slot == slot)).scalar()
            raise Conflict("INVOICE_ALREADY_EXISTS", "This subscription period is already invoiced; archive it to invoice anew.",
                           extra={"existing_invoice_id": existing}) from None
        return invoice_out(row)

    # ---- reading -----------------------------------------------------------------------
    def load(self, conn: Any, invoice_id: str) -> dict[str, Any]:
        row = conn.execute(select(invoices).where(invoices.c.id == invoice_id)).mappings().first()
        if row is None:
            raise NotFound("INVOICE_NOT_FOUND", f"No invoice '{invoice_id}'.")
        return dict(row)

    def get(self, invoice_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return invoice_out(self.load(conn, invoice_id))

    def list(self, filters: dict[str, str | None], limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        query = select(invoices)
        for name in ("customer_id", "subscription_id", "status", "type"):
            if filters.get(name) is not None:
                query = query.where(invoices.c[name] == filters[name])
        with self.engine.connect() as conn:
            page = fetch_page(conn, query, [invoices.c.created_at, invoices.c.id], kind="invoices", limit=limit, cursor=cursor)
        return [invoice_out(r) for r in page.rows], page.next_cursor

    def line_events(self, invoice_id: str, charge_id: str, limit: int, after: tuple[int, str] | None) -> dict[str, Any]:
        with self.engine.connect() as conn:
            inv = self.load(conn, invoice_id)
            original = self.load(conn, inv["adjusts_invoice_id"]) if inv["adjusts_invoice_id"] else inv
            line = next((li for li in _decode_lines.decode(inv["line_items"]) if li["charge_id"] == charge_id), None)
            if line is None:
                raise NotFound("LINE_ITEM_NOT_FOUND", f"Invoice '{invoice_id}' has no line '{charge_id}'.")
            if not line.get("metric_key"):
                return {"rows": [], "limit": limit, "event_count": line["event_count"],
                        "events_checksum": line["events_checksum"]}
            window = next(w for w in self._windows_of(conn, original)
                          if any(f"{w.charge_prefix}{c.id}" == charge_id for c in w.plan.charges))
        as_of = inv["usage_as_of"]
        filters = {"customer_id": inv["customer_id"], "metric_key": line["metric_key"], "from": window.start,
                   "to": window.end, "gaps": window.gaps,
                   "raw_where": ["ingested_at <= fromUnixTimestamp64Milli(%(asof)s, 'UTC')",
                                 "(NOT voided OR voided_at > fromUnixTimestamp64Milli(%(asof)s, 'UTC'))"],
                   "raw_params": {"asof": as_of}}
        rows = self.usage.list_events(filters, limit + 1, after, ascending=True)
        return {"rows": rows, "limit": limit, "event_count": line["event_count"], "events_checksum": line["events_checksum"]}

    @staticmethod
    def _windows_of(conn: Any, inv: dict[str, Any]) -> builtins.list[Window]:  # `list` here is Invoicing.list
        """The windows a standard invoice priced: its subscription's, at its cutoff."""
        return billable_windows(conn, load_subscription(conn, inv["subscription_id"]), inv["period_end"])

    # ---- changes -----------------------------------------------------------------------
    def archive(self, invoice_id: str, reason: str, actor: str) -> dict[str, Any]:
        if not 1 <= len(reason) <= _MAX_REASON_LENGTH:
            raise InvalidInput("INVALID_FIELD", "reason must be 1–500 characters.", "reason")
        with self.engine.begin() as conn:
            # Locked (PostgreSQL): two archives of one invoice at once give its credits back once.
            row = conn.execute(select(invoices).where(invoices.c.id == invoice_id).with_for_update()).mappings().first()
            if row is None:
                raise NotFound("INVOICE_NOT_FOUND", f"No invoice '{invoice_id}'.")
            inv = dict(row)
            self._check_open(inv)
            if inv["charge_lock"] is not None:
                raise Conflict("CHARGE_IN_PROGRESS", "A charge of this invoice is in flight; retry when it ends.")
            now = self.clock.now_ms()
            # Its credits go back to their grants (locked in id order, as issuing locks them) before
            # its period is freed: an issue of the same period meanwhile fails at once, never deadlocks.
            restore_drawdown(conn, invoice_id, now)
            conn.execute(update(invoices).where(invoices.c.id == invoice_id)
                         .values(status="archived", archived_at=now, archive_reason=reason, period_slot=None))
            audit.append(conn, invoice_id, "invoice.archived", actor, {"reason": reason}, at=now)
            inv.update(status="archived", archived_at=now, archive_reason=reason)
        return invoice_out(inv)

    @staticmethod
    def _check_open(inv: dict[str, Any]) -> None:
        if inv["status"] == "paid":
            raise Conflict("INVOICE_ALREADY_PAID", "The invoice is paid; paid invoices are final.")
        if inv["status"] == "archived":
            raise Conflict("INVOICE_ARCHIVED", "The invoice is archived; archived invoices are final.")

    def adjust(self, invoice_id: str, actor: str) -> dict[str, Any]:
        """Re-price a standard invoice with fresh usage; bill (or credit) only the difference.

        The minimum true-up and the invoice's own discounts are recomputed on the new lines (their
        terms never change, so the difference is exact); credits stay as drawn at issue.
        """
        with self.engine.connect() as conn:
            inv = self.load(conn, invoice_id)
            if inv["type"] == "adjustment":
                raise Conflict("INVOICE_IS_ADJUSTMENT", "Adjust the original invoice, not an adjustment.")
            if inv["status"] == "archived":
                raise Conflict("INVOICE_ARCHIVED", "The invoice is archived; archived invoices are final.")
            windows = self._windows_of(conn, inv)
            specs = load_specs(conn, windows)
            earlier = [dict(r) for r in conn.execute(select(invoices).where(invoices.c.adjusts_invoice_id == invoice_id)
                                                     .order_by(invoices.c.created_at)).mappings()]
            original = _decode_lines.decode(inv["line_items"])
            carried = [li["charge_id"].split(":", 1)[1] for li in original if li["pricing_model"] == DISCOUNT]
            terms = coupon_terms(conn, carried)
        as_of = self.as_of()
        priced = price_windows(self.usage, windows, specs, as_of)[0]
        fresh = [*priced.lines, *discount_lines(priced.lines, [terms[c] for c in carried if c in terms], inv["currency"])]
        invoiced: dict[str, int] = {}
        last: dict[str, dict[str, Any]] = {}
        for doc_lines in [original, *(_decode_lines.decode(e["line_items"]) for e in earlier)]:
            for li in doc_lines:
                invoiced[li["charge_id"]] = invoiced.get(li["charge_id"], 0) + int(li["amount"])
                last[li["charge_id"]] = li
        lines = []
        for li in fresh:
            diff = int(li["amount"]) - invoiced.get(li["charge_id"], 0)
            if diff != 0:
                previous = last[li["charge_id"]]["quantity"] if li["charge_id"] in last else 0
                lines.append({**li, "previous_quantity": format_quantity(Decimal(str(previous))), "amount": diff})
        # A true-up or discount the new lines no longer call for is taken back whole.
        now_billed = {li["charge_id"] for li in fresh}
        for charge_id, amount in invoiced.items():
            if charge_id not in now_billed and amount != 0 and last[charge_id]["pricing_model"] in (MINIMUM, DISCOUNT):
                previous = format_quantity(Decimal(str(last[charge_id]["quantity"])))
                lines.append({**last[charge_id], "quantity": previous, "previous_quantity": previous, "amount": -amount})
        if not lines:
            raise Conflict("NO_CHANGE", "Usage has not changed what this invoice bills; nothing to adjust.")
        total = sum(li["amount"] for li in lines)
        now = self.clock.now_ms()
        row = {**{k: inv[k] for k in ("customer_id", "subscription_id", "plan_id", "plan_version", "currency",
                                      "period_start", "period_end")},
               "id": new_id("inv"), "type": "adjustment", "adjusts_invoice_id": invoice_id, "status": "issued",
               "total_amount": total, "line_items": encode_json(lines).decode(), "calculation_id": None,
               "usage_as_of": as_of, "payment_intent_id": None, "created_at": now, "paid_at": None, "archived_at": None,
               "archive_reason": None, "period_slot": None, "charge_attempt": 0, "charge_lock": None}
        with self.engine.begin() as conn:
            conn.execute(insert(invoices).values(**row))
            audit.append(conn, row["id"], "invoice.issued", actor, {"total_amount": total, "line_count": len(lines),
                                                                     "calculation_id": None, "usage_as_of": format_ms(as_of)},
                         at=now)
            audit.append(conn, invoice_id, "invoice.adjusted", actor,
                         {"adjustment_invoice_id": row["id"], "total_amount": total}, at=now)
            outbox.emit(conn, "invoice.issued", outbox.invoice_data(row), now=now)
            outbox.emit(conn, "invoice.adjusted", outbox.invoice_data(inv, adjustment_invoice_id=row["id"],
                                                                      adjustment_total_amount=total), now=now)
        return invoice_out(row)
