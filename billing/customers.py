"""Customers (§7): client-chosen ids, Stripe references only, never card data."""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from abaxus.billing import _validate as v
from abaxus.clock import Clock
from abaxus.errors import Conflict, InvalidInput, NotFound
from abaxus.money import normalize_currency
from abaxus.schemas.catalog import CustomerCreate, CustomerOut, CustomerPatch
from abaxus.store.paging import fetch_page
from abaxus.store.tables import customers
from abaxus.timefmt import format_ms

__all__ = ["create_customer", "customer_out", "get_customer", "list_customers", "load_customer", "patch_customer"]

_MAX_STRIPE_ID = 255

_PAYMENT_FIELDS = ("payment_provider_customer_id", "payment_method_id")


def customer_out(row: Any) -> CustomerOut:
    return CustomerOut(
        id=row["id"], name=row["name"], email=row["email"], currency=row["currency"],
        payment_provider=row["payment_provider"], payment_provider_customer_id=row["payment_provider_customer_id"],
        payment_method_id=row["payment_method_id"], metadata=msgspec.json.decode(row["metadata"]),
        created_at=format_ms(row["created_at"]) or "", updated_at=format_ms(row["updated_at"]) or "",
    )


def _check_payment(row: dict[str, Any]) -> None:
    for name in _PAYMENT_FIELDS:
        if row.get(name) is not None and row.get("payment_provider") != "stripe":
            raise InvalidInput("VALIDATION_ERROR", f"'{name}' needs payment_provider \"stripe\".", name)
    prefixes = {"payment_provider_customer_id": "cus_", "payment_method_id": "pm_"}
    for name, prefix in prefixes.items():
        value = row.get(name)
        if value is not None and (not value.startswith(prefix) or len(value) > _MAX_STRIPE_ID):
            raise InvalidInput("INVALID_FIELD", f"'{name}' must be a Stripe id starting with {prefix}.", name)


def create_customer(engine: Engine, body: CustomerCreate, *, clock: Clock) -> CustomerOut:
    v.client_id(body.id, "id")
    v.text(body.name, "name", max_len=200)
    now = clock.now_ms()
    row = {
        "id": body.id, "name": body.name, "email": v.email(body.email, "email"),
        "currency": normalize_currency(body.currency, "currency") if body.currency is not None else None,
        "payment_provider": body.payment_provider,
        "payment_provider_customer_id": body.payment_provider_customer_id,
        "payment_method_id": body.payment_method_id,
        "metadata": msgspec.json.encode(v.metadata(body.metadata)).decode(),
        "created_at": now, "updated_at": now,
    }
    _check_payment(row)
    try:
        with engine.begin() as conn:
            conn.execute(insert(customers).values(**row))
    except IntegrityError:
        raise Conflict("CUSTOMER_ALREADY_EXISTS", f"Customer '{body.id}' exists; PATCH it or pick another id.", "id") from None
    return customer_out(row)


def load_customer(conn: Connection, customer_id: str, field: str | None = None) -> dict[str, Any]:
    row = conn.execute(select(customers).where(customers.c.id == customer_id)).mappings().first()
    if row is None:
        raise NotFound("CUSTOMER_NOT_FOUND", f"No customer '{customer_id}'; create it with POST /v1/customers.", field)
    return dict(row)


def get_customer(engine: Engine, customer_id: str) -> CustomerOut:
    with engine.connect() as conn:
        return customer_out(load_customer(conn, customer_id))


def list_customers(engine: Engine, limit: int, cursor: str | None) -> tuple[list[CustomerOut], str | None]:
    with engine.connect() as conn:
        page = fetch_page(conn, select(customers), [customers.c.created_at, customers.c.id],
                          kind="customers", limit=limit, cursor=cursor)
    return [customer_out(r) for r in page.rows], page.next_cursor


def patch_customer(engine: Engine, customer_id: str, body: CustomerPatch, *, clock: Clock) -> CustomerOut:
    for frozen in ("id", "currency"):
        if getattr(body, frozen) is not UNSET:
            raise InvalidInput("INVALID_FIELD", f"'{frozen}' cannot be changed; create a new customer instead.", frozen)
    changes: dict[str, Any] = {}
    if body.name is not UNSET:
        changes["name"] = v.text(body.name, "name", max_len=200)
    if body.email is not UNSET:
        changes["email"] = v.email(body.email, "email")
    for name in ("payment_provider", *_PAYMENT_FIELDS):
        value = getattr(body, name)
        if value is not UNSET:
            changes[name] = value
    if body.metadata is not UNSET:
        changes["metadata"] = msgspec.json.encode(v.metadata(body.metadata)).decode()
    with engine.begin() as conn:
        row = load_customer(conn, customer_id)
        row.update(changes)
        _check_payment(row)
        row["updated_at"] = clock.now_ms()
        conn.execute(update(customers).where(customers.c.id == customer_id).values(**changes, updated_at=row["updated_at"]))
    return customer_out(row)
