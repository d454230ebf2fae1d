"""Request and response bodies for keys, metrics, price plans, customers and subscriptions.

A plan charge is one of five structs, one per pricing model, told apart by their
``pricing_model`` tag (§6): ``Charge`` is decoded from the request, stored as it was
validated and read back by billing, which turns it into ``abaxus.rating`` terms to price it.
Each model has exactly its own fields, so code matches on the type, never on the tag text.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal, cast

import msgspec
from msgspec import UNSET, Struct, UnsetType

from abaxus.schemas.types import ClientId, MetricKey, text

__all__ = [
    "AmendmentCreate",
    "AmendmentOut",
    "ApiKeyCreate",
    "ApiKeyOut",
    "Charge",
    "ChargeOut",
    "CustomerCreate",
    "CustomerOut",
    "CustomerPatch",
    "EntitlementIn",
    "EntitlementOut",
    "FlatFeeCharge",
    "MetricCreate",
    "MetricOut",
    "MinimumIn",
    "MinimumOut",
    "PackageCharge",
    "PerUnitCharge",
    "PlanCreate",
    "PlanOut",
    "Request",
    "SubscriptionCreate",
    "SubscriptionOut",
    "Tier",
    "TierOut",
    "TieredCharge",
    "UsageCharge",
    "VolumeCharge",
    "pricing_model",
]

Aggregation = Literal["sum", "count", "max", "min", "last", "unique_count", "percentile"]
PricingModel = Literal["per_unit", "tiered", "volume", "package", "flat_fee"]
Scope = Literal["admin", "ingest", "read"]
Mode = Literal["live", "test"]


class Request(Struct, forbid_unknown_fields=True, kw_only=True):
    """A write body; every write accepts the §16 ``idempotency_key`` body field."""

    idempotency_key: str | UnsetType = UNSET


# ---- API keys ---------------------------------------------------------------------------
class ApiKeyCreate(Request, kw_only=True):
    name: Annotated[str, text(100)]
    scope: Scope
    mode: Mode = "live"


class ApiKeyOut(Struct, kw_only=True):
    id: str
    name: str
    scope: str
    mode: str
    created_at: str
    revoked_at: str | None
    secret: str | UnsetType = UNSET


# ---- Metrics ----------------------------------------------------------------------------
class MetricCreate(Request, kw_only=True):
    key: MetricKey
    name: Annotated[str, text(200)] | UnsetType = UNSET
    display_name: str | UnsetType = UNSET
    aggregation: Aggregation | UnsetType = UNSET
    aggregation_type: Aggregation | UnsetType = UNSET
    description: Annotated[str, text(2000, 0)] | None = None
    property: str | None = None
    percentile: Decimal | None = None


class MetricOut(Struct, kw_only=True):
    id: str
    key: str
    name: str
    aggregation: str
    property: str | None
    percentile: Decimal | None
    description: str | None
    status: str
    created_at: str


# ---- Price plans ------------------------------------------------------------------------
class Tier(Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    up_to: int | None
    unit_price: Decimal
    flat_amount: Decimal = Decimal(0)


class _Charge(Struct, forbid_unknown_fields=True, kw_only=True, frozen=True, tag_field="pricing_model"):
    """What every charge has. ``id`` and ``description`` may be left out of a request;
    billing fills them in (``chg_<n>``, ``"<metric name> (<model>)"``) before storing."""

    id: str | None = None
    description: str | None = None


class PerUnitCharge(_Charge, tag="per_unit", frozen=True):
    metric_key: str
    unit_price: Decimal


class TieredCharge(_Charge, tag="tiered", frozen=True):
    metric_key: str
    tiers: list[Tier]


class VolumeCharge(_Charge, tag="volume", frozen=True):
    metric_key: str
    tiers: list[Tier]


class PackageCharge(_Charge, tag="package", frozen=True):
    metric_key: str
    package_size: Decimal
    package_price: Decimal


class FlatFeeCharge(_Charge, tag="flat_fee", frozen=True):
    amount: Decimal
    metric_key: None = None  # a flat fee meters nothing: null or absent


UsageCharge = PerUnitCharge | TieredCharge | VolumeCharge | PackageCharge
Charge = UsageCharge | FlatFeeCharge


def pricing_model(charge: Charge) -> PricingModel:
    """The charge's ``pricing_model`` tag, as line items and echoes name it."""
    return cast("PricingModel", type(charge).__struct_config__.tag)


