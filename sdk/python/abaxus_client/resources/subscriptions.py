"""Subscriptions (§8): a customer on a pinned plan version, changed only by dated amendments."""

from __future__ import annotations

from typing import Literal

from abaxus_client._pagination import AsyncPaginator, Paginator
from abaxus_client._transport import Call
from abaxus_client.models import UNSET, Amendment, AmendmentCreate, Page, Subscription, SubscriptionCreate, Timestamp, UnsetType
from abaxus_client.resources._base import AsyncResource, SyncResource, seg

__all__ = ["AsyncSubscriptions", "Subscriptions"]

AmendmentType = Literal["plan_change", "pause", "resume", "cancel", "end_date_change"]


def _create(body: SubscriptionCreate, idempotency_key: str | None) -> Call[Subscription]:
    return Call("POST", "/v1/subscriptions", Subscription, body=body, write=True, idempotency_key=idempotency_key)


def _amend(subscription_id: str, body: AmendmentCreate, idempotency_key: str | None) -> Call[Amendment]:
    return Call("POST", f"/v1/subscriptions/{seg(subscription_id)}/amendments", Amendment, body=body, write=True,
                idempotency_key=idempotency_key)


class Subscriptions(SyncResource):
    def create(self, *, customer_id: str, plan_id: str, start_date: Timestamp, plan_version: int | UnsetType = UNSET,
               end_date: Timestamp | None | UnsetType = UNSET, idempotency_key: str | None = None) -> Subscription:
        """Subscribe a customer; ``plan_version`` defaults to the plan's active version."""
        body = SubscriptionCreate(customer_id=customer_id, plan_id=plan_id, start_date=start_date,
                                  plan_version=plan_version, end_date=end_date)
        return self._t.request(_create(body, idempotency_key))

    def get(self, subscription_id: str) -> Subscription:
        return self._t.request(Call("GET", f"/v1/subscriptions/{seg(subscription_id)}", Subscription))

    def list(self, *, customer_id: str | None = None, status: str | None = None,
             limit: int | None = None) -> Paginator[Page[Subscription], Subscription]:
        return self._list("/v1/subscriptions", Subscription, {"customer_id": customer_id, "status": status}, limit)

    def amend(self, subscription_id: str, *, type: AmendmentType, effective: Timestamp | UnsetType = UNSET,
              plan_id: str | UnsetType = UNSET, plan_version: int | UnsetType = UNSET,
              prorate: bool | UnsetType = UNSET, resume_date: Timestamp | None | UnsetType = UNSET,
              end_date: Timestamp | None | UnsetType = UNSET, idempotency_key: str | None = None) -> Amendment:
        """Pause, resume, cancel, change plan or end date at an exact instant (``effective``:
        ``"immediate"`` by default, ``"end_of_period"`` or a future timestamp)."""
        body = AmendmentCreate(type=type, effective=effective, plan_id=plan_id, plan_version=plan_version,
                               prorate=prorate, resume_date=resume_date, end_date=end_date)
        return self._t.request(_amend(subscription_id, body, idempotency_key))

    def amendments(self, subscription_id: str, *, limit: int | None = None) -> Paginator[Page[Amendment], Amendment]:
        """Every amendment of a subscription, scheduled and applied."""
        return self._list(f"/v1/subscriptions/{seg(subscription_id)}/amendments", Amendment, {}, limit)


class AsyncSubscriptions(AsyncResource):
    async def create(self, *, customer_id: str, plan_id: str, start_date: Timestamp,
                     plan_version: int | UnsetType = UNSET, end_date: Timestamp | None | UnsetType = UNSET,
                     idempotency_key: str | None = None) -> Subscription:
        body = SubscriptionCreate(customer_id=customer_id, plan_id=plan_id, start_date=start_date,
                                  plan_version=plan_version, end_date=end_date)
        return await self._t.request(_create(body, idempotency_key))

    async def get(self, subscription_id: str) -> Subscription:
        return await self._t.request(Call("GET", f"/v1/subscriptions/{seg(subscription_id)}", Subscription))

    def list(self, *, customer_id: str | None = None, status: str | None = None,
             limit: int | None = None) -> AsyncPaginator[Page[Subscription], Subscription]:
        return self._list("/v1/subscriptions", Subscription, {"customer_id": customer_id, "status": status}, limit)

    async def amend(self, subscription_id: str, *, type: AmendmentType, effective: Timestamp | UnsetType = UNSET,
                    plan_id: str | UnsetType = UNSET, plan_version: int | UnsetType = UNSET,
                    prorate: bool | UnsetType = UNSET, resume_date: Timestamp | None | UnsetType = UNSET,
                    end_date: Timestamp | None | UnsetType = UNSET, idempotency_key: str | None = None) -> Amendment:
        body = AmendmentCreate(type=type, effective=effective, plan_id=plan_id, plan_version=plan_version,
                               prorate=prorate, resume_date=resume_date, end_date=end_date)
        return await self._t.request(_amend(subscription_id, body, idempotency_key))

    def amendments(self, subscription_id: str, *,
                   limit: int | None = None) -> AsyncPaginator[Page[Amendment], Amendment]:
        return self._list(f"/v1/subscriptions/{seg(subscription_id)}/amendments", Amendment, {}, limit)
