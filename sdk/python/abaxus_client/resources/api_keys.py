"""API keys (§2, admin scope): create (the secret is shown once), list, revoke."""

from __future__ import annotations

from typing import Literal

from abaxus_client._pagination import AsyncPaginator, Paginator
from abaxus_client._transport import Call
from abaxus_client.models import UNSET, ApiKey, ApiKeyCreate, Page, UnsetType
from abaxus_client.resources._base import AsyncResource, SyncResource, seg

__all__ = ["ApiKeys", "AsyncApiKeys"]

Scope = Literal["admin", "ingest", "read"]
Mode = Literal["live", "test"]


def _create(name: str, scope: Scope, mode: Mode | UnsetType, idempotency_key: str | None) -> Call[ApiKey]:
    return Call("POST", "/v1/api-keys", ApiKey, body=ApiKeyCreate(name=name, scope=scope, mode=mode), write=True,
                idempotency_key=idempotency_key)


class ApiKeys(SyncResource):
    def create(self, *, name: str, scope: Scope, mode: Mode | UnsetType = UNSET,
               idempotency_key: str | None = None) -> ApiKey:
        """A new key; store ``secret`` now: only its digest is kept, it is never shown again."""
        return self._t.request(_create(name, scope, mode, idempotency_key))

    def list(self, *, limit: int | None = None) -> Paginator[Page[ApiKey], ApiKey]:
        return self._list("/v1/api-keys", ApiKey, {}, limit)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key; it fails authentication from this instant."""
        return self._t.request(Call("DELETE", f"/v1/api-keys/{seg(key_id)}", ApiKey))


class AsyncApiKeys(AsyncResource):
    async def create(self, *, name: str, scope: Scope, mode: Mode | UnsetType = UNSET,
                     idempotency_key: str | None = None) -> ApiKey:
        return await self._t.request(_create(name, scope, mode, idempotency_key))

    def list(self, *, limit: int | None = None) -> AsyncPaginator[Page[ApiKey], ApiKey]:
        return self._list("/v1/api-keys", ApiKey, {}, limit)

    async def revoke(self, key_id: str) -> ApiKey:
        return await self._t.request(Call("DELETE", f"/v1/api-keys/{seg(key_id)}", ApiKey))
