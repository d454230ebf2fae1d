"""Commercial terms as pure arithmetic: minimum commitments, discounts and prepaid credits.

Priced lines in, new lines out: no clock, no database, no network, so the Decimal oracle and
the property tests drive these functions directly, and invoices, calculations and bulk runs
all get their terms from the same code. The order is fixed and each figure is rounded once,
half away from zero, so every line is an integer and the lines add up to the total:

1. usage and flat lines (priced elsewhere, §6);
2. the minimum true-up: the period's pro-rated minimum less what usage and flat lines billed;
3. discounts, in the order they were attached, each on what earlier discounts left of its lines;
4. prepaid credits, grant by grant, never more than the total before them (never below 0).

Proration credits (§8) stand outside the first three steps: they count in the total the
credits cover, but neither towards the minimum nor as a base for discounts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from abaxus.money import exponent, format_price

__all__ = [
    "CREDIT",
    "DISCOUNT",
    "ISSUE_MODELS",
    "MINIMUM",
    "TERM_MODELS",
    "USAGE_MODELS",
    "Applied",
    "Commitment",
    "Coupon",
    "Grant",
    "apply_terms",
    "credit_lines",
    "discount_lines",
    "drawdown_order",
    "minimum_line",
    "round_half_up",
]

USAGE_MODELS = frozenset({"per_unit", "tiered", "volume", "package", "flat_fee"})
MINIMUM, DISCOUNT, CREDIT = "minimum_true_up", "discount", "credit"
TERM_MODELS = frozenset({MINIMUM, DISCOUNT, CREDIT})
# Lines computed at issue (they depend on attachments and balances), not when usage is priced.
ISSUE_MODELS = frozenset({DISCOUNT, CREDIT})
MINIMUM_CHARGE_ID = "minimum"


def round_half_up(value: Fraction) -> int:
    """Round an exact amount to an integer once, halves away from zero (§4)."""
    whole, rest = divmod(abs(value.numerator), value.denominator)
    magnitude = whole + (1 if 2 * rest >= value.denominator else 0)
    return magnitude if value >= 0 else -magnitude


def _term_line(charge_id: str, description: str, model: str, amount: int, quantity: int = 1) -> dict[str, Any]:
    return {"charge_id": charge_id, "description": description, "pricing_model": model, "metric_key": None,
            "quantity": Decimal(quantity), "unit_price": None, "amount": amount, "event_count": 0,
            "events_checksum": None}


def _money(minor: int, currency: str) -> str:
    return f"{format_price(Decimal(minor).scaleb(-exponent(currency)), currency)} {currency}"


# ---- 2. minimum commitment ------------------------------------------------------------------
@dataclass(frozen=True)
class Commitment:
    """One plan version's minimum for a full period, and the whole days it was billable in it."""

    amount: Decimal  # major units of the plan's currency
    days: int


def minimum_line(lines: Iterable[dict[str, Any]], currency: str, commitments: Sequence[Commitment],
                 period_days: int) -> dict[str, Any] | None:
    """The true-up line, or None when usage and flat lines reach the minimum.

    The period's minimum is Σ amount × 10^exponent × days / period_days over the versions
    billed in it, rounded once: a version billed for part of the period commits only its
    whole days (a partial first or last period, a plan change, a pause).
    """
    if not commitments or period_days <= 0:
        return None
    scale = 10 ** exponent(currency)
    exact = sum((Fraction(c.amount) * scale * c.days for c in commitments), Fraction(0)) / period_days
    minimum = round_half_up(exact)
    billed = sum(int(li["amount"]) for li in lines if li["pricing_model"] in USAGE_MODELS)
    if billed >= minimum:
        return None
    days = sum(c.days for c in commitments)
    return _term_line(MINIMUM_CHARGE_ID,
                      f"Minimum commitment true-up: minimum {_money(minimum, currency)} for {days} of {period_days} days, "
                      f"billed {_money(billed, currency)}", MINIMUM, minimum - billed, quantity=days)


# ---- 3. discounts ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Coupon:
    """A coupon's arithmetic: ``percent_off`` (0 < p ≤ 100) or ``amount_off`` (minor units).

    ``applies_to`` names charge ids (a plan change's earlier-version lines match by their own
    charge id, ``minimum`` names the true-up); None means every usage, flat and minimum line.
    """

    id: str
    percent_off: Decimal | None = None
    amount_off: int | None = None
    applies_to: tuple[str, ...] | None = None


