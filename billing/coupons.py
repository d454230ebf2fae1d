"""Coupons and the discounts they give subscriptions.

A coupon is immutable once created, so an invoice's discount lines can always be recomputed
from its terms (adjustments do). Attaching one to a subscription makes a discount (``dsc_…``)
that applies from the next invoice issued for it: ``once`` to one invoice, ``repeating`` to
``duration_in_periods`` invoices (one per billing period), ``forever`` to all. An invoice that
carries a discount counts against its duration while it is live; archiving it frees the use,
as archiving frees proration credits (§8).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from abaxus.billing import _validate as v
from abaxus.billing.commercial import Coupon
from abaxus.billing.plans import load_version
from abaxus.billing.subscriptions import load_subscription
from abaxus.clock import Clock
from abaxus.errors import Conflict, InvalidInput, NotFound
from abaxus.ids import CLIENT_ID_RE, new_id
from abaxus.money import normalize_currency, parse_decimal
from abaxus.schemas.commercial import CouponCreate, CouponOut, DiscountCreate, DiscountOut
from abaxus.store.paging import fetch_page
from abaxus.store.tables import coupons, discount_redemptions, invoices, subscription_discounts
from abaxus.timefmt import format_ms

__all__ = [
    "attach_discount", "coupon_terms", "create_coupon", "get_coupon", "list_coupons", "list_discounts",
    "live_discounts", "record_redemptions",
]

MAX_PERIODS = 1200
MAX_AMOUNT = 10 ** 15
MAX_PERCENT = 100
MAX_CHARGE_IDS = 100
MAX_CHARGE_ID_LENGTH = 64
_ids = msgspec.json.Decoder(list[str])


def coupon_out(row: Any) -> CouponOut:
    return CouponOut(
        id=row["id"], percent_off=Decimal(row["percent_off"]) if row["percent_off"] is not None else None,
        amount_off=row["amount_off"], currency=row["currency"], duration=row["duration"],
        duration_in_periods=row["duration_in_periods"],
        applies_to_charge_ids=_ids.decode(row["applies_to_charge_ids"]) if row["applies_to_charge_ids"] else None,
        created_at=format_ms(row["created_at"]) or "")


def _terms(row: Any) -> Coupon:
    scope = _ids.decode(row["applies_to_charge_ids"]) if row["applies_to_charge_ids"] else None
    return Coupon(id=row["id"], percent_off=Decimal(row["percent_off"]) if row["percent_off"] is not None else None,
                  amount_off=row["amount_off"], applies_to=tuple(scope) if scope is not None else None)


def _limit(row: Any) -> int | None:
    """How many invoices a coupon's discount may be applied to (None: no limit)."""
    if row["duration"] == "forever":
        return None
    return 1 if row["duration"] == "once" else int(row["duration_in_periods"])


def _amount_terms(body: CouponCreate) -> tuple[Decimal | None, int | None, str | None]:
    """(percent_off, amount_off, currency): exactly one of the two amounts, a currency only with a fixed one."""
    if (body.percent_off is None) == (body.amount_off is None):
        raise InvalidInput("VALIDATION_ERROR", "Send exactly one of percent_off and amount_off.",
                           "percent_off" if body.percent_off is not None else "amount_off")
    if body.percent_off is not None:
        percent = parse_decimal(body.percent_off, "percent_off", max_places=4)
        if not 0 < percent <= MAX_PERCENT:
            raise InvalidInput("VALUE_OUT_OF_RANGE", "percent_off is above 0 and at most 100.", "percent_off")
        if body.currency is not None:
            raise InvalidInput("INVALID_FIELD", "A percent_off coupon has no currency; remove it.", "currency")
        return percent.normalize(), None, None
    assert body.amount_off is not None
    if not 1 <= body.amount_off < MAX_AMOUNT:
        raise InvalidInput("VALUE_OUT_OF_RANGE", f"amount_off is in minor units: 1 up to (not including) {MAX_AMOUNT:,}.",
                           "amount_off")
    if body.currency is None:
        raise InvalidInput("MISSING_FIELD", "An amount_off coupon needs 'currency': the currency of its amount.", "currency")
    return None, body.amount_off, normalize_currency(body.currency, "currency")


