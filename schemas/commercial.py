"""Request and response bodies of the commercial terms: credit grants and balances, coupons, discounts.

See ``docs/commercial-terms.md``. Amounts are integers in the currency's minor unit (§4);
a coupon's ``percent_off`` is an exact decimal, echoed as a JSON number.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from msgspec import Meta

from abaxus.schemas.catalog import Request
from abaxus.schemas.responses import Out
from abaxus.schemas.types import ClientId, Quantity, text

__all__ = [
    "CouponCreate",
    "CouponOut",
    "CreditBalance",
    "CreditGrantCreate",
    "CreditGrantOut",
    "CreditGrantVoid",
    "CreditLedgerEntry",
    "DiscountCreate",
    "DiscountOut",
]

ChargeId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="1–64 of [A-Za-z0-9_.-]")]


# ---- credit grants ----------------------------------------------------------------------
class CreditGrantCreate(Request, kw_only=True):
    amount: int
    currency: str
    effective_at: str | None = None
    expires_at: str | None = None
    priority: int = 0
    description: Annotated[str, text(500)] | None = None


class CreditGrantVoid(Request, kw_only=True):
    reason: Annotated[str, text(500)] | None = None


class CreditGrantOut(Out, frozen=True, kw_only=True):
    id: str
    customer_id: str
    amount: int
    currency: str
    remaining: int
    priority: int
    effective_at: str
    expires_at: str | None
    description: str | None
    status: Literal["scheduled", "active", "depleted", "expired", "voided"]
    created_at: str
    voided_at: str | None
    void_reason: str | None


class CreditBalance(Out, frozen=True, kw_only=True):
    currency: str | None
    available: int
    grants: list[CreditGrantOut]


class CreditLedgerEntry(Out, frozen=True, kw_only=True):
    id: str
    grant_id: str
    type: Literal["grant", "drawdown", "restore", "void"]
    amount: int
    invoice_id: str | None
    at: str


# ---- coupons and discounts --------------------------------------------------------------
class CouponCreate(Request, kw_only=True):
    id: ClientId
    duration: Literal["once", "repeating", "forever"]
    percent_off: Decimal | None = None
    amount_off: int | None = None
    currency: str | None = None
    duration_in_periods: int | None = None
    applies_to_charge_ids: list[ChargeId] | None = None


class CouponOut(Out, frozen=True, kw_only=True):
    id: str
    percent_off: Quantity | None
    amount_off: int | None
    currency: str | None
    duration: Literal["once", "repeating", "forever"]
    duration_in_periods: int | None
    applies_to_charge_ids: list[str] | None
    created_at: str


class DiscountCreate(Request, kw_only=True):
    coupon_id: str


class DiscountOut(Out, frozen=True, kw_only=True):
    id: str
    subscription_id: str
    coupon_id: str
    status: Literal["active", "used_up"]
    invoice_ids: list[str]
    periods_remaining: int | None
    created_at: str
