"""Usage (§10): the fast pre-aggregated summary and the exact compute an invoice would see."""

from __future__ import annotations

from abaxus_client._encoding import to_timestamp
from abaxus_client._transport import Call
from abaxus_client.models import UNSET, Timestamp, UnsetType, UsageCompute, UsageComputeRequest, UsageSummary
from abaxus_client.resources._base import AsyncResource, SyncResource

__all__ = ["AsyncUsage", "Usage"]


def _summary(customer_id: str, from_: Timestamp, to: Timestamp, metric_key: str | None) -> Call[UsageSummary]:
    params = {"customer_id": customer_id, "from": to_timestamp(from_, "from_"), "to": to_timestamp(to, "to"),
              "metric_key": metric_key}
    return Call("GET", "/v1/usage/summary", UsageSummary, params=params)


def _compute(customer_id: str, period_start: Timestamp, period_end: Timestamp,
             metric_key: str | UnsetType, idempotency_key: str | None) -> Call[UsageCompute]:
    body = UsageComputeRequest(customer_id=customer_id, period_start=period_start, period_end=period_end,
                               metric_key=metric_key)
    return Call("POST", "/v1/usage/compute", UsageCompute, body=body, write=True, idempotency_key=idempotency_key)


class Usage(SyncResource):
    def summary(self, *, customer_id: str, from_: Timestamp, to: Timestamp,
                metric_key: str | None = None) -> UsageSummary:
        """Pre-aggregated (fast, may trail by ``meta.lag_seconds``); ``to`` covers its whole second."""
        return self._t.request(_summary(customer_id, from_, to, metric_key))

    def compute(self, *, customer_id: str, period_start: Timestamp, period_end: Timestamp,
                metric_key: str | UnsetType = UNSET, idempotency_key: str | None = None) -> UsageCompute:
        """Exact, from raw events; counts every event acknowledged before the call."""
        return self._t.request(_compute(customer_id, period_start, period_end, metric_key, idempotency_key))


class AsyncUsage(AsyncResource):
    async def summary(self, *, customer_id: str, from_: Timestamp, to: Timestamp,
                      metric_key: str | None = None) -> UsageSummary:
        return await self._t.request(_summary(customer_id, from_, to, metric_key))

    async def compute(self, *, customer_id: str, period_start: Timestamp, period_end: Timestamp,
                      metric_key: str | UnsetType = UNSET, idempotency_key: str | None = None) -> UsageCompute:
        return await self._t.request(_compute(customer_id, period_start, period_end, metric_key, idempotency_key))