def _own_charge_id(line: dict[str, Any]) -> str:
    # "<plan_id>:v<n>:<charge_id>" on an earlier version's line; ids hold no ':' themselves.
    return str(line["charge_id"]).rsplit(":", 1)[-1]


def discount_lines(lines: Sequence[dict[str, Any]], coupons: Sequence[Coupon], currency: str) -> list[dict[str, Any]]:
    """One negative line per coupon that finds something to discount, in the coupons' order.

    Each coupon works on what earlier coupons left of its lines: a percentage is taken of that
    rest and rounded once; a fixed amount is capped at it. What a coupon takes is charged to its
    lines in invoice order, so a later coupon on the same lines never discounts below zero.
    """
    rest = {i: int(li["amount"]) for i, li in enumerate(lines)
            if (li["pricing_model"] in USAGE_MODELS or li["pricing_model"] == MINIMUM) and int(li["amount"]) > 0}
    out = []
    for coupon in coupons:
        mine = [i for i in rest if coupon.applies_to is None or _own_charge_id(lines[i]) in coupon.applies_to]
        base = sum(rest[i] for i in mine)
        if base <= 0:
            continue
        if coupon.percent_off is not None:
            taken = round_half_up(Fraction(base) * Fraction(coupon.percent_off) / 100)
            what = f"{format(coupon.percent_off.normalize(), 'f')}% off"
        else:
            assert coupon.amount_off is not None
            taken = min(coupon.amount_off, base)
            what = f"{_money(coupon.amount_off, currency)} off"
        if taken <= 0:
            continue
        left = taken
        for i in mine:
            step = min(rest[i], left)
            rest[i] -= step
            left -= step
        scope = ", ".join(coupon.applies_to) if coupon.applies_to is not None else "the invoice"
        out.append(_term_line(f"discount:{coupon.id}", f"Discount {coupon.id}: {what} {scope}", DISCOUNT, -taken))
    return out


# ---- 4. prepaid credits ---------------------------------------------------------------------
@dataclass(frozen=True)
class Grant:
    """A prepaid credit grant as the invoice sees it: what is left of it and when it counts."""

    id: str
    remaining: int
    effective_at: int
    expires_at: int | None = None  # exclusive; None: never
    priority: int = 0
    created_at: int = 0
    description: str | None = None


def drawdown_order(grants: Iterable[Grant], at: int) -> list[Grant]:
    """The grants usable at ``at`` (effective, not expired, something left), in drawdown order:
    lowest priority number first, then the soonest expiry (never-expiring last), then the oldest."""
    usable = [g for g in grants if g.remaining > 0 and g.effective_at <= at and (g.expires_at is None or at < g.expires_at)]
    return sorted(usable, key=lambda g: (g.priority, g.expires_at is None, g.expires_at or 0, g.created_at, g.id))


def credit_lines(lines: Sequence[dict[str, Any]], grants: Iterable[Grant],
                 at: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Negative lines drawing the grants in order until the total reaches 0; and the drawdown per grant."""
    due = max(sum(int(li["amount"]) for li in lines), 0)
    out, drawn = [], {}
    for g in drawdown_order(grants, at):
        if due == 0:
            break
        take = min(g.remaining, due)
        due -= take
        drawn[g.id] = take
        text = f"Prepaid credit: {g.description}" if g.description else "Prepaid credit"
        out.append(_term_line(f"credit:{g.id}", text, CREDIT, -take))
    return out, drawn


# ---- all together ---------------------------------------------------------------------------
@dataclass
class Applied:
    """What issuing adds to an invoice: its discount and credit lines, the coupons that found
    something to discount, and what each grant gives."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    coupons: list[str] = field(default_factory=list)
    drawdown: dict[str, int] = field(default_factory=dict)


def apply_terms(lines: Sequence[dict[str, Any]], currency: str, coupons: Sequence[Coupon], grants: Iterable[Grant],
                at: int) -> Applied:
    """Discounts, then credits, on ``lines`` (usage, flat, minimum and proration lines).

    Discount and credit lines already in ``lines`` (a calculation's, a retried issue's) are
    ignored: the terms are worked out afresh from the lines before them.
    """
    base = [li for li in lines if li["pricing_model"] not in ISSUE_MODELS]
    discounts = discount_lines(base, coupons, currency)
    credits, drawn = credit_lines([*base, *discounts], grants, at)
    return Applied([*discounts, *credits], [li["charge_id"].split(":", 1)[1] for li in discounts], drawn)
