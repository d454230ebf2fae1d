"""Metrics (§5): what is counted and how (sum, count, max, min, last, unique_count, percentile)."""

from __future__ import annotations

from abaxus_client._pagination import AsyncPaginator, Paginator
from abaxus_client._transport import Call
from abaxus_client.models import UNSET, DecimalLike, Metric, MetricCreate, Page, UnsetType
from abaxus_client.models.catalog import Aggregation
from abaxus_client.resources._base import AsyncResource, SyncResource, seg

__all__ = ["AsyncMetrics", "Metrics"]


def _create(key: str, name: str, aggregation: Aggregation, description: str | UnsetType,
            property: str | UnsetType, percentile: DecimalLike | UnsetType, idempotency_key: str | None) -> Call[Metric]:
    body = MetricCreate(key=key, name=name, aggregation=aggregation, description=description, property=property,
                        percentile=percentile)
    return Call("POST", "/v1/metrics", Metric, body=body, write=True, idempotency_key=idempotency_key)


def _deactivate(key: str, idempotency_key: str | None) -> Call[Metric]:
    return Call("POST", f"/v1/metrics/{seg(key)}/deactivate", Metric, write=True, idempotency_key=idempotency_key)


class Metrics(SyncResource):
    def create(self, *, key: str, name: str, aggregation: Aggregation, description: str | UnsetType = UNSET,
               property: str | UnsetType = UNSET, percentile: DecimalLike | UnsetType = UNSET,
               idempotency_key: str | None = None) -> Metric:
        """Define a metric; ``key`` is unique forever (a taken one raises ``ConflictError``)."""
        return self._t.request(_create(key, name, aggregation, description, property, percentile, idempotency_key))

    def get(self, key: str) -> Metric:
        return self._t.request(Call("GET", f"/v1/metrics/{seg(key)}", Metric))

    def list(self, *, status: str | None = None, limit: int | None = None) -> Paginator[Page[Metric], Metric]:
        return self._list("/v1/metrics", Metric, {"status": status}, limit)

    def deactivate(self, key: str, *, idempotency_key: str | None = None) -> Metric:
        """Stop accepting events for a metric, for good; stored usage and invoices stay."""
        return self._t.request(_deactivate(key, idempotency_key))


class AsyncMetrics(AsyncResource):
    async def create(self, *, key: str, name: str, aggregation: Aggregation, description: str | UnsetType = UNSET,
                     property: str | UnsetType = UNSET, percentile: DecimalLike | UnsetType = UNSET,
                     idempotency_key: str | None = None) -> Metric:
        """Define a metric; ``key`` is unique forever (a taken one raises ``ConflictError``)."""
        return await self._t.request(_create(key, name, aggregation, description, property, percentile,
                                             idempotency_key))

    async def get(self, key: str) -> Metric:
        return await self._t.request(Call("GET", f"/v1/metrics/{seg(key)}", Metric))

    def list(self, *, status: str | None = None, limit: int | None = None) -> AsyncPaginator[Page[Metric], Metric]:
        return self._list("/v1/metrics", Metric, {"status": status}, limit)

    async def deactivate(self, key: str, *, idempotency_key: str | None = None) -> Metric:
        """Stop accepting events for a metric, for good; stored usage and invoices stay."""
        return await self._t.request(_deactivate(key, idempotency_key))
