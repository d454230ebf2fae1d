"""The batcher's bookkeeping, free of threads and event loops so both batchers share it.

Every added event gets a sequence number. It stays counted against the buffer bound from
``add`` until its batch is answered (not merely sent), so a slow or refusing server fills
the buffer and ``add`` waits: that is the back-pressure. Results are kept by sequence number
until ``flush`` hands out the window of everything added since the previous flush.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import msgspec

from abaxus_client.errors import AbaxusError
from abaxus_client.models.events import BatchResult, ErrorDetail

__all__ = ["EventResult", "Item", "Ledger"]


class EventResult(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one added event: ``queued`` (durable, with ``event_id``) or ``rejected``.

    ``seq`` is the event's position in the order of ``add`` calls, from 0 for a batcher.
    A rejected event carries the server's ``error`` (code, message, field); resending it
    unchanged will be rejected again.
    """

    seq: int
    idempotency_key: str
    status: str
    event_id: str | None = None
    error: ErrorDetail | None = None

    @property
    def ok(self) -> bool:
        return self.status != "rejected"


@dataclass(slots=True)
class Item:
    seq: int
    key: str
    raw: msgspec.Raw
    added_at: float


class Ledger:
    def __init__(self, max_batch: int, max_buffered: int, keep_results: bool) -> None:
        self.max_batch, self.max_buffered, self.keep_results = max_batch, max_buffered, keep_results
        self.pending: deque[Item] = deque()
        self.in_flight = 0
        self.next_seq = 0
        self.resolved_upto = 0  # every seq below this has a result (one sender: in order)
        self.flush_from = 0
        self.flush_target = 0  # send everything below this now, without waiting for the interval
        self.closing = False
        self.results: dict[int, EventResult] = {}
        self.accepted_total = 0
        self.rejected_total = 0

    def has_room(self) -> bool:
        return len(self.pending) + self.in_flight < self.max_buffered

    def enqueue(self, key: str, raw: msgspec.Raw, now: float) -> int:
        seq = self.next_seq
        self.next_seq += 1
        self.pending.append(Item(seq, key, raw, now))
        return seq

    def due_in(self, now: float, interval: float) -> float | None:
        """0 if a batch should be sent now, seconds until one is due, None if nothing is pending."""
        if not self.pending:
            return None
        if len(self.pending) >= self.max_batch or self.closing or self.pending[0].seq < self.flush_target:
            return 0.0
        return max(self.pending[0].added_at + interval - now, 0.0)

    def take(self) -> list[Item]:
        n = min(self.max_batch, len(self.pending))
        chunk = [self.pending.popleft() for _ in range(n)]
        self.in_flight += n
        return chunk

    def resolve(self, chunk: list[Item], outcome: BatchResult | AbaxusError) -> None:
        """Record a chunk's answer: the per-event results, or one refusal for all of them."""
        self.in_flight -= len(chunk)
        if isinstance(outcome, BatchResult):
            by_index = {r.index: r for r in outcome.results}
            for i, item in enumerate(chunk):
                r = by_index.get(i)
                if r is None:
                    self._record(item, "rejected", None, ErrorDetail(
                        code="MISSING_RESULT", message="The server's answer had no result for this event; resend it."))
                else:
                    self._record(item, r.status, r.event_id, r.error)
        else:
            detail = ErrorDetail(code=outcome.code or type(outcome).__name__, message=outcome.message,
                                 field=outcome.field)
            for item in chunk:
                self._record(item, "rejected", None, detail)
        if chunk:
            self.resolved_upto = chunk[-1].seq + 1

    def _record(self, item: Item, status: str, event_id: str | None, error: ErrorDetail | None) -> None:
        if status == "rejected":
            self.rejected_total += 1
        else:
            self.accepted_total += 1
        if self.keep_results:
            self.results[item.seq] = EventResult(seq=item.seq, idempotency_key=item.key, status=status,
                                                 event_id=event_id, error=error)

    def request_flush(self) -> int:
        target = self.next_seq
        self.flush_target = max(self.flush_target, target)
        return target

    def window_done(self, target: int) -> bool:
        return self.resolved_upto >= target

    def pop_window(self, target: int) -> list[EventResult]:
        out = [self.results.pop(s) for s in range(self.flush_from, target) if s in self.results]
        self.flush_from = max(self.flush_from, target)
        return out

    def idle(self) -> bool:
        return not self.pending and self.in_flight == 0
