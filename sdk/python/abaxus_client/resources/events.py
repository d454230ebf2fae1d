"""Events (§9): send one, a batch, a synchronous backfill, void, list; and the buffered batcher.

Event calls carry no ``Idempotency-Key`` header: each event's own ``idempotency_key`` already
makes resending the same body safe (the server counts a key once, for all time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from abaxus_client._encoding import to_timestamp
from abaxus_client._pagination import AsyncPaginator, Paginator
from abaxus_client._transport import Call
from abaxus_client.batcher import AsyncEventBatcher, EventBatcher, EventLike
from abaxus_client.models import BatchResult, EventAck, EventVoid, Page, StoredEvent, Timestamp, VoidResult
from abaxus_client.resources._base import AsyncResource, SyncResource

__all__ = ["AsyncEvents", "Events"]

_MAX_BATCH = 1000  # the server's bound on events per request
_RESULTS = frozenset({207, 422})  # some / none accepted: still a per-event answer, not an exception


def _batch(path: str, events: Sequence[EventLike | msgspec.Raw]) -> Call[BatchResult]:
    if not 1 <= len(events) <= _MAX_BATCH:
        raise ValueError(f"Send 1–1,000 events per request (got {len(events)}); events.batcher() splits any number.")
    return Call("POST", path, BatchResult, body={"events": list(events)}, results_statuses=_RESULTS)


def _void(idempotency_keys: Sequence[str], reason: str) -> Call[VoidResult]:
    return Call("POST", "/v1/events/void", VoidResult, body=EventVoid(idempotency_keys=list(idempotency_keys),
                                                                      reason=reason))


def _list_params(customer_id: str | None, metric_key: str | None, from_: Timestamp | None,
                 to: Timestamp | None) -> dict[str, Any]:
    return {"customer_id": customer_id, "metric_key": metric_key,
            "from": None if from_ is None else to_timestamp(from_, "from_"),
            "to": None if to is None else to_timestamp(to, "to")}


class Events(SyncResource):
    def send(self, event: EventLike) -> EventAck:
        """One event; ``202`` means durable. A duplicate key gets the first event's id back."""
        return self._t.request(Call("POST", "/v1/events", EventAck, body=event))

    def batch(self, events: Sequence[EventLike]) -> BatchResult:
        """Up to 1,000 events in one request; returns per-event results (202, 207 or 422 alike)."""
        return self._t.request(_batch("/v1/events/batch", events))

    def backfill(self, events: Sequence[EventLike]) -> BatchResult:
        """Like :meth:`batch`, but answers once the events are stored and visible to exact usage."""
        return self._t.request(_batch("/v1/events/backfill", events))

    def void(self, idempotency_keys: Sequence[str], *, reason: str) -> VoidResult:
        """Exclude events from all usage computed from now on (final; issued invoices are untouched)."""
        return self._t.request(_void(idempotency_keys, reason))

    def list(self, *, customer_id: str | None = None, metric_key: str | None = None, from_: Timestamp | None = None,
             to: Timestamp | None = None, limit: int | None = None) -> Paginator[Page[StoredEvent], StoredEvent]:
        """Stored events, newest first, voided ones included."""
        return self._list("/v1/events", StoredEvent, _list_params(customer_id, metric_key, from_, to), limit)

    def batcher(self, *, max_batch: int = 1000, flush_interval_ms: float = 200, max_buffered: int | None = None,
                keep_results: bool = True) -> EventBatcher:
        """A background batcher over this client (see :class:`~abaxus_client.batcher.EventBatcher`).

        ``max_buffered`` (default 10 × ``max_batch``) bounds the events held; ``keep_results=False``
        keeps only the totals, for producers that never call ``flush()``.
        """
        def send(raws: list[msgspec.Raw]) -> BatchResult:
            return self._t.request(_batch("/v1/events/batch", raws))

        return EventBatcher(send, max_batch=max_batch, flush_interval_ms=flush_interval_ms,
                            max_buffered=max_buffered, keep_results=keep_results, retry=self._t.config.retry)


class AsyncEvents(AsyncResource):
    async def send(self, event: EventLike) -> EventAck:
        return await self._t.request(Call("POST", "/v1/events", EventAck, body=event))

    async def batch(self, events: Sequence[EventLike]) -> BatchResult:
        return await self._t.request(_batch("/v1/events/batch", events))

    async def backfill(self, events: Sequence[EventLike]) -> BatchResult:
        return await self._t.request(_batch("/v1/events/backfill", events))

    async def void(self, idempotency_keys: Sequence[str], *, reason: str) -> VoidResult:
        return await self._t.request(_void(idempotency_keys, reason))

    def list(self, *, customer_id: str | None = None, metric_key: str | None = None, from_: Timestamp | None = None,
             to: Timestamp | None = None,
             limit: int | None = None) -> AsyncPaginator[Page[StoredEvent], StoredEvent]:
        return self._list("/v1/events", StoredEvent, _list_params(customer_id, metric_key, from_, to), limit)

    def batcher(self, *, max_batch: int = 1000, flush_interval_ms: float = 200, max_buffered: int | None = None,
                keep_results: bool = True) -> AsyncEventBatcher:
        """A task-based batcher (see :class:`~abaxus_client.batcher.AsyncEventBatcher`); ``async with`` it."""
        async def send(raws: list[msgspec.Raw]) -> BatchResult:
            return await self._t.request(_batch("/v1/events/batch", raws))

        return AsyncEventBatcher(send, max_batch=max_batch, flush_interval_ms=flush_interval_ms,
                                 max_buffered=max_buffered, keep_results=keep_results, retry=self._t.config.retry)
