"""Price plans as immutable versions (§6): every POST of an id appends version N+1.

A charge is stored as the ``abaxus.schemas.catalog.Charge`` it was validated into (its
``id`` and ``description`` filled in, prices as exact decimal strings); ``PlanVersion`` is
the typed form billing reads back.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
from msgspec.structs import replace
from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from abaxus.billing import _validate as v
from abaxus.clock import Clock
from abaxus.errors import Conflict, InvalidInput, NotFound
from abaxus.ids import CLIENT_ID_RE
from abaxus.money import format_price, format_quantity, normalize_currency, parse_decimal
from abaxus.schemas.catalog import (
    Charge,
    ChargeOut,
    EntitlementOut,
    FlatFeeCharge,
    MinimumOut,
    PackageCharge,
    PerUnitCharge,
    PlanCreate,
    PlanOut,
    Tier,
    TieredCharge,
    TierOut,
    VolumeCharge,
    pricing_model,
)
from abaxus.store.paging import fetch_page
from abaxus.store.tables import metrics, plan_versions
from abaxus.timefmt import format_ms, parse_timestamp

__all__ = [
    "Entitlement",
    "Minimum",
    "PlanVersion",
    "active_version",
    "create_plan_version",
    "deprecate_version",
    "get_plan",
    "list_plans",
    "load_version",
    "subscribable_version",
]

MAX_PRICE = Decimal(10) ** 12
_MAX_CHARGE_ID, _MAX_TIERS, _MAX_CHARGES = 64, 50, 100  # §6
_VERSION_ATTEMPTS = 5  # a racing writer took the next version number: try the one after


class Entitlement(msgspec.Struct, frozen=True):
    feature_key: str
    type: str
    value: bool | int | str | None
    metric_key: str | None


class Minimum(msgspec.Struct, frozen=True):
    """A minimum commitment per full billing period, in major units (see ``billing.commercial``)."""

    amount: Decimal


class PlanVersion(msgspec.Struct, frozen=True):
    plan_id: str
    version: int
    name: str
    currency: str
    billing_period: str
    charges: list[Charge]
    entitlements: list[Entitlement]
    changelog: str | None
    effective_from: int
    created_at: int
    deprecated_at: int | None
    minimum: Minimum | None = None

    @property
    def months(self) -> int:
        return {"monthly": 1, "quarterly": 3, "annual": 12}[self.billing_period]


def _price(value: Decimal, field: str) -> Decimal:
    return parse_decimal(value, field, max_places=12, lower=Decimal(0), upper=MAX_PRICE)


def _charge(i: int, c: Charge, active_metrics: dict[str, dict[str, Any]]) -> Charge:
    """The charge as stored: its prices checked, its id and description filled in."""
    at = f"charges.{i}"
    if c.id is not None and not (1 <= len(c.id) <= _MAX_CHARGE_ID and CLIENT_ID_RE.fullmatch(c.id)):
        raise InvalidInput("INVALID_ID", "Charge ids are 1–64 characters of letters, digits, '_', '.' or '-'.", f"{at}.id")
    metric_name = None if isinstance(c, FlatFeeCharge) else _metric_name(c.metric_key, active_metrics, f"{at}.metric_key")
    if c.description is not None:
        v.text(c.description, f"{at}.description", max_len=500)
    priced: Charge
    match c:
        case PerUnitCharge():
            priced = replace(c, unit_price=_price(c.unit_price, f"{at}.unit_price"))
        case TieredCharge() | VolumeCharge():
            priced = replace(c, tiers=_tiers(c.tiers, at))
        case PackageCharge():
            size = parse_decimal(c.package_size, f"{at}.package_size", max_places=10, lower=Decimal(0),
                                 upper=Decimal(10) ** 18, lower_inclusive=False)
            priced = replace(c, package_size=size, package_price=_price(c.package_price, f"{at}.package_price"))
        case FlatFeeCharge():
            priced = replace(c, amount=_price(c.amount, f"{at}.amount"))
    description = c.description or (f"{metric_name} ({pricing_model(c)})" if metric_name else "Flat fee")
    return replace(priced, id=c.id if c.id is not None else f"chg_{i + 1}", description=description)


def _metric_name(key: str, active_metrics: dict[str, dict[str, Any]], field: str) -> str:
    metric = active_metrics.get(key)
    if metric is None:
        raise InvalidInput("UNKNOWN_METRIC", f"No metric '{key}'; create it with POST /v1/metrics first.", field)
    if metric["status"] != "active":
        raise InvalidInput("METRIC_INACTIVE", f"Metric '{key}' is deactivated; price an active one.", field)
    return str(metric["name"])


def _tiers(tiers: list[Tier], at: str) -> list[Tier]:
    if not tiers:
        raise InvalidInput("VALIDATION_ERROR", "Send 1–50 tiers; the last has up_to null.", f"{at}.tiers")
    if len(tiers) > _MAX_TIERS:
        raise InvalidInput("VALIDATION_ERROR", "Send at most 50 tiers.", f"{at}.tiers")
    out: list[Tier] = []
    previous = 0
    last = len(tiers) - 1
    for k, t in enumerate(tiers):
        field = f"{at}.tiers.{k}.up_to"
        if t.up_to is None and k != last:
            raise InvalidInput("LAST_TIER_MUST_BE_UNBOUNDED", "Only the last tier may have up_to null.", field)
        if t.up_to is not None:
            if k == last:
                raise InvalidInput("LAST_TIER_MUST_BE_UNBOUNDED", "Make the last tier unbounded: up_to null.", field)
            if t.up_to <= 0:
                raise InvalidInput("VALUE_OUT_OF_RANGE", "up_to must be a positive integer.", field)
            if t.up_to <= previous:
                raise InvalidInput("TIERS_NOT_ASCENDING", "Sort tiers so each up_to exceeds the previous one.", field)
            previous = t.up_to
        out.append(Tier(up_to=t.up_to, unit_price=_price(t.unit_price, f"{at}.tiers.{k}.unit_price"),
                        flat_amount=_price(t.flat_amount, f"{at}.tiers.{k}.flat_amount")))
    return out


def _entitlements(body: PlanCreate, all_metrics: dict[str, dict[str, Any]]) -> list[Entitlement]:
    seen: set[str] = set()
    out = []
    for i, e in enumerate(body.entitlements):
        at = f"entitlements.{i}"
        v.key(e.feature_key, f"{at}.feature_key")
        if e.feature_key in seen:
            raise InvalidInput("VALIDATION_ERROR",
                               f"Feature '{e.feature_key}' appears twice; feature keys are unique per version.",
                               f"{at}.feature_key")
        seen.add(e.feature_key)
        if e.type == "boolean" and not isinstance(e.value, bool):
            raise InvalidInput("INVALID_FIELD", "A boolean entitlement's value is true or false.", f"{at}.value")
        if e.type == "limit":
            if isinstance(e.value, bool) or not isinstance(e.value, int) or e.value < 0:
                raise InvalidInput("INVALID_FIELD", "A limit entitlement's value is an integer ≥ 0.", f"{at}.value")
            if e.metric_key is None:
                raise InvalidInput("MISSING_FIELD", "A limit entitlement needs 'metric_key': its usage.", f"{at}.metric_key")
            if e.metric_key not in all_metrics:
                raise InvalidInput("UNKNOWN_METRIC", f"No metric '{e.metric_key}'.", f"{at}.metric_key")
        if e.type == "custom" and not isinstance(e.value, str):
            raise InvalidInput("INVALID_FIELD", "A custom entitlement's value is a string.", f"{at}.value")
        out.append(Entitlement(feature_key=e.feature_key, type=e.type, value=e.value,
                               metric_key=e.metric_key if e.type == "limit" else None))
    return out


def create_plan_version(engine: Engine, body: PlanCreate, *, clock: Clock) -> PlanOut:
    """Validate a plan body and append it as the plan's next version."""
    v.client_id(body.id, "id")
    v.text(body.name, "name", max_len=200)
    currency = normalize_currency(body.currency, "currency")
    if not (1 <= len(body.charges) <= _MAX_CHARGES):
        raise InvalidInput("VALIDATION_ERROR", "Send 1–100 charges.", "charges")
    if body.changelog is not None:
        v.text(body.changelog, "changelog", min_len=0, max_len=2000)
    now = clock.now_ms()
    effective_from = parse_timestamp(body.effective_from, "effective_from") if body.effective_from else now
    with engine.connect() as conn:
        known = {r["key"]: dict(r) for r in conn.execute(select(metrics)).mappings()}
    charges = [_charge(i, c, known) for i, c in enumerate(body.charges)]
    seen: set[str | None] = set()
    for i, c in enumerate(charges):
        if c.id in seen:
            raise InvalidInput("DUPLICATE_CHARGE_ID", f"Charge id '{c.id}' is used twice; charge ids are unique per version.",
                               f"charges.{i}.id")
        seen.add(c.id)
    entitlements = _entitlements(body, known)
    minimum = Minimum(_price(body.minimum.amount, "minimum.amount")) if body.minimum is not None else None
    for attempt in range(_VERSION_ATTEMPTS):
        try:
            with engine.begin() as conn:
                top = conn.execute(select(func.max(plan_versions.c.version)).where(plan_versions.c.plan_id == body.id)).scalar()
                row = {
                    "plan_id": body.id, "version": (top or 0) + 1, "name": body.name, "currency": currency,
                    "billing_period": body.billing_period,
                    "charges": msgspec.json.encode(charges).decode(),
                    "entitlements": msgspec.json.encode(entitlements).decode(),
                    "changelog": body.changelog, "effective_from": effective_from, "created_at": now,
                    "deprecated_at": None,
                    "minimum": msgspec.json.encode(minimum).decode() if minimum is not None else None,
                }
                conn.execute(insert(plan_versions).values(**row))
                return _plan_out(_version(row), _versions(conn, body.id), now)
        except IntegrityError:
            if attempt == _VERSION_ATTEMPTS - 1:
                raise Conflict("VALIDATION_ERROR", "Another version of this plan was being created; retry.") from None
    raise AssertionError("unreachable")


