"""How far the dataflow has got: the stored watermark, lag, and backfill results.

The API registers each durable record's position; the sink marks positions done once their
events are in the usage store. Backfill requests wait on this, ``/metrics`` reads the lag,
and invoices take ``usage_as_of`` from ``safe_as_of`` so no in-flight insert can later
appear under an earlier watermark.
"""

from __future__ import annotations

import collections
import threading
import time

from abaxus.clock import Clock, SystemClock

__all__ = ["Progress"]

Position = tuple[int, int]


class Progress:
    def __init__(self, start: Position = (0, 0), clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._cond = threading.Condition()
        self.done: Position = start
        self._accepted: collections.deque[tuple[Position, int, int]] = collections.deque()
        self._backlog_events = 0
        self._kept: dict[Position, set[str]] = {}
        self._inserting_since: int | None = None
        self.alive = True
        self._waiters = 0  # requests waiting for the store: the source stops holding reads back for them
        # Why the sink cannot store right now (the usage store refuses inserts), else None.
        self.stalled: str | None = None

    def accepted(self, position: Position, at_ms: int, events: int = 0) -> None:
        with self._cond:
            if position > self.done:
                self._accepted.append((position, at_ms, events))
                self._backlog_events += events

    def inserting(self, started_ms: int | None) -> None:
        with self._cond:
            self._inserting_since = started_ms

    def completed(self, position: Position, kept_keys: set[str] | None = None) -> None:
        with self._cond:
            if kept_keys is not None:
                self._kept[position] = kept_keys
            self.done = max(self.done, position)
            while self._accepted and self._accepted[0][0] <= self.done:
                self._backlog_events -= self._accepted.popleft()[2]
            self._cond.notify_all()

    def wait_for(self, position: Position, timeout: float) -> set[str] | None:
        """Block until ``position`` is stored; return the keys it stored (backfill only).

        Only the request that wrote the record at ``position`` may call this: it takes the
        record's kept keys. Anyone else waits with ``wait_through``.
        """
        with self._cond:
            self._wait(position, timeout)
            return self._kept.pop(position, None)

    def wait_through(self, position: Position, timeout: float) -> None:
        """Block until everything up to ``position`` is stored (read-your-writes for usage)."""
        with self._cond:
            self._wait(position, timeout)

    def has_waiters(self) -> bool:
        """Whether a request waits for the store now (read without the lock: a hint, checked again every 10 ms)."""
        return self._waiters > 0

    def _wait(self, position: Position, timeout: float) -> None:
        self._waiters += 1
        try:
            self._wait_locked(position, timeout)
        finally:
            self._waiters -= 1

    def _wait_locked(self, position: Position, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.done < position:
            left = deadline - time.monotonic()
            if left <= 0 or not self.alive:
                raise TimeoutError(f"dataflow has not stored position {position}")
            if self.stalled is not None:
                raise TimeoutError(f"the usage store cannot take events: {self.stalled}")
            self._cond.wait(min(left, 0.5))

    def lag_seconds(self) -> float:
        with self._cond:
            if not self._accepted:
                return 0.0
            return max(0.0, (self._clock.now_ms() - self._accepted[0][1]) / 1000)

    def set_stalled(self, reason: str | None) -> None:
        """Mark the sink blocked (or free again); waiters give up at once instead of timing out."""
        with self._cond:
            self.stalled = reason
            self._cond.notify_all()

    def backlog_events(self) -> int:
        """Events acknowledged (durable) but not yet in the usage store."""
        with self._cond:
            return self._backlog_events

    def safe_as_of(self) -> int:
        """A usage watermark no later insert can precede: now, or just before an insert in flight."""
        with self._cond:
            now = self._clock.now_ms()
            if self._inserting_since is not None:
                return min(now, self._inserting_since - 1)
            return now
