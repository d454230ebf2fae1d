"""Prepaid credit grants: create, list, void, balance, and the drawdown an invoice makes.

A grant's ``remaining`` is changed only together with an entry of the append-only ledger
(``grant`` +amount, ``drawdown`` −x, ``restore`` +x, ``void`` −rest), in one transaction, so
``remaining`` always equals the sum of its entries. Invoices draw inside their issuing
transaction with the grant rows locked (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN
IMMEDIATE`` admits one writer at a time), and each decrement is guarded by the amount left,
so two invoices issued at once can never give out the same credit twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from sqlalchemy import Connection, Engine, func, insert, select, update

from abaxus.billing import outbox
from abaxus.billing.commercial import Grant, drawdown_order
from abaxus.billing.customers import load_customer
from abaxus.clock import Clock
from abaxus.errors import Conflict, InvalidInput, NotFound
from abaxus.ids import new_id
from abaxus.money import normalize_currency
from abaxus.schemas.commercial import CreditBalance, CreditGrantCreate, CreditGrantOut, CreditLedgerEntry
from abaxus.store.paging import fetch_page
from abaxus.store.tables import credit_grants, credit_ledger
from abaxus.timefmt import format_ms, parse_timestamp

__all__ = [
    "create_grant", "credit_balance", "get_grant", "grant_entries", "list_grants", "record_drawdown",
    "restore_drawdown", "usable_grants", "void_grant",
]

MAX_AMOUNT = 10 ** 15
MAX_PRIORITY = 1_000_000


def _status(row: Any, now: int) -> Literal["scheduled", "active", "depleted", "expired", "voided"]:
    if row["voided_at"] is not None:
        return "voided"
    if row["remaining"] == 0:
        return "depleted"
    if row["expires_at"] is not None and row["expires_at"] <= now:
        return "expired"
    if row["effective_at"] > now:
        return "scheduled"
    return "active"


def grant_out(row: Any, now: int) -> CreditGrantOut:
    return CreditGrantOut(
        id=row["id"], customer_id=row["customer_id"], amount=row["amount"], currency=row["currency"],
        remaining=row["remaining"], priority=row["priority"], effective_at=format_ms(row["effective_at"]) or "",
        expires_at=format_ms(row["expires_at"]), description=row["description"],
        status=_status(row, now),
        created_at=format_ms(row["created_at"]) or "", voided_at=format_ms(row["voided_at"]),
        void_reason=row["void_reason"])


def _grant(row: Any) -> Grant:
    return Grant(id=row["id"], remaining=row["remaining"], effective_at=row["effective_at"], expires_at=row["expires_at"],
                 priority=row["priority"], created_at=row["created_at"], description=row["description"])


def _entry(conn: Connection, grant: Any, type_: str, amount: int, invoice_id: str | None, at: int) -> None:
    conn.execute(insert(credit_ledger).values(id=new_id("cle"), grant_id=grant["id"], customer_id=grant["customer_id"],
                                              invoice_id=invoice_id, type=type_, amount=amount, at=at))


# ---- the API -----------------------------------------------------------------------------
def create_grant(engine: Engine, customer_id: str, body: CreditGrantCreate, *, clock: Clock) -> CreditGrantOut:
    if not 1 <= body.amount < MAX_AMOUNT:
        raise InvalidInput("VALUE_OUT_OF_RANGE", f"amount is in minor units: 1 up to (not including) {MAX_AMOUNT:,}.", "amount")
    if not 0 <= body.priority <= MAX_PRIORITY:
        raise InvalidInput("VALUE_OUT_OF_RANGE", f"priority is an integer from 0 (drawn first) to {MAX_PRIORITY:,}.",
                           "priority")
    currency = normalize_currency(body.currency, "currency")
    now = clock.now_ms()
    effective_at = parse_timestamp(body.effective_at, "effective_at") if body.effective_at is not None else now
    expires_at = parse_timestamp(body.expires_at, "expires_at") if body.expires_at is not None else None
    if expires_at is not None and expires_at <= effective_at:
        raise InvalidInput("INVALID_DATE_RANGE", "expires_at (exclusive) must be after effective_at.", "expires_at")
    row = {"id": new_id("cgr"), "customer_id": customer_id, "currency": currency, "amount": body.amount,
           "remaining": body.amount, "priority": body.priority, "effective_at": effective_at, "expires_at": expires_at,
           "description": body.description, "created_at": now, "voided_at": None, "void_reason": None}
    with engine.begin() as conn:
        customer = load_customer(conn, customer_id)
        if customer["currency"] is not None and customer["currency"] != currency:
            raise InvalidInput("CURRENCY_MISMATCH", f"Customer '{customer_id}' bills in {customer['currency']}; "
                               f"grant credit in {customer['currency']}.", "currency")
        conn.execute(insert(credit_grants).values(**row))
        _entry(conn, row, "grant", body.amount, None, now)
    return grant_out(row, now)


def _load(conn: Connection, customer_id: str, grant_id: str, lock: bool = False) -> dict[str, Any]:
    query = select(credit_grants).where(credit_grants.c.id == grant_id, credit_grants.c.customer_id == customer_id)
    row = conn.execute(query.with_for_update() if lock else query).mappings().first()
    if row is None:
        load_customer(conn, customer_id)
        raise NotFound("CREDIT_GRANT_NOT_FOUND", f"Customer '{customer_id}' has no credit grant '{grant_id}'.")
    return dict(row)


def get_grant(engine: Engine, customer_id: str, grant_id: str, *, clock: Clock) -> CreditGrantOut:
    with engine.connect() as conn:
        return grant_out(_load(conn, customer_id, grant_id), clock.now_ms())


def list_grants(engine: Engine, customer_id: str, limit: int, cursor: str | None, *,
                clock: Clock) -> tuple[list[CreditGrantOut], str | None]:
    now = clock.now_ms()
    with engine.connect() as conn:
        load_customer(conn, customer_id)
        page = fetch_page(conn, select(credit_grants).where(credit_grants.c.customer_id == customer_id),
                          [credit_grants.c.created_at, credit_grants.c.id], kind=f"credit_grants:{customer_id}",
                          limit=limit, cursor=cursor)
    return [grant_out(r, now) for r in page.rows], page.next_cursor


def void_grant(engine: Engine, customer_id: str, grant_id: str, reason: str | None, *, clock: Clock) -> CreditGrantOut:
    """Void what is left of a grant (drawn amounts stay drawn); for good."""
    now = clock.now_ms()
    with engine.begin() as conn:
        row = _load(conn, customer_id, grant_id, lock=True)
        if row["voided_at"] is not None:
            raise Conflict("CREDIT_GRANT_VOIDED", "The grant is already voided; voids are final.")
        conn.execute(update(credit_grants).where(credit_grants.c.id == grant_id)
                     .values(remaining=0, voided_at=now, void_reason=reason))
        _entry(conn, row, "void", -row["remaining"], None, now)
        row.update(remaining=0, voided_at=now, void_reason=reason)
    return grant_out(row, now)


def grant_entries(engine: Engine, customer_id: str, grant_id: str, limit: int,
                  cursor: str | None) -> tuple[list[CreditLedgerEntry], str | None]:
    """A grant's ledger, oldest first."""
    with engine.connect() as conn:
        _load(conn, customer_id, grant_id)
        page = fetch_page(conn, select(credit_ledger).where(credit_ledger.c.grant_id == grant_id), [credit_ledger.c.id],
                          kind=f"credit_ledger:{grant_id}", limit=limit, cursor=cursor, descending=False)
    return [CreditLedgerEntry(id=r["id"], grant_id=r["grant_id"], type=r["type"], amount=r["amount"],
                              invoice_id=r["invoice_id"], at=format_ms(r["at"]) or "") for r in page.rows], page.next_cursor