def _version(row: Any) -> PlanVersion:
    return PlanVersion(
        plan_id=row["plan_id"], version=row["version"], name=row["name"], currency=row["currency"],
        billing_period=row["billing_period"],
        charges=_stored_charges(row["charges"]),
        entitlements=msgspec.json.decode(row["entitlements"], type=list[Entitlement]),
        changelog=row["changelog"], effective_from=row["effective_from"], created_at=row["created_at"],
        deprecated_at=row["deprecated_at"],
        minimum=msgspec.json.decode(row["minimum"], type=Minimum) if row["minimum"] is not None else None,
    )


_CHARGES = msgspec.json.Decoder(list[Charge])


def _stored_charges(text: str) -> list[Charge]:
    """A version's charges as stored. Versions stored before charges were a tagged union list
    every model's fields, the unused ones null: those nulls are dropped before converting."""
    try:
        return _CHARGES.decode(text)
    except msgspec.ValidationError:
        rows = msgspec.json.decode(text)
        return msgspec.convert([{k: x for k, x in r.items() if x is not None} for r in rows], list[Charge])


def _versions(conn: Connection, plan_id: str) -> list[PlanVersion]:
    rows = conn.execute(select(plan_versions).where(plan_versions.c.plan_id == plan_id)
                        .order_by(plan_versions.c.version)).mappings()
    return [_version(r) for r in rows]


