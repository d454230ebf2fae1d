"""Customers (§7): who is billed, and the Stripe references used to charge them."""

from __future__ import annotations

from typing import Literal

from abaxus_client._pagination import AsyncPaginator, Paginator
from abaxus_client._transport import Call
from abaxus_client.models import UNSET, Customer, CustomerCreate, CustomerUpdate, Page, UnsetType
from abaxus_client.resources._base import AsyncResource, SyncResource, seg

__all__ = ["AsyncCustomers", "Customers"]

Provider = Literal["stripe"] | None


def _create(body: CustomerCreate, idempotency_key: str | None) -> Call[Customer]:
    return Call("POST", "/v1/customers", Customer, body=body, write=True, idempotency_key=idempotency_key)


def _update(customer_id: str, body: CustomerUpdate, idempotency_key: str | None) -> Call[Customer]:
    return Call("PATCH", f"/v1/customers/{seg(customer_id)}", Customer, body=body, write=True,
                idempotency_key=idempotency_key)


class Customers(SyncResource):
    def create(self, *, id: str, name: str, email: str | None | UnsetType = UNSET,
               currency: str | None | UnsetType = UNSET, payment_provider: Provider | UnsetType = UNSET,
               payment_provider_customer_id: str | None | UnsetType = UNSET,
               payment_method_id: str | None | UnsetType = UNSET, metadata: dict[str, str] | UnsetType = UNSET,
               idempotency_key: str | None = None) -> Customer:
        """Create a customer under your own ``id`` (a taken one raises ``ConflictError``)."""
        body = CustomerCreate(id=id, name=name, email=email, currency=currency, payment_provider=payment_provider,
                              payment_provider_customer_id=payment_provider_customer_id,
                              payment_method_id=payment_method_id, metadata=metadata)
        return self._t.request(_create(body, idempotency_key))

    def get(self, customer_id: str) -> Customer:
        return self._t.request(Call("GET", f"/v1/customers/{seg(customer_id)}", Customer))

    def update(self, customer_id: str, *, name: str | UnsetType = UNSET, email: str | None | UnsetType = UNSET,
               payment_provider: Provider | UnsetType = UNSET,
               payment_provider_customer_id: str | None | UnsetType = UNSET,
               payment_method_id: str | None | UnsetType = UNSET, metadata: dict[str, str] | None | UnsetType = UNSET,
               idempotency_key: str | None = None) -> Customer:
        """PATCH: only the arguments you pass are sent; ``None`` clears a field; ``metadata`` is replaced whole."""
        body = CustomerUpdate(name=name, email=email, payment_provider=payment_provider,
                              payment_provider_customer_id=payment_provider_customer_id,
                              payment_method_id=payment_method_id, metadata=metadata)
        return self._t.request(_update(customer_id, body, idempotency_key))

    def list(self, *, limit: int | None = None) -> Paginator[Page[Customer], Customer]:
        return self._list("/v1/customers", Customer, {}, limit)


class AsyncCustomers(AsyncResource):
    async def create(self, *, id: str, name: str, email: str | None | UnsetType = UNSET,
                     currency: str | None | UnsetType = UNSET, payment_provider: Provider | UnsetType = UNSET,
                     payment_provider_customer_id: str | None | UnsetType = UNSET,
                     payment_method_id: str | None | UnsetType = UNSET, metadata: dict[str, str] | UnsetType = UNSET,
                     idempotency_key: str | None = None) -> Customer:
        body = CustomerCreate(id=id, name=name, email=email, currency=currency, payment_provider=payment_provider,
                              payment_provider_customer_id=payment_provider_customer_id,
                              payment_method_id=payment_method_id, metadata=metadata)
        return await self._t.request(_create(body, idempotency_key))

    async def get(self, customer_id: str) -> Customer:
        return await self._t.request(Call("GET", f"/v1/customers/{seg(customer_id)}", Customer))

    async def update(self, customer_id: str, *, name: str | UnsetType = UNSET, email: str | None | UnsetType = UNSET,
                     payment_provider: Provider | UnsetType = UNSET,
                     payment_provider_customer_id: str | None | UnsetType = UNSET,
                     payment_method_id: str | None | UnsetType = UNSET,
                     metadata: dict[str, str] | None | UnsetType = UNSET,
                     idempotency_key: str | None = None) -> Customer:
        body = CustomerUpdate(name=name, email=email, payment_provider=payment_provider,
                              payment_provider_customer_id=payment_provider_customer_id,
                              payment_method_id=payment_method_id, metadata=metadata)
        return await self._t.request(_update(customer_id, body, idempotency_key))

    def list(self, *, limit: int | None = None) -> AsyncPaginator[Page[Customer], Customer]:
        return self._list("/v1/customers", Customer, {}, limit)