def credit_balance(engine: Engine, customer_id: str, currency: str | None, *, clock: Clock) -> CreditBalance:
    """What the customer could draw now in one currency: the usable grants in drawdown order."""
    now = clock.now_ms()
    with engine.connect() as conn:
        customer = load_customer(conn, customer_id)
        if currency is not None:
            currency = normalize_currency(currency, "currency")
        elif customer["currency"] is not None:
            currency = customer["currency"]
        else:
            held = sorted(r[0] for r in conn.execute(select(credit_grants.c.currency).distinct().where(
                credit_grants.c.customer_id == customer_id, credit_grants.c.voided_at.is_(None))))
            if len(held) > 1:
                raise InvalidInput("VALIDATION_ERROR", f"The customer holds credit in {', '.join(held)}; name one with "
                                   "?currency=.", "currency")
            currency = held[0] if held else None
        rows = {r["id"]: r for r in conn.execute(select(credit_grants).where(
            credit_grants.c.customer_id == customer_id, credit_grants.c.currency == currency,
            credit_grants.c.voided_at.is_(None), credit_grants.c.remaining > 0)).mappings()} if currency else {}
    ordered = drawdown_order((_grant(r) for r in rows.values()), now)
    return CreditBalance(currency=currency, available=sum(g.remaining for g in ordered),
                         grants=[grant_out(rows[g.id], now) for g in ordered])