def statuses(versions: list[PlanVersion], now: int) -> dict[int, str]:
    """active: newest non-deprecated version in effect; scheduled: ahead; else superseded."""
    out: dict[int, str] = {}
    active_seen = False
    for pv in sorted(versions, key=lambda p: p.version, reverse=True):
        if pv.deprecated_at is not None:
            out[pv.version] = "deprecated"
        elif pv.effective_from > now:
            out[pv.version] = "scheduled"
        elif not active_seen:
            out[pv.version] = "active"
            active_seen = True
        else:
            out[pv.version] = "superseded"
    return out


def _charge_out(c: Charge, currency: str) -> ChargeOut:
    assert c.id is not None, "filled in by _charge before storing"
    assert c.description is not None, "filled in by _charge before storing"
    out = ChargeOut(id=c.id, metric_key=c.metric_key, pricing_model=pricing_model(c), description=c.description)
    match c:
        case PerUnitCharge():
            out.unit_price = format_price(c.unit_price, currency)
        case TieredCharge() | VolumeCharge():
            out.tiers = [TierOut(up_to=t.up_to, unit_price=format_price(t.unit_price, currency),
                                 flat_amount=format_price(t.flat_amount, currency)) for t in c.tiers]
        case PackageCharge():
            out.package_size = format_quantity(c.package_size)
            out.package_price = format_price(c.package_price, currency)
        case FlatFeeCharge():
            out.amount = format_price(c.amount, currency)
    return out


