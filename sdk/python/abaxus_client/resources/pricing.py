"""Pricing (§11): price what an invoice would be, or hypothetical usage, without issuing anything."""

from __future__ import annotations

from collections.abc import Mapping

from abaxus_client._transport import Call
from abaxus_client.models import (
    UNSET,
    Calculation,
    DecimalLike,
    Preview,
    PricingCalculateRequest,
    PricingPreviewRequest,
    Timestamp,
    UnsetType,
)
from abaxus_client.resources._base import AsyncResource, SyncResource

__all__ = ["AsyncPricing", "Pricing"]


def _calculate(customer_id: str, cutoff_date: Timestamp, subscription_id: str | UnsetType,
               idempotency_key: str | None) -> Call[Calculation]:
    body = PricingCalculateRequest(customer_id=customer_id, cutoff_date=cutoff_date, subscription_id=subscription_id)
    return Call("POST", "/v1/pricing/calculate", Calculation, body=body, write=True, idempotency_key=idempotency_key)


def _preview(plan_id: str, usage: Mapping[str, DecimalLike], plan_version: int | UnsetType,
             idempotency_key: str | None) -> Call[Preview]:
    body = PricingPreviewRequest(plan_id=plan_id, usage=dict(usage), plan_version=plan_version)
    return Call("POST", "/v1/pricing/preview", Preview, body=body, write=True, idempotency_key=idempotency_key)


class Pricing(SyncResource):
    def calculate(self, *, customer_id: str, cutoff_date: Timestamp, subscription_id: str | UnsetType = UNSET,
                  idempotency_key: str | None = None) -> Calculation:
        """Exactly what ``invoices.create`` would issue, kept 24 h under ``calculation_id``."""
        return self._t.request(_calculate(customer_id, cutoff_date, subscription_id, idempotency_key))

    def preview(self, *, plan_id: str, usage: Mapping[str, DecimalLike], plan_version: int | UnsetType = UNSET,
                idempotency_key: str | None = None) -> Preview:
        """Price hypothetical quantities (``{"api_calls": 1_200_000}``) on a plan version."""
        return self._t.request(_preview(plan_id, usage, plan_version, idempotency_key))


class AsyncPricing(AsyncResource):
    async def calculate(self, *, customer_id: str, cutoff_date: Timestamp, subscription_id: str | UnsetType = UNSET,
                        idempotency_key: str | None = None) -> Calculation:
        return await self._t.request(_calculate(customer_id, cutoff_date, subscription_id, idempotency_key))

    async def preview(self, *, plan_id: str, usage: Mapping[str, DecimalLike],
                      plan_version: int | UnsetType = UNSET, idempotency_key: str | None = None) -> Preview:
        return await self._t.request(_preview(plan_id, usage, plan_version, idempotency_key))