# ---- what invoices draw ------------------------------------------------------------------
def usable_grants(conn: Connection, customer_ids: Iterable[str], lock: bool) -> dict[tuple[str, str], dict[str, Grant]]:
    """Every unvoided grant with something left, by (customer, currency); locked when ``lock``.

    Locks are taken in id order, so issuing transactions that share grants queue up instead of
    deadlocking; whether a grant counts at an invoice's period_end is ``drawdown_order``'s call.
    """
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    query = (select(credit_grants).where(credit_grants.c.customer_id.in_(ids), credit_grants.c.voided_at.is_(None),
                                         credit_grants.c.remaining > 0).order_by(credit_grants.c.id))
    out: dict[tuple[str, str], dict[str, Grant]] = {}
    for r in conn.execute(query.with_for_update() if lock else query).mappings():
        out.setdefault((r["customer_id"], r["currency"]), {})[r["id"]] = _grant(r)
    return out


def record_drawdown(conn: Connection, invoice_id: str, customer_id: str, currency: str, drawdown: dict[str, int],
                    at: int) -> None:
    """Take what an invoice drew off its grants, with one ledger entry each (in the issuing transaction).

    The decrement checks the amount left itself: were a grant somehow short, the transaction
    fails rather than over-draw it. A grant drawn to 0 announces ``credit_grant.depleted``.
    """
    for grant_id, amount in sorted(drawdown.items()):
        done = conn.execute(update(credit_grants).where(credit_grants.c.id == grant_id, credit_grants.c.remaining >= amount)
                            .values(remaining=credit_grants.c.remaining - amount)).rowcount
        if done != 1:
            raise Conflict("CREDIT_GRANT_CHANGED", "A credit grant changed while the invoice was issued; issue it again.")
        grant = {"id": grant_id, "customer_id": customer_id}
        _entry(conn, grant, "drawdown", -amount, invoice_id, at)
        left = conn.execute(select(credit_grants.c.remaining).where(credit_grants.c.id == grant_id)).scalar_one()
        if left == 0:
            outbox.emit(conn, "credit_grant.depleted", {"grant_id": grant_id, "customer_id": customer_id,
                                                        "currency": currency, "invoice_id": invoice_id}, now=at)


def restore_drawdown(conn: Connection, invoice_id: str, at: int) -> dict[str, int]:
    """Give back what an invoice drew (it is being archived): one ``restore`` entry per grant.

    A grant voided since gets its restored amount voided at once, so it stays at 0.
    """
    net = {r.grant_id: -int(r.total) for r in conn.execute(
        select(credit_ledger.c.grant_id, func.sum(credit_ledger.c.amount).label("total"))
        .where(credit_ledger.c.invoice_id == invoice_id).group_by(credit_ledger.c.grant_id).order_by(credit_ledger.c.grant_id))
        if int(r.total) < 0}
    if not net:
        return {}
    rows = {r["id"]: dict(r) for r in conn.execute(select(credit_grants).where(credit_grants.c.id.in_(sorted(net)))
                                                    .order_by(credit_grants.c.id).with_for_update()).mappings()}
    for grant_id, amount in sorted(net.items()):
        grant = rows[grant_id]
        _entry(conn, grant, "restore", amount, invoice_id, at)
        if grant["voided_at"] is not None:
            _entry(conn, grant, "void", -amount, invoice_id, at)
        else:
            conn.execute(update(credit_grants).where(credit_grants.c.id == grant_id)
                         .values(remaining=credit_grants.c.remaining + amount))
    return net
