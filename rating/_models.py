"""The five pricing models (§6), vectorised over quantities with decimal256 kernels.

Quantities arrive as ``decimal128(38, 10)`` (|Q| < 10^18); prices have at most 12 decimals
and are below 10^12, so every product fits ``decimal256`` exactly before its single rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_DECIMAL128_DIGITS = 38
_MAX_PRICE_PLACES = 12  # prices have at most 12 decimals (see the module doc)

__all__ = ["AmountOverflow", "FlatFee", "Package", "PerUnit", "Rated", "Terms", "Tier", "Tiered", "Volume", "rate"]

_ROUND = "half_towards_infinity"  # = Python's ROUND_HALF_UP: halves away from zero


@dataclass(frozen=True)
class _Types:
    """Decimal types just wide enough for this data: decimal128 kernels when every exact
    product (and its scaling to minor units) fits 38 digits, decimal256 otherwise."""

    q: pa.DataType
    p: pa.DataType


def _places(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def _digits(d: Decimal) -> int:
    return max(1, len(str(int(abs(d)))))


def _types(q: pa.Array, prices: list[Decimal], bounds: list[Decimal]) -> _Types:
    biggest = pc.max(pc.abs(q)).as_py() if len(q) else None
    biggest = max([biggest if biggest is not None else Decimal(0), *bounds])
    integral = len(q) == 0 or pc.all(pc.equal(pc.floor(q), q)).as_py() is not False
    q_scale = 0 if integral else 10
    q_prec = _digits(biggest) + 1 + q_scale  # +1: tier arithmetic adds a digit
    p_scale = max([_places(p) for p in prices] + [0])
    p_prec = max([_digits(p) for p in prices] + [1]) + p_scale
    # product (+1), flat add (+1), scaling to minor units (+6): all within 38 digits
    if q_prec + p_prec + 9 <= _DECIMAL128_DIGITS:
        return _Types(pa.decimal128(q_prec, q_scale), pa.decimal128(p_prec, p_scale))
    return _Types(pa.decimal256(30, 10), pa.decimal256(26, 12))


@dataclass(frozen=True)
class Tier:
    up_to: int | None
    unit_price: Decimal
    flat_amount: Decimal = Decimal(0)


@dataclass(frozen=True)
class PerUnit:
    unit_price: Decimal


@dataclass(frozen=True)
class Tiered:
    """Graduated: each tier prices only its own units."""

    tiers: tuple[Tier, ...]


@dataclass(frozen=True)
class Volume:
    """The tier holding the quantity prices every unit."""

    tiers: tuple[Tier, ...]


@dataclass(frozen=True)
class Package:
    package_size: Decimal
    package_price: Decimal


@dataclass(frozen=True)
class FlatFee:
    amount: Decimal


# One charge's terms, one type per pricing model (§6): ``rate`` dispatches on the type.
Terms = PerUnit | Tiered | Volume | Package | FlatFee


@dataclass
class Rated:
    """Amounts (int64 minor units) per quantity, with what explains them."""

    amount: pa.Array
    tier_quantity: list[pa.Array] = field(default_factory=list)  # tiered: units per tier
    tier_amount: list[pa.Array] = field(default_factory=list)  # tiered/volume: minor units per tier
    applied_tier: pa.Array | None = None  # volume: 0-based tier index, -1 when Q = 0
    packages: pa.Array | None = None  # package: packages billed


class AmountOverflow(ValueError):
    """An amount does not fit a signed 64-bit count of minor units."""


def _minor(exact: pa.Array, exponent: int) -> pa.Array:
    """Round exact major-unit amounts once to integer minor units."""
    wide = pa.decimal256(5, 0) if pa.types.is_decimal256(exact.type) else pa.decimal128(5, 0)
    scaled = pc.multiply(exact, _scalar(Decimal(10) ** exponent, wide))
    try:
        return pc.cast(pc.round(scaled, 0, round_mode=_ROUND), pa.int64())
    except pa.ArrowInvalid:
        raise AmountOverflow("an amount exceeds 9,223,372,036,854,775,807 minor units") from None


def _prices(terms: Terms) -> list[Decimal]:
    """Every price (and package size) of the terms: what the decimal types must hold."""
    match terms:
        case PerUnit(unit_price=price):
            return [price]
        case Tiered(tiers=tiers) | Volume(tiers=tiers):
            return [t.unit_price for t in tiers] + [t.flat_amount for t in tiers]
        case Package(package_size=size, package_price=price):
            return [price, size]
        case FlatFee(amount=amount):
            return [amount]


def _tiers_of(terms: Terms) -> tuple[Tier, ...]:
    return terms.tiers if isinstance(terms, (Tiered, Volume)) else ()


def _scalar(value: Decimal, type_: pa.DataType) -> pa.Scalar:
    """A decimal scalar of exactly ``type_`` (its scale), so kernels never widen by surprise."""
    return pa.scalar(value.quantize(Decimal(1).scaleb(-type_.scale)), type_)


def _integer_plan(quantities: pa.Array, terms: Terms, exponent: int) -> tuple[np.ndarray, int] | None:
    """(quantities ≥ 0 as int64, price scale S) when every product fits int64 exactly, else None.

    With whole quantities and prices scaled by 10^S to integers, units × price is an exact
    integer; rounding to minor units is then integer division, half up (all values ≥ 0).
    """
    if not isinstance(terms, (PerUnit, Tiered, Volume)) or len(quantities) == 0:
        return None
    try:  # a checked cast: refuses any fractional quantity or one beyond int64
        qn = np.maximum(pc.cast(quantities, pa.int64()).to_numpy(zero_copy_only=False), 0)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    prices = _prices(terms)
    scale = max([_places(p) for p in prices] + [0])
    biggest_q = max([int(qn.max())] + [t.up_to for t in _tiers_of(terms) if t.up_to is not None])
    biggest_p = max([*prices, Decimal(0)]) * 2 * 10 ** scale + 1
    if scale > _MAX_PRICE_PLACES or biggest_q * biggest_p * 2 * 10 ** (exponent + 1) >= 2**62:
        return None
    return qn, scale


def _int_minor(scaled: np.ndarray, scale: int, exponent: int) -> np.ndarray:
    """Exact amounts × 10^scale (≥ 0) → minor units, rounded half up."""
    num = scaled * (2 * 10**exponent)
    den = 2 * 10**scale
    return cast("np.ndarray", (num + den // 2) // den)  # numpy types arithmetic on an untyped dtype as Any


def _rate_integers(qn: np.ndarray, scale: int, terms: PerUnit | Tiered | Volume, exponent: int) -> Rated:
    factor = 10**scale

    def as_int(d: Decimal) -> int:
        return int(d * factor)

    if isinstance(terms, PerUnit):
        return Rated(amount=pa.array(_int_minor(qn * as_int(terms.unit_price), scale, exponent)))
    bounds = _bounds(terms.tiers)
    if isinstance(terms, Tiered):
        total = np.zeros(len(qn), dtype=np.int64)
        quantities, amounts = [], []
        for lower, upper, tier in bounds:
            units = np.maximum(qn - int(lower), 0)
            if upper is not None:
                units = np.minimum(units, int(upper - lower))
            minor = _int_minor(units * as_int(tier.unit_price) + (units > 0) * as_int(tier.flat_amount), scale, exponent)
            quantities.append(pa.array(units).cast(pa.decimal128(20, 0)))
            amounts.append(pa.array(minor))
            total += minor
        return Rated(amount=pa.array(total), tier_quantity=quantities, tier_amount=amounts)
    applied = np.full(len(qn), -1, dtype=np.int8)
    total = np.zeros(len(qn), dtype=np.int64)
    tier_amounts = []
    for k, (lower, upper, tier) in enumerate(bounds):
        inside = (qn > int(lower)) & ((qn <= int(upper)) if upper is not None else (qn > 0))
        minor = np.where(inside, _int_minor(qn * as_int(tier.unit_price) + as_int(tier.flat_amount), scale, exponent), 0)
        tier_amounts.append(pa.array(minor))
        total += minor
        applied = np.where(inside, np.int8(k), applied)
    return Rated(amount=pa.array(total), tier_amount=tier_amounts, applied_tier=pa.array(applied))


def rate(quantities: pa.Array, terms: Terms, exponent: int) -> Rated:
    """Price every quantity under ``terms``; negative quantities are priced as 0."""
    plan = _integer_plan(quantities, terms, exponent)
    if plan is not None:
        assert isinstance(terms, (PerUnit, Tiered, Volume))  # the only terms _integer_plan takes
        return _rate_integers(plan[0], plan[1], terms, exponent)
    q = pc.max_element_wise(quantities, pa.scalar(Decimal(0), quantities.type))
    t = _types(q, _prices(terms), [Decimal(x.up_to) for x in _tiers_of(terms) if x.up_to is not None])
    q = pc.cast(q, t.q)
    match terms:
        case FlatFee(amount=amount):
            one = pa.repeat(_scalar(Decimal(1), t.q), len(q))
            return Rated(amount=_minor(pc.multiply(one, _scalar(amount, t.p)), exponent))
        case PerUnit(unit_price=price):
            return Rated(amount=_minor(pc.multiply(q, _scalar(price, t.p)), exponent))
        case Package():
            return _package(q, terms, exponent)
        case Tiered(tiers=tiers):
            return _tiered(q, tiers, exponent, t)
        case Volume(tiers=tiers):
            return _volume(q, tiers, exponent, t)


def _package(q: pa.Array, terms: Package, exponent: int) -> Rated:
    wide = pa.decimal256(30, 10)  # the quotient needs room; packages are few, so this stays cheap
    qw = pc.cast(q, wide)
    size = _scalar(terms.package_size, wide)
    floor = pc.cast(pc.floor(pc.divide(qw, size)), wide)
    exact = pc.equal(pc.multiply(floor, size), qw)
    packages = pc.cast(pc.if_else(exact, floor, pc.add(floor, _scalar(Decimal(1), wide))), pa.int64())
    price = _scalar(terms.package_price, pa.decimal256(26, 12))
    amount = _minor(pc.multiply(pc.cast(packages, wide), price), exponent)
    return Rated(amount=amount, packages=packages)


def _bounds(tiers: tuple[Tier, ...]) -> list[tuple[Decimal, Decimal | None, Tier]]:
    out, lower = [], Decimal(0)
    for t in tiers:
        upper = Decimal(t.up_to) if t.up_to is not None else None
        out.append((lower, upper, t))
        lower = upper if upper is not None else lower
    return out


def _tiered(q: pa.Array, tiers: tuple[Tier, ...], exponent: int, t: _Types) -> Rated:
    total = None
    quantities, amounts = [], []
    zero = _scalar(Decimal(0), t.q)
    for lower, upper, tier in _bounds(tiers):
        units = pc.max_element_wise(pc.cast(pc.subtract(q, _scalar(lower, t.q)), t.q), zero)
        if upper is not None:
            units = pc.min_element_wise(units, _scalar(upper - lower, t.q))
        exact = pc.multiply(units, _scalar(tier.unit_price, t.p))
        if tier.flat_amount:
            flat = pc.if_else(pc.greater(units, zero), _scalar(tier.flat_amount, t.p), _scalar(Decimal(0), t.p))
            exact = pc.add(exact, flat)
        minor = _minor(exact, exponent)
        quantities.append(units)
        amounts.append(minor)
        total = minor if total is None else pc.add(total, minor)
    assert total is not None
    return Rated(amount=total, tier_quantity=quantities, tier_amount=amounts)


def _volume(q: pa.Array, tiers: tuple[Tier, ...], exponent: int, t: _Types) -> Rated:
    zero = _scalar(Decimal(0), t.q)
    applied = pa.repeat(pa.scalar(-1, pa.int8()), len(q))
    amount = pa.repeat(pa.scalar(0, pa.int64()), len(q))
    tier_amounts = []
    for k, (lower, upper, tier) in enumerate(_bounds(tiers)):
        inside = pc.and_(pc.greater(q, _scalar(lower, t.q)),
                         pc.less_equal(q, _scalar(upper, t.q)) if upper is not None else pc.greater(q, zero))
        exact = pc.add(pc.multiply(q, _scalar(tier.unit_price, t.p)), _scalar(tier.flat_amount, t.p))
        minor = pc.if_else(inside, _minor(exact, exponent), pa.scalar(0, pa.int64()))
        tier_amounts.append(minor)
        amount = pc.add(amount, minor)
        applied = pc.if_else(inside, pa.scalar(k, pa.int8()), applied)
    return Rated(amount=amount, tier_amount=tier_amounts, applied_tier=applied)
