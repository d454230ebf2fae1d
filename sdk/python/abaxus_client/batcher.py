"""Buffered event ingestion: many ``add`` calls become few 1,000-event batch requests.

Sending events one request each wastes the server's and the network's time; a batcher
collects them and sends a batch when ``max_batch`` events are waiting or the oldest has
waited ``flush_interval_ms``, from a background thread (:class:`EventBatcher`) or task
(:class:`AsyncEventBatcher`).

* **Back-pressure.** At most ``max_buffered`` events are held (waiting or being sent); past
  that ``add`` blocks (or awaits) until the server has answered a batch. A slow server, or
  one answering ``503`` because it is behind, therefore slows producers down instead of
  growing memory without bound.
* **Exactly once.** Every event carries its ``idempotency_key``, so a batch whose answer
  was lost (503, connection error, timeout, restart) is resent as is; the server counts each
  key once. A batch is retried until it is answered; only a refusal of the whole request
  that resending cannot fix (401, 403, 413, a 500) marks its events ``rejected`` with that error.
* **Results.** ``flush()`` waits until everything added so far is answered and returns one
  :class:`EventResult` per event added since the previous flush, in ``add`` order.
* **Nothing lost on a clean close.** ``close()`` (and leaving a ``with`` block) flushes
  everything first. Only a process that dies or never closes the batcher loses what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

import msgspec

from abaxus_client._encoding import encode
from abaxus_client._ledger import EventResult, Item, Ledger
from abaxus_client._retry import RetryPolicy
from abaxus_client.errors import AbaxusError, APIConnectionError, RateLimitedError, UnavailableError
from abaxus_client.models.events import BatchResult, Event

__all__ = ["AsyncEventBatcher", "EventBatcher", "EventResult"]

EventLike = Event | Mapping[str, Any]
SendBatch = Callable[[list[msgspec.Raw]], BatchResult]
AsyncSendBatch = Callable[[list[msgspec.Raw]], Awaitable[BatchResult]]

# The server did nothing and may do it later: keep the batch and send it again.
_TRANSIENT = (APIConnectionError, UnavailableError, RateLimitedError)
_MAX_BATCH = 1000  # the server's bound on events per batch


def _prepared(event: EventLike) -> tuple[str, msgspec.Raw]:
    """Encode once, at ``add``: a bad event fails its caller, and every resend is byte-identical."""
    key = event.idempotency_key if isinstance(event, Event) else event.get("idempotency_key")
    if not isinstance(key, str) or not key:
        raise ValueError("Every event needs an idempotency_key (1–255 chars): it is what makes resending it safe.")
    return key, msgspec.Raw(encode(event))


def _check_options(max_batch: int, flush_interval_ms: float, max_buffered: int | None) -> int:
    if not 1 <= max_batch <= _MAX_BATCH:
        raise ValueError("max_batch must be 1–1000: the server takes at most 1,000 events per batch.")
    if flush_interval_ms <= 0:
        raise ValueError("flush_interval_ms must be > 0.")
    buffered = max_buffered if max_buffered is not None else 10 * max_batch
    if buffered < max_batch:
        raise ValueError("max_buffered must be at least max_batch, or no full batch could ever be formed.")
    return buffered


def _timeout_message(ledger: Ledger, target: int, timeout: float | None, last: AbaxusError | None) -> str:
    left = target - ledger.resolved_upto
    why = f" (last error: {last})" if last is not None else ""
    return (f"{left} events are not answered after {timeout:g} s{why}. They stay buffered and are still being "
            "sent: call flush() again, or check that the server is up.")


class EventBatcher:
    """Thread-based batcher for :class:`~abaxus_client.Client`; get one from ``client.events.batcher()``.

    Thread-safe: any number of threads may ``add`` to one batcher.
    """

    def __init__(self, send: SendBatch, *, max_batch: int = 1000, flush_interval_ms: float = 200,
                 max_buffered: int | None = None, keep_results: bool = True,
                 retry: RetryPolicy | None = None) -> None:
        self._ledger = Ledger(max_batch, _check_options(max_batch, flush_interval_ms, max_buffered), keep_results)
        self._send = send
        self._interval = flush_interval_ms / 1000
        self._retry = retry or RetryPolicy()
        self._cond = threading.Condition()
        self._flush_lock = threading.Lock()
        self._stopped = False
        self._failure: BaseException | None = None
        self.last_error: AbaxusError | None = None
        self._thread = threading.Thread(target=self._run, name="abaxus-event-batcher", daemon=True)
        self._thread.start()

    # ---- producer side ----------------------------------------------------------------------
    def add(self, event: EventLike, *, timeout: float | None = None) -> int:
        """Buffer one event and return its sequence number; blocks while the buffer is full.

        ``TimeoutError`` if there is still no room after ``timeout`` seconds (the event is not added).
        """
        key, raw = _prepared(event)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                self._check_open()
                if self._ledger.has_room():
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"The batcher has held {self._ledger.max_buffered} events for {timeout:g} s: "
                                       f"the server is slow or refusing ({self.last_error}). Retry add() later.")
                self._cond.wait(remaining)
            seq = self._ledger.enqueue(key, raw, time.monotonic())
            if len(self._ledger.pending) == 1 or len(self._ledger.pending) >= self._ledger.max_batch:
                self._cond.notify_all()
            return seq

    def flush(self, *, timeout: float | None = None) -> list[EventResult]:
        """Send everything added so far, wait for the answers, and return the results since the last flush."""
        with self._flush_lock, self._cond:
            target = self._ledger.request_flush()
            self._cond.notify_all()
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._ledger.window_done(target):
                self._check_failure()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(_timeout_message(self._ledger, target, timeout, self.last_error))
                self._cond.wait(remaining)
            return self._ledger.pop_window(target)

    def close(self, *, timeout: float | None = None) -> list[EventResult]:
        """Flush everything, stop the sender, and return the last results. Later ``add`` calls fail.

        With a ``timeout`` that passes first, ``TimeoutError`` is raised and the events stay
        buffered and in flight: call ``close()`` again to keep waiting.
        """
        with self._cond:
            if self._stopped:
                return []
            self._ledger.closing = True
            self._cond.notify_all()
        results = self.flush(timeout=timeout)
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
        return results

    def __enter__(self) -> EventBatcher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def buffered(self) -> int:
        """Events held now: waiting plus being sent."""
        with self._cond:
            return len(self._ledger.pending) + self._ledger.in_flight

    @property
    def totals(self) -> tuple[int, int]:
        """(accepted, rejected) events since the batcher started."""
        with self._cond:
            return self._ledger.accepted_total, self._ledger.rejected_total

    def _check_open(self) -> None:
        self._check_failure()
        if self._ledger.closing:
            raise RuntimeError("This batcher is closed; create a new one with client.events.batcher().")

    def _check_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError("The batcher's sender thread failed; the events it held were not all sent.") \
                from self._failure

    # ---- sender thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while True:
                        due = self._ledger.due_in(time.monotonic(), self._interval)
                        if due == 0:
                            break
                        if due is None and self._stopped:
                            return
                        self._cond.wait(due)
                    chunk = self._ledger.take()
                outcome = self._deliver(chunk)
                with self._cond:
                    self._ledger.resolve(chunk, outcome)
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - never die silently: flush() and add() re-raise it
            with self._cond:
                self._failure = exc
                self._cond.notify_all()

    def _deliver(self, chunk: list[Item]) -> BatchResult | AbaxusError:
        raws = [item.raw for item in chunk]
        failures = 0
        while True:
            try:
                return self._send(raws)
            except _TRANSIENT as exc:  # the client's retry budget is spent, the batch is not: keep it
                self.last_error = exc
                failures += 1
                time.sleep(max(self._retry.backoff(min(failures, 8)), 0.05))
            except AbaxusError as exc:
                self.last_error = exc
                return exc


class AsyncEventBatcher:
    """Task-based batcher for :class:`~abaxus_client.AsyncClient`: ``await add()``, ``await flush()``.

    Use it from one event loop; the sender task starts on the first ``add``.
    """

    def __init__(self, send: AsyncSendBatch, *, max_batch: int = 1000, flush_interval_ms: float = 200,
                 max_buffered: int | None = None, keep_results: bool = True,
                 retry: RetryPolicy | None = None) -> None:
        self._ledger = Ledger(max_batch, _check_options(max_batch, flush_interval_ms, max_buffered), keep_results)
        self._send = send
        self._interval = flush_interval_ms / 1000
        self._retry = retry or RetryPolicy()
        self._cond: asyncio.Condition | None = None
        self._flush_lock: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._failure: BaseException | None = None
        self.last_error: AbaxusError | None = None

    def _started(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
            self._flush_lock = asyncio.Lock()
            self._task = asyncio.get_running_loop().create_task(self._run(self._cond), name="abaxus-event-batcher")
        return self._cond

    async def add(self, event: EventLike, *, timeout: float | None = None) -> int:
        """Buffer one event and return its sequence number; waits while the buffer is full."""
        key, raw = _prepared(event)
        cond = self._started()
        async with cond:
            try:
                await asyncio.wait_for(cond.wait_for(self._room_or_closed), timeout)
            except TimeoutError:
                raise TimeoutError(f"The batcher has held {self._ledger.max_buffered} events for {timeout:g} s: the "
                                   f"server is slow or refusing ({self.last_error}). Retry add() later.") from None
            self._check_open()
            seq = self._ledger.enqueue(key, raw, time.monotonic())
            cond.notify_all()
            return seq

    def _room_or_closed(self) -> bool:
        return self._failure is not None or self._ledger.closing or self._ledger.has_room()

    async def flush(self, *, timeout: float | None = None) -> list[EventResult]:
        cond = self._started()
        assert self._flush_lock is not None
        async with self._flush_lock, cond:
            target = self._ledger.request_flush()
            cond.notify_all()
            try:
                await asyncio.wait_for(cond.wait_for(lambda: self._failure is not None
                                                     or self._ledger.window_done(target)), timeout)
            except TimeoutError:
                raise TimeoutError(_timeout_message(self._ledger, target, timeout, self.last_error)) from None
            self._check_failure()
            return self._ledger.pop_window(target)

    async def aclose(self, *, timeout: float | None = None) -> list[EventResult]:
        """Flush everything and stop the sender task (see :meth:`EventBatcher.close`)."""
        if self._stopped:
            return []
        cond = self._started()
        async with cond:
            self._ledger.closing = True
            cond.notify_all()
        results = await self.flush(timeout=timeout)
        async with cond:
            self._stopped = True
            cond.notify_all()
        if self._task is not None:
            await self._task
        return results

    async def __aenter__(self) -> AsyncEventBatcher:
        self._started()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    @property
    def buffered(self) -> int:
        return len(self._ledger.pending) + self._ledger.in_flight

    @property
    def totals(self) -> tuple[int, int]:
        return self._ledger.accepted_total, self._ledger.rejected_total

    def _check_open(self) -> None:
        self._check_failure()
        if self._ledger.closing:
            raise RuntimeError("This batcher is closed; create a new one with client.events.batcher().")

    def _check_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError("The batcher's sender task failed; the events it held were not all sent.") \
                from self._failure

    async def _run(self, cond: asyncio.Condition) -> None:
        try:
            while True:
                async with cond:
                    while True:
                        due = self._ledger.due_in(time.monotonic(), self._interval)
                        if due == 0:
                            break
                        if due is None and self._stopped:
                            return
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(cond.wait(), due)
                    chunk = self._ledger.take()
                outcome = await self._deliver(chunk)
                async with cond:
                    self._ledger.resolve(chunk, outcome)
                    cond.notify_all()
        except BaseException as exc:
            self._failure = exc
            async with cond:
                cond.notify_all()
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def _deliver(self, chunk: list[Item]) -> BatchResult | AbaxusError:
        raws = [item.raw for item in chunk]
        failures = 0
        while True:
            try:
                return await self._send(raws)
            except _TRANSIENT as exc:
                self.last_error = exc
                failures += 1
                await asyncio.sleep(max(self._retry.backoff(min(failures, 8)), 0.05))
            except AbaxusError as exc:
                self.last_error = exc
                return exc