def _check_duration(body: CouponCreate) -> None:
    if body.duration != "repeating":
        if body.duration_in_periods is not None:
            raise InvalidInput("INVALID_FIELD", "Only a repeating coupon takes duration_in_periods; remove it.",
                               "duration_in_periods")
        return
    if body.duration_in_periods is None:
        raise InvalidInput("MISSING_FIELD", "A repeating coupon needs 'duration_in_periods': how many invoices.",
                           "duration_in_periods")
    if not 1 <= body.duration_in_periods <= MAX_PERIODS:
        raise InvalidInput("VALUE_OUT_OF_RANGE", f"duration_in_periods is 1–{MAX_PERIODS}.", "duration_in_periods")


def _check_scope(scope: list[str] | None) -> None:
    if scope is None:
        return
    if not 1 <= len(scope) <= MAX_CHARGE_IDS:
        raise InvalidInput("VALIDATION_ERROR", f"Send 1–{MAX_CHARGE_IDS} charge ids, or leave applies_to_charge_ids out "
                           "for the whole invoice.", "applies_to_charge_ids")
    for i, cid in enumerate(scope):
        if not (len(cid) <= MAX_CHARGE_ID_LENGTH and CLIENT_ID_RE.fullmatch(cid)):
            raise InvalidInput("INVALID_ID", "Charge ids are 1–64 characters of letters, digits, '_', '.' or '-'.",
                               f"applies_to_charge_ids.{i}")
        if cid in scope[:i]:
            raise InvalidInput("VALIDATION_ERROR", f"Charge id '{cid}' is named twice.", f"applies_to_charge_ids.{i}")


def create_coupon(engine: Engine, body: CouponCreate, *, clock: Clock) -> CouponOut:
    v.client_id(body.id, "id")
    percent, amount_off, currency = _amount_terms(body)
    _check_duration(body)
    scope = body.applies_to_charge_ids
    _check_scope(scope)
    row = {"id": body.id, "percent_off": format(percent, "f") if percent is not None else None, "amount_off": amount_off,
           "currency": currency, "duration": body.duration, "duration_in_periods": body.duration_in_periods,
           "applies_to_charge_ids": msgspec.json.encode(scope).decode() if scope is not None else None,
           "created_at": clock.now_ms()}
    try:
        with engine.begin() as conn:
            conn.execute(insert(coupons).values(**row))
    except IntegrityError:
        raise Conflict("COUPON_ALREADY_EXISTS", f"Coupon '{body.id}' exists; coupons never change, pick another id.",
                       "id") from None
    return coupon_out(row)


def _load_coupon(conn: Connection, coupon_id: str, field: str | None = None) -> dict[str, Any]:
    row = conn.execute(select(coupons).where(coupons.c.id == coupon_id)).mappings().first()
    if row is None:
        raise NotFound("COUPON_NOT_FOUND", f"No coupon '{coupon_id}'; create it with POST /v1/coupons.", field)
    return dict(row)


def get_coupon(engine: Engine, coupon_id: str) -> CouponOut:
    with engine.connect() as conn:
        return coupon_out(_load_coupon(conn, coupon_id))


def list_coupons(engine: Engine, limit: int, cursor: str | None) -> tuple[list[CouponOut], str | None]:
    with engine.connect() as conn:
        page = fetch_page(conn, select(coupons), [coupons.c.created_at, coupons.c.id], kind="coupons", limit=limit,
                          cursor=cursor)
    return [coupon_out(r) for r in page.rows], page.next_cursor


def _carried(conn: Connection, discount_ids: list[str]) -> dict[str, list[str]]:
    """The live (not archived) invoices that carry each discount, oldest first."""
    out: dict[str, list[str]] = {d: [] for d in discount_ids}
    if not discount_ids:
        return out
    rows = conn.execute(select(discount_redemptions.c.discount_id, discount_redemptions.c.invoice_id)
                        .join(invoices, invoices.c.id == discount_redemptions.c.invoice_id)
                        .where(discount_redemptions.c.discount_id.in_(discount_ids), invoices.c.status != "archived")
                        .order_by(discount_redemptions.c.created_at, discount_redemptions.c.invoice_id))
    for discount_id, invoice_id in rows:
        out[discount_id].append(invoice_id)
    return out


def _discount_out(row: Any, coupon: Any, carried: list[str]) -> DiscountOut:
    limit = _limit(coupon)
    left = None if limit is None else max(limit - len(carried), 0)
    return DiscountOut(id=row["id"], subscription_id=row["subscription_id"], coupon_id=row["coupon_id"],
                       status="used_up" if left == 0 else "active", invoice_ids=carried, periods_remaining=left,
                       created_at=format_ms(row["created_at"]) or "")