def _plan_out(pv: PlanVersion, versions: list[PlanVersion], now: int) -> PlanOut:
    return PlanOut(
        id=pv.plan_id, version=pv.version, name=pv.name, status=statuses(versions, now)[pv.version],
        currency=pv.currency, billing_period=pv.billing_period,
        charges=[_charge_out(c, pv.currency) for c in pv.charges],
        entitlements=[EntitlementOut(feature_key=e.feature_key, type=e.type, value=e.value, metric_key=e.metric_key)
                      for e in pv.entitlements],
        changelog=pv.changelog, effective_from=format_ms(pv.effective_from) or "",
        created_at=format_ms(pv.created_at) or "", deprecated_at=format_ms(pv.deprecated_at),
        **({"minimum": MinimumOut(amount=format_price(pv.minimum.amount, pv.currency))} if pv.minimum else {}),
    )


def _all_versions(conn: Connection, plan_id: str, field: str | None = None) -> list[PlanVersion]:
    versions = _versions(conn, plan_id)
    if not versions:
        raise NotFound("PLAN_NOT_FOUND", f"No price plan '{plan_id}'; list them with GET /v1/price-plans.", field)
    return versions


def load_version(conn: Connection, plan_id: str, version: int, field: str | None = None) -> PlanVersion:
    for pv in _all_versions(conn, plan_id, field):
        if pv.version == version:
            return pv
    raise NotFound("PLAN_VERSION_NOT_FOUND", f"Plan '{plan_id}' has no version {version}.",
                   field and field.replace("plan_id", "plan_version"))


def active_version(conn: Connection, plan_id: str, field: str = "plan_id", *, now: int) -> PlanVersion:
    """The version new subscriptions get by default; none active → PLAN_VERSION_DEPRECATED."""
    versions = _all_versions(conn, plan_id, field)
    for number, status in statuses(versions, now).items():
        if status == "active":
            return next(p for p in versions if p.version == number)
    raise InvalidInput("PLAN_VERSION_DEPRECATED",
                       f"Plan '{plan_id}' has no active version; name a plan_version or publish a new one.", field)


def subscribable_version(conn: Connection, plan_id: str, version: int | None, field: str = "plan_id", *,
                         now: int) -> PlanVersion:
    """The version a subscription may start on or move to: the active one by default, a named one unless deprecated."""
    if version is None:
        return active_version(conn, plan_id, now=now)
    pv = load_version(conn, plan_id, version, field)
    if version_status(conn, pv, now=now) == "deprecated":
        raise InvalidInput("PLAN_VERSION_DEPRECATED",
                           f"Version {pv.version} of '{pv.plan_id}' is deprecated; use a current version.", "plan_version")
    return pv


def version_status(conn: Connection, pv: PlanVersion, *, now: int) -> str:
    return statuses(_versions(conn, pv.plan_id), now)[pv.version]


def get_plan(engine: Engine, plan_id: str, version: int | None = None, *, clock: Clock) -> PlanOut:
    with engine.connect() as conn:
        versions = _all_versions(conn, plan_id)
        pv = versions[-1] if version is None else load_version(conn, plan_id, version)
        return _plan_out(pv, versions, clock.now_ms())


def list_plans(engine: Engine, limit: int, cursor: str | None, *, clock: Clock) -> tuple[list[PlanOut], str | None]:
    latest = (select(plan_versions.c.plan_id, func.max(plan_versions.c.version).label("version"))
              .group_by(plan_versions.c.plan_id).subquery())
    query = select(plan_versions).join(latest, (latest.c.plan_id == plan_versions.c.plan_id)
                                       & (latest.c.version == plan_versions.c.version))
    now = clock.now_ms()
    with engine.connect() as conn:
        page = fetch_page(conn, query, [plan_versions.c.created_at, plan_versions.c.plan_id],
                          kind="price_plans", limit=limit, cursor=cursor)
        out = [_plan_out(_version(r), _versions(conn, r["plan_id"]), now) for r in page.rows]
    return out, page.next_cursor


def deprecate_version(engine: Engine, plan_id: str, version: int, *, clock: Clock) -> PlanOut:
    now = clock.now_ms()
    with engine.begin() as conn:
        pv = load_version(conn, plan_id, version)
        if pv.deprecated_at is None:
            conn.execute(update(plan_versions).where((plan_versions.c.plan_id == plan_id)
                                                     & (plan_versions.c.version == version)).values(deprecated_at=now))
        versions = _versions(conn, plan_id)
    return _plan_out(next(p for p in versions if p.version == version), versions, now)
