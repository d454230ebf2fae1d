"""Entitlements (§15): what a customer's live plans grant, and whether one feature is allowed."""

from __future__ import annotations

from abaxus_client._transport import Call
from abaxus_client.models import EntitlementCheck, Entitlements
from abaxus_client.resources._base import AsyncResource, SyncResource

__all__ = ["AsyncEntitlementsResource", "EntitlementsResource"]


def _resolve(customer_id: str) -> Call[Entitlements]:
    return Call("GET", "/v1/entitlements", Entitlements, params={"customer_id": customer_id})


def _check(customer_id: str, feature_key: str) -> Call[EntitlementCheck]:
    return Call("GET", "/v1/entitlements/check", EntitlementCheck,
                params={"customer_id": customer_id, "feature_key": feature_key})


class EntitlementsResource(SyncResource):
    def resolve(self, customer_id: str) -> Entitlements:
        return self._t.request(_resolve(customer_id))

    def check(self, customer_id: str, feature_key: str) -> EntitlementCheck:
        """``granted`` tells whether to allow the feature now (a limit: usage still below it)."""
        return self._t.request(_check(customer_id, feature_key))


class AsyncEntitlementsResource(AsyncResource):
    async def resolve(self, customer_id: str) -> Entitlements:
        return await self._t.request(_resolve(customer_id))

    async def check(self, customer_id: str, feature_key: str) -> EntitlementCheck:
        return await self._t.request(_check(customer_id, feature_key))