def attach_discount(engine: Engine, subscription_id: str, body: DiscountCreate, *, clock: Clock) -> DiscountOut:
    """Give the subscription the coupon's discount from its next invoice on."""
    with engine.begin() as conn:
        sub = load_subscription(conn, subscription_id)
        coupon = _load_coupon(conn, body.coupon_id, "coupon_id")
        currency = load_version(conn, sub["plan_id"], sub["plan_version"]).currency
        if coupon["currency"] is not None and coupon["currency"] != currency:
            raise InvalidInput("CURRENCY_MISMATCH", f"Coupon '{coupon['id']}' takes {coupon['currency']} off; the "
                               f"subscription bills in {currency}.", "coupon_id")
        same = [dict(r) for r in conn.execute(select(subscription_discounts).where(
            subscription_discounts.c.subscription_id == subscription_id, subscription_discounts.c.coupon_id == coupon["id"]))
            .mappings()]
        carried = _carried(conn, [r["id"] for r in same])
        limit = _limit(coupon)
        if any(limit is None or len(carried[r["id"]]) < limit for r in same):
            raise Conflict("DISCOUNT_ALREADY_ATTACHED", f"Coupon '{coupon['id']}' already discounts this subscription; "
                           "attach it again once that discount is used up.", "coupon_id")
        row = {"id": new_id("dsc"), "subscription_id": subscription_id, "coupon_id": coupon["id"], "created_at": clock.now_ms()}
        conn.execute(insert(subscription_discounts).values(**row))
    return _discount_out(row, coupon, [])


def list_discounts(engine: Engine, subscription_id: str, limit: int, cursor: str | None) -> tuple[list[DiscountOut], str | None]:
    with engine.connect() as conn:
        load_subscription(conn, subscription_id)
        page = fetch_page(conn, select(subscription_discounts).where(subscription_discounts.c.subscription_id == subscription_id),
                          [subscription_discounts.c.created_at, subscription_discounts.c.id],
                          kind=f"discounts:{subscription_id}", limit=limit, cursor=cursor)
        carried = _carried(conn, [r["id"] for r in page.rows])
        found = {r["id"]: r for r in conn.execute(select(coupons).where(
            coupons.c.id.in_(sorted({r["coupon_id"] for r in page.rows})))).mappings()}
    return [_discount_out(r, found[r["coupon_id"]], carried[r["id"]]) for r in page.rows], page.next_cursor


# ---- what invoices apply -----------------------------------------------------------------
def live_discounts(conn: Connection, subscription_ids: Iterable[str], lock: bool) -> dict[str, list[tuple[str, Coupon]]]:
    """(discount id, coupon terms) per subscription, in the order attached, for those still in force.

    With ``lock`` the discount rows are locked (in id order) for the issuing transaction, so a
    ``once`` discount is never applied by two invoices issued at once.
    """
    ids = sorted(set(subscription_ids))
    if not ids:
        return {}
    query = select(subscription_discounts).where(subscription_discounts.c.subscription_id.in_(ids)).order_by(
        subscription_discounts.c.id)
    rows = [dict(r) for r in conn.execute(query.with_for_update() if lock else query).mappings()]
    if not rows:
        return {}
    terms = {r["id"]: dict(r) for r in conn.execute(select(coupons).where(
        coupons.c.id.in_(sorted({r["coupon_id"] for r in rows})))).mappings()}
    used = {d: len(found) for d, found in _carried(conn, [r["id"] for r in rows]).items()}
    out: dict[str, list[tuple[str, Coupon]]] = {}
    for r in sorted(rows, key=lambda r: (r["created_at"], r["id"])):
        coupon = terms[r["coupon_id"]]
        limit = _limit(coupon)
        if limit is None or used[r["id"]] < limit:
            out.setdefault(r["subscription_id"], []).append((r["id"], _terms(coupon)))
    return out


def coupon_terms(conn: Connection, coupon_ids: Iterable[str]) -> dict[str, Coupon]:
    """The (immutable) terms of coupons by id: what adjustments recompute an invoice's discounts with."""
    ids = sorted(set(coupon_ids))
    if not ids:
        return {}
    return {r["id"]: _terms(r) for r in conn.execute(select(coupons).where(coupons.c.id.in_(ids))).mappings()}


def record_redemptions(conn: Connection, pairs: list[tuple[str, str]], at: int) -> None:
    """(discount id, invoice id): the invoice carries the discount (in the issuing transaction)."""
    if pairs:
        conn.execute(insert(discount_redemptions), [{"discount_id": d, "invoice_id": i, "created_at": at} for d, i in pairs])

