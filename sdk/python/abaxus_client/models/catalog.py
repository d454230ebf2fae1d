"""Catalog objects: metrics (§5), price plans (§6), customers (§7), subscriptions and
amendments (§8), API keys (§2). Status and enum-like fields are plain ``str`` in responses
so a value added by a newer server decodes instead of failing."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from abaxus_client.models._base import UNSET, DecimalLike, Request, Response, Timestamp, UnsetType

__all__ = [
    "Aggregation", "Amendment", "AmendmentCreate", "ApiKey", "ApiKeyCreate", "BillingPeriod", "Charge",
    "Customer", "CustomerCreate", "CustomerUpdate", "Entitlement", "Metric", "MetricCreate", "PlanCharge",
    "PlanEntitlement", "PlanTier", "PricePlan", "PricePlanCreate", "PricingModel", "Subscription",
    "SubscriptionCreate", "Tier",
]

Aggregation = Literal["sum", "count", "max", "min", "last", "unique_count", "percentile"]
PricingModel = Literal["per_unit", "tiered", "volume", "package", "flat_fee"]
BillingPeriod = Literal["monthly", "quarterly", "annual"]


# ---- Metrics (§5) -------------------------------------------------------------------------
class MetricCreate(Request, frozen=True, kw_only=True):
    key: str
    name: str
    aggregation: Aggregation
    description: str | UnsetType = UNSET
    property: str | UnsetType = UNSET
    percentile: DecimalLike | UnsetType = UNSET


class Metric(Response, frozen=True, kw_only=True):
    id: str
    key: str
    name: str
    aggregation: str
    property: str | None = None
    percentile: Decimal | None = None
    description: str | None = None
    status: str
    created_at: str


# ---- Price plans (§6) ---------------------------------------------------------------------
class Tier(Request, frozen=True, kw_only=True):
    """A tier as sent: ``up_to`` inclusive, ``None`` for the last (unbounded) one."""

    up_to: int | None
    unit_price: DecimalLike
    flat_amount: DecimalLike | UnsetType = UNSET


class Charge(Request, frozen=True, kw_only=True):
    """A plan charge as sent; set only the fields its ``pricing_model`` uses (§6 table)."""

    pricing_model: PricingModel
    id: str | UnsetType = UNSET
    metric_key: str | None | UnsetType = UNSET
    description: str | UnsetType = UNSET
    unit_price: DecimalLike | UnsetType = UNSET
    tiers: list[Tier] | UnsetType = UNSET
    package_size: DecimalLike | UnsetType = UNSET
    package_price: DecimalLike | UnsetType = UNSET
    amount: DecimalLike | UnsetType = UNSET


class Entitlement(Request, frozen=True, kw_only=True):
    """A plan entitlement as sent (§15): boolean, limit (with ``metric_key``) or custom."""

    feature_key: str
    type: Literal["boolean", "limit", "custom"]
    value: bool | int | str | None = None
    metric_key: str | UnsetType = UNSET


class PricePlanCreate(Request, frozen=True, kw_only=True):
    id: str
    name: str
    currency: str
    billing_period: BillingPeriod
    charges: list[Charge]
    entitlements: list[Entitlement] | UnsetType = UNSET
    changelog: str | UnsetType = UNSET
    effective_from: Timestamp | UnsetType = UNSET


class PlanTier(Response, frozen=True, kw_only=True):
    up_to: int | None
    unit_price: Decimal
    flat_amount: Decimal = Decimal(0)


class PlanCharge(Response, frozen=True, kw_only=True):
    """A charge as echoed: prices are exact Decimals; fields its model does not use are None."""

    id: str
    metric_key: str | None = None
    pricing_model: str
    description: str | None = None
    unit_price: Decimal | None = None
    tiers: list[PlanTier] | None = None
    package_size: Decimal | None = None
    package_price: Decimal | None = None
    amount: Decimal | None = None


class PlanEntitlement(Response, frozen=True, kw_only=True):
    feature_key: str
    type: str
    value: bool | int | str | None = None
    metric_key: str | None = None


class PricePlan(Response, frozen=True, kw_only=True):
    """One immutable version of a plan."""

    id: str
    version: int
    name: str
    status: str
    currency: str
    billing_period: str
    charges: list[PlanCharge]
    entitlements: list[PlanEntitlement] = []
    changelog: str | None = None
    effective_from: str
    created_at: str
    deprecated_at: str | None = None


# ---- Customers (§7) -----------------------------------------------------------------------
class CustomerCreate(Request, frozen=True, kw_only=True):
    id: str
    name: str
    email: str | None | UnsetType = UNSET
    currency: str | None | UnsetType = UNSET
    payment_provider: Literal["stripe"] | None | UnsetType = UNSET
    payment_provider_customer_id: str | None | UnsetType = UNSET
    payment_method_id: str | None | UnsetType = UNSET
    metadata: dict[str, str] | UnsetType = UNSET


class CustomerUpdate(Request, frozen=True, kw_only=True):
    """A PATCH: ``UNSET`` leaves a field alone, ``None`` clears it, ``metadata`` is replaced whole."""

    name: str | UnsetType = UNSET
    email: str | None | UnsetType = UNSET
    payment_provider: Literal["stripe"] | None | UnsetType = UNSET
    payment_provider_customer_id: str | None | UnsetType = UNSET
    payment_method_id: str | None | UnsetType = UNSET
    metadata: dict[str, str] | None | UnsetType = UNSET


class Customer(Response, frozen=True, kw_only=True):
    id: str
    name: str
    email: str | None = None
    currency: str | None = None
    payment_provider: str | None = None
    payment_provider_customer_id: str | None = None
    payment_method_id: str | None = None
    metadata: dict[str, str] = {}
    created_at: str
    updated_at: str


# ---- Subscriptions and amendments (§8) ----------------------------------------------------
class SubscriptionCreate(Request, frozen=True, kw_only=True):
    customer_id: str
    plan_id: str
    start_date: Timestamp
    plan_version: int | UnsetType = UNSET
    end_date: Timestamp | None | UnsetType = UNSET


class Subscription(Response, frozen=True, kw_only=True):
    id: str
    customer_id: str
    plan_id: str
    plan_version: int
    status: str
    start_date: str
    end_date: str | None = None
    created_at: str


class AmendmentCreate(Request, frozen=True, kw_only=True):
    type: Literal["plan_change", "pause", "resume", "cancel", "end_date_change"]
    effective: Timestamp | UnsetType = UNSET  # "immediate" (default), "end_of_period" or a future time
    plan_id: str | UnsetType = UNSET
    plan_version: int | UnsetType = UNSET
    prorate: bool | UnsetType = UNSET
    resume_date: Timestamp | None | UnsetType = UNSET
    end_date: Timestamp | None | UnsetType = UNSET


class Amendment(Response, frozen=True, kw_only=True):
    id: str
    subscription_id: str
    type: str
    effective: str
    effective_at: str
    plan_id: str | None = None
    plan_version: int | None = None
    prorate: bool = False
    resume_date: str | None = None
    end_date: str | None = None
    status: str
    created_at: str
    applied_at: str | None = None


# ---- API keys (§2) ------------------------------------------------------------------------
class ApiKeyCreate(Request, frozen=True, kw_only=True):
    name: str
    scope: Literal["admin", "ingest", "read"]
    mode: Literal["live", "test"] | UnsetType = UNSET


class ApiKey(Response, frozen=True, kw_only=True):
    """An API key; ``secret`` is set only in the create response (shown once: store it)."""

    id: str
    name: str
    scope: str
    mode: str
    created_at: str
    revoked_at: str | None = None
    secret: str | None = None
