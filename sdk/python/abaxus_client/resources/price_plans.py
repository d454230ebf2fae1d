"""Price plans (§6): every create appends an immutable version; subscriptions pin one."""

from __future__ import annotations

from collections.abc import Sequence

from abaxus_client._pagination import AsyncPaginator, Paginator
from abaxus_client._transport import Call
from abaxus_client.models import UNSET, Charge, Entitlement, Page, PricePlan, PricePlanCreate, Timestamp, UnsetType
from abaxus_client.models.catalog import BillingPeriod
from abaxus_client.resources._base import AsyncResource, SyncResource, seg

__all__ = ["AsyncPricePlans", "PricePlans"]


def _create(id: str, name: str, currency: str, billing_period: BillingPeriod, charges: Sequence[Charge],
            entitlements: Sequence[Entitlement] | UnsetType, changelog: str | UnsetType,
            effective_from: Timestamp | UnsetType, idempotency_key: str | None) -> Call[PricePlan]:
    body = PricePlanCreate(id=id, name=name, currency=currency, billing_period=billing_period, charges=list(charges),
                           entitlements=UNSET if entitlements is UNSET else list(entitlements),
                           changelog=changelog, effective_from=effective_from)
    return Call("POST", "/v1/price-plans", PricePlan, body=body, write=True, idempotency_key=idempotency_key)


def _version_path(plan_id: str, version: int) -> str:
    return f"/v1/price-plans/{seg(plan_id)}/versions/{seg(version)}"


class PricePlans(SyncResource):
    def create(self, *, id: str, name: str, currency: str, billing_period: BillingPeriod, charges: Sequence[Charge],
               entitlements: Sequence[Entitlement] | UnsetType = UNSET, changelog: str | UnsetType = UNSET,
               effective_from: Timestamp | UnsetType = UNSET, idempotency_key: str | None = None) -> PricePlan:
        """Publish a new version of plan ``id`` (version 1 the first time).

        Each create makes a version, even with an identical body; the ``Idempotency-Key`` the
        client sends makes its own retries safe. Pass ``idempotency_key`` to make a repeated
        call of yours safe too.
        """
        return self._t.request(_create(id, name, currency, billing_period, charges, entitlements, changelog,
                                       effective_from, idempotency_key))

    def get(self, plan_id: str) -> PricePlan:
        """The highest version."""
        return self._t.request(Call("GET", f"/v1/price-plans/{seg(plan_id)}", PricePlan))

    def get_version(self, plan_id: str, version: int) -> PricePlan:
        return self._t.request(Call("GET", _version_path(plan_id, version), PricePlan))

    def deprecate(self, plan_id: str, version: int, *, idempotency_key: str | None = None) -> PricePlan:
        """No new subscription may use this version; existing ones keep billing on it."""
        return self._t.request(Call("POST", _version_path(plan_id, version) + "/deprecate", PricePlan, write=True,
                                    idempotency_key=idempotency_key))

    def list(self, *, limit: int | None = None) -> Paginator[Page[PricePlan], PricePlan]:
        """The latest version of each plan."""
        return self._list("/v1/price-plans", PricePlan, {}, limit)


class AsyncPricePlans(AsyncResource):
    async def create(self, *, id: str, name: str, currency: str, billing_period: BillingPeriod,
                     charges: Sequence[Charge], entitlements: Sequence[Entitlement] | UnsetType = UNSET,
                     changelog: str | UnsetType = UNSET, effective_from: Timestamp | UnsetType = UNSET,
                     idempotency_key: str | None = None) -> PricePlan:
        """Publish a new version of plan ``id`` (see :meth:`PricePlans.create`)."""
        return await self._t.request(_create(id, name, currency, billing_period, charges, entitlements, changelog,
                                             effective_from, idempotency_key))

    async def get(self, plan_id: str) -> PricePlan:
        return await self._t.request(Call("GET", f"/v1/price-plans/{seg(plan_id)}", PricePlan))

    async def get_version(self, plan_id: str, version: int) -> PricePlan:
        return await self._t.request(Call("GET", _version_path(plan_id, version), PricePlan))

    async def deprecate(self, plan_id: str, version: int, *, idempotency_key: str | None = None) -> PricePlan:
        return await self._t.request(Call("POST", _version_path(plan_id, version) + "/deprecate", PricePlan,
                                          write=True, idempotency_key=idempotency_key))

    def list(self, *, limit: int | None = None) -> AsyncPaginator[Page[PricePlan], PricePlan]:
        return self._list("/v1/price-plans", PricePlan, {}, limit)