class EntitlementIn(Struct, forbid_unknown_fields=True, kw_only=True):
    feature_key: str
    type: Literal["boolean", "limit", "custom"]
    value: bool | int | str | None = None
    metric_key: str | None = None


class MinimumIn(Struct, forbid_unknown_fields=True, kw_only=True):
    """A minimum commitment per billing period, a price in the plan's currency (commercial terms)."""

    amount: Decimal


class PlanCreate(Request, kw_only=True):
    id: ClientId
    name: Annotated[str, text(200)]
    currency: str
    billing_period: Literal["monthly", "quarterly", "annual"]
    charges: list[Charge]
    entitlements: list[EntitlementIn] = []
    changelog: Annotated[str, text(2000, 0)] | None = None
    effective_from: str | None = None
    minimum: MinimumIn | None = None


class TierOut(Struct, kw_only=True):
    up_to: int | None
    unit_price: str
    flat_amount: str


class ChargeOut(Struct, kw_only=True):
    """Echo of a stored ``Charge``: prices as decimal strings in the plan's currency, fields its
    model does not use left out (§19). Its own struct because the echo's values differ in type
    from what a request sends (``49`` in, ``"49.00"`` out)."""

    id: str
    metric_key: str | None
    pricing_model: PricingModel
    description: str
    unit_price: str | UnsetType = UNSET
    tiers: list[TierOut] | UnsetType = UNSET
    package_size: Decimal | UnsetType = UNSET
    package_price: str | UnsetType = UNSET
    amount: str | UnsetType = UNSET


class EntitlementOut(Struct, kw_only=True):
    feature_key: str
    type: str
    value: bool | int | str | None
    metric_key: str | None


class MinimumOut(Struct, kw_only=True):
    amount: str


class PlanOut(Struct, kw_only=True):
    id: str
    version: int
    name: str
    status: str
    currency: str
    billing_period: str
    charges: list[ChargeOut]
    entitlements: list[EntitlementOut]
    changelog: str | None
    effective_from: str
    created_at: str
    deprecated_at: str | None
    minimum: MinimumOut | UnsetType = UNSET  # left out when the version has none


# ---- Customers --------------------------------------------------------------------------
class CustomerCreate(Request, kw_only=True):
    id: ClientId
    name: Annotated[str, text(200)]
    email: str | None = None
    currency: str | None = None
    payment_provider: Literal["stripe"] | None = None
    payment_provider_customer_id: str | None = None
    payment_method_id: str | None = None
    metadata: dict[str, str] | None = None


class CustomerPatch(Request, kw_only=True):
    name: Annotated[str, text(200)] | UnsetType = UNSET
    email: str | None | UnsetType = UNSET
    payment_provider: Literal["stripe"] | None | UnsetType = UNSET
    payment_provider_customer_id: str | None | UnsetType = UNSET
    payment_method_id: str | None | UnsetType = UNSET
    metadata: dict[str, str] | None | UnsetType = UNSET
    # Named so they are refused with INVALID_FIELD (not updatable) instead of UNKNOWN_FIELD.
    id: msgspec.Raw | UnsetType = UNSET
    currency: msgspec.Raw | UnsetType = UNSET


class CustomerOut(Struct, kw_only=True):
    id: str
    name: str
    email: str | None
    currency: str | None
    payment_provider: str | None
    payment_provider_customer_id: str | None
    payment_method_id: str | None
    metadata: dict[str, str]
    created_at: str
    updated_at: str


# ---- Subscriptions ----------------------------------------------------------------------
class SubscriptionCreate(Request, kw_only=True):
    customer_id: str
    plan_id: str
    plan_version: int | None = None
    start_date: str
    end_date: str | None = None


class AmendmentCreate(Request, kw_only=True):
    type: Literal["plan_change", "pause", "resume", "cancel", "end_date_change"]
    effective: str = "immediate"
    plan_id: str | UnsetType = UNSET
    plan_version: int | UnsetType = UNSET
    prorate: bool | UnsetType = UNSET
    resume_date: str | None | UnsetType = UNSET
    end_date: str | None | UnsetType = UNSET


class AmendmentOut(Struct, kw_only=True):
    id: str
    subscription_id: str
    type: str
    effective: str
    effective_at: str
    plan_id: str | None
    plan_version: int | None
    prorate: bool
    resume_date: str | None
    end_date: str | None
    status: str
    created_at: str
    applied_at: str | None


class SubscriptionOut(Struct, kw_only=True):
    id: str
    customer_id: str
    plan_id: str
    plan_version: int
    status: str
    start_date: str
    end_date: str | None
    created_at: str
