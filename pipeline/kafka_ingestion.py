"""Ingestion of an API replica in the split topology: validate here, queue in Kafka, store by workers.

A request's accepted events are split by partition (``kafka.split_by_partition``) and each
part is produced as one intake record; the answer is 202 only after the broker acknowledged
every part (idempotent producer, ``acks=all``). Broker down or too slow → 503 NOT_READY. A
request whose parts reached the broker only in part also gets 503: the parts that arrived
are stored, and the client's retry (the same idempotency keys) counts each event once.

What the embedded dataflow tells this process directly, the workers tell through the usage
store: ``abaxus.intake_offsets`` (how far each partition is stored) and
``abaxus.sink_inflight`` (inserts in flight). A *barrier* — a marker produced into every
partition, then waiting until the stored offsets pass the markers — is how a replica knows
that everything acknowledged before it (by any replica) is stored: invoices, voids and
backfills wait on it.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable

import pyarrow as pa
from sqlalchemy import Engine

from abaxus.errors import Unavailable
from abaxus.logging import get_logger
from abaxus.pipeline.kafka import DELIVERY_TIMEOUT_MS, KIND_EVENTS, BrokerUnavailable, KafkaQueue, split_by_partition
from abaxus.pipeline.progress_board import ProgressBoard, StoreBoard
from abaxus.pipeline.records import encode_record
from abaxus.pipeline.service import BACKFILL_TIMEOUT_S, CATCH_UP_TIMEOUT_S, RETRY, Ingestion
from abaxus.settings import Settings
from abaxus.telemetry import Telemetry

__all__ = ["KafkaIngestion", "RecordedIngestion"]

log = get_logger("abaxus.ingestion.kafka")

_POLL_S = 0.02  # how often a waiting request looks at the stored offsets
_REFRESH_S = 0.5  # how often the backlog of this replica's own acknowledged events is refreshed
# A worker silent for this long is gone (restarted under another name, or scaled away): its
# last "insert in flight" note no longer holds a usage watermark back.
_INFLIGHT_STALE_MS = 120_000
_PROBE_EVERY_S = 2.0
_MARKER_RETRY_S = 0.2  # readiness probes of the broker (each is a round trip)


class _Acknowledged:
    """This replica's acknowledged messages not yet stored: the back-pressure and lag figures."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_partition: dict[int, collections.deque[tuple[int, int, int]]] = collections.defaultdict(collections.deque)
        self._events = 0

    def add(self, partition: int, stored_at: int, at_ms: int, events: int) -> None:
        """``events`` acknowledged at ``at_ms``, stored once ``partition``'s stored offset reaches ``stored_at``."""
        with self._lock:
            self._by_partition[partition].append((stored_at, at_ms, events))
            self._events += events

    def stored(self, next_offsets: dict[int, int]) -> None:
        with self._lock:
            for partition, queue in self._by_partition.items():
                end = next_offsets.get(partition, 0)
                while queue and queue[0][0] <= end:
                    self._events -= queue.popleft()[2]

    def events(self) -> int:
        with self._lock:
            return self._events

    def oldest_ms(self) -> int | None:
        with self._lock:
            heads = [q[0][1] for q in self._by_partition.values() if q]
            return min(heads) if heads else None


class RecordedIngestion(Ingestion):
    """``Ingestion`` of a process that does not run the dataflow's sink, or not alone.

    Whoever stores the events records in the usage store how far each partition of
    ``topic`` is stored (and its insert in flight); this process waits on those records.
    A queue provides ``submit`` (the stored offsets that mean "this request is stored",
    by partition) and ``_barrier_targets`` (the same for everything acknowledged so far).
    """

    poll_s = _POLL_S  # how often a waiting request reads the board

    def __init__(self, settings: Settings, engine: Engine, telemetry: Telemetry, topic: str,
                 board: ProgressBoard | None = None) -> None:
        super().__init__(settings, engine, telemetry)
        self.topic = topic
        self.board: ProgressBoard = board or StoreBoard(self.usage, topic)
        self._acknowledged = _Acknowledged()
        self._stop = threading.Event()
        self._refresher = threading.Thread(target=self._refresh, name="abaxus-stored-offsets", daemon=True)

    def start(self) -> None:
        self._refresher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._refresher.is_alive():
            self._refresher.join(2)
        super().stop()

    async def submit(self, batch: pa.RecordBatch, *, backfill: bool = False) -> dict[int, int]:
        """Make the batch durable; the stored offset, by partition, at which all of it is stored."""
        raise NotImplementedError

    def _barrier_targets(self, timeout: float) -> dict[int, int]:
        """The stored offsets, by partition, past everything acknowledged before this call."""
        raise NotImplementedError

    def _refresh(self) -> None:
        while not self._stop.wait(_REFRESH_S):
            try:
                self._acknowledged.stored(self.board.stored_offsets())
            except Exception as exc:  # noqa: BLE001 - the store is down: /readyz says so; figures stay as they were
                log.warning("stored_offsets_unavailable", error=str(exc)[:300])

    # ---- health -------------------------------------------------------------------------
    def backlog_events(self) -> int:
        return self._acknowledged.events()

    def lag_seconds(self) -> float:
        oldest = self._acknowledged.oldest_ms()
        return 0.0 if oldest is None else max(0.0, (self.settings.clock.now_ms() - oldest) / 1000)

    def _acknowledge(self, targets: dict[int, int], parts: list[pa.RecordBatch]) -> None:
        at = self.settings.clock.now_ms()
        for (partition, stored_at), part in zip(targets.items(), parts, strict=True):
            self._acknowledged.add(partition, stored_at, at, part.num_rows)

    async def backfill(self, batch: pa.RecordBatch) -> set[str]:
        """Produce, wait until the workers stored past every part, then tell stored from duplicate keys.

        A key is stored by this request when the dataflow recorded fewer duplicates of it at
        this request's acceptance instant than the request holds copies of it.
        """
        targets = await self.submit(batch, backfill=True)
        try:
            await asyncio.to_thread(self._wait_offsets, targets, BACKFILL_TIMEOUT_S)
        except TimeoutError:
            raise Unavailable("NOT_READY",
                              "The events are durable but not yet stored; they will be. Retry to see their status.") from None
        keys = batch.column("idempotency_key").to_pylist()
        accepted_ms = int(batch.column("accepted_at").cast(pa.int64())[0].as_py())
        copies = collections.Counter(keys)
        dropped = await asyncio.to_thread(self.usage.duplicates_received, list(copies), accepted_ms)
        return {k for k, n in copies.items() if n > dropped.get(k, 0)}

    # ---- the barrier --------------------------------------------------------------------
    def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            time.sleep(self.poll_s)  # polling the board: the sink has no channel to this process

    def _wait_offsets(self, targets: dict[int, int], timeout: float) -> None:
        def stored() -> bool:
            self.board.request_flush()  # while waiting: the sink stops holding reads back for bigger inserts
            have = self.board.stored_offsets()
            self._acknowledged.stored(have)
            return all(have.get(p, 0) >= end for p, end in targets.items())
        self._wait(stored, timeout, "the workers have not stored every partition up to the barrier")

    def _barrier(self, timeout: float) -> None:
        """Wait until everything any process had acknowledged before now is stored."""
        deadline = time.monotonic() + timeout
        targets = self._barrier_targets(timeout)
        self._wait_offsets(targets, max(0.0, deadline - time.monotonic()))

    def caught_up_as_of(self, timeout: float = CATCH_UP_TIMEOUT_S) -> int:
        """See ``Ingestion.caught_up_as_of``: a barrier, then a watermark below every insert still in flight."""
        deadline = time.monotonic() + timeout
        try:
            self._barrier(timeout)
            as_of = self.settings.clock.now_ms() - 1  # the clock the workers stamp ingested_at by
            # Staleness is the workers' liveness, read on the wall clock their notes are written by.
            self._wait(lambda: all(s > as_of for s in self.board.inflight_since(time.time_ns() // 1_000_000
                                                                                 - _INFLIGHT_STALE_MS)),
                       max(0.0, deadline - time.monotonic()), "an insert begun before the watermark is still in flight")
        except TimeoutError as exc:
            log.warning("usage_not_caught_up", timeout_s=timeout, reason=str(exc))
            raise Unavailable("NOT_READY", f"Not every acknowledged event is stored yet ({exc}); nothing was done. "
                              "Retry shortly.", headers=RETRY) from None
        return as_of

    def _register_pending_voids(self, keys: list[str], reason: str, at_ms: int) -> None:
        # In the store before the barrier: a worker reads the pending voids again before each
        # insert, so any event read after the markers is stored voided.
        self.usage.add_pending_voids([(k, reason, at_ms) for k in keys])
        self.board.voids_registered()

    def _pending_voids_added(self) -> None:
        self.board.voids_registered()

    def _wait_current(self, timeout: float) -> None:
        self._barrier(timeout)



class KafkaIngestion(RecordedIngestion):
    """``Ingestion`` over a Kafka topic; the dataflow runs in ``abaxus serve --role worker``."""

    def __init__(self, settings: Settings, engine: Engine, telemetry: Telemetry) -> None:
        super().__init__(settings, engine, telemetry, settings.kafka_topic)
        assert settings.kafka_brokers is not None
        self.queue = KafkaQueue(settings.kafka_brokers, settings.kafka_topic, settings.kafka_partitions)
        self._reachable: tuple[float, str | None] = (0.0, None)

    def stop(self) -> None:
        super().stop()
        self.queue.close()

    def health(self) -> dict[str, str | None]:
        """The usage store and the broker; the workers' dataflow reports on its own port (``/readyz`` there)."""
        usage = None if self.usage.healthy() else "the usage store does not answer queries"
        checked, problem = self._reachable
        if time.monotonic() - checked > _PROBE_EVERY_S:
            problem = self.queue.reachable(timeout=1.0)
            self._reachable = (time.monotonic(), problem)
        return {"usage_store": usage, "queue": problem, "dataflow": None}

    # ---- intake -----------------------------------------------------------------------------
    async def submit(self, batch: pa.RecordBatch, *, backfill: bool = False) -> dict[int, int]:
        """Produce the batch, one record per partition; once all are acknowledged, the offset after each."""
        if self.queue.problem is not None:
            self.telemetry.intake_refused.labels("broker_unavailable").inc()
            raise Unavailable("NOT_READY", f"Cannot queue events: {self.queue.problem}; nothing was accepted. Retry shortly.",
                              headers=RETRY)
        self._refuse_if_overloaded()
        parts = split_by_partition(batch, self.queue.partitions)
        futures = self.queue.produce([(p, encode_record(b, backfill=backfill), KIND_EVENTS) for p, b in parts])
        try:
            offsets = await asyncio.wait_for(asyncio.gather(*(asyncio.wrap_future(f) for f in futures)),
                                             timeout=DELIVERY_TIMEOUT_MS / 1000 + 1)
        except (BrokerUnavailable, TimeoutError) as exc:
            self.telemetry.intake_refused.labels("broker_unavailable").inc()
            partial = sum(1 for f in futures if f.done() and f.exception() is None)
            log.warning("kafka_produce_failed", error=str(exc)[:300], parts=len(parts), delivered=partial)
            raise Unavailable("NOT_READY", f"The broker did not acknowledge the events ({exc}); retry with the same "
                              "idempotency keys: any event that did reach it is counted once.", headers=RETRY) from None
        targets = {partition: offset + 1 for partition, offset in offsets}
        self._acknowledge(targets, [part for _, part in parts])
        return targets

    def _barrier_targets(self, timeout: float) -> dict[int, int]:
        """A marker produced into every partition: stored past it, a partition holds all acknowledged before."""
        deadline = time.monotonic() + timeout
        while True:  # a producer replaced after an outage fails its first markers at once: try again
            try:
                markers = self.queue.markers(max(0.1, min(deadline - time.monotonic(), DELIVERY_TIMEOUT_MS / 1000 + 1)))
                break
            except (BrokerUnavailable, TimeoutError) as exc:
                if time.monotonic() + _MARKER_RETRY_S >= deadline:
                    raise TimeoutError(f"the broker did not take the barrier's markers ({str(exc) or 'no answer'})") from None
                time.sleep(_MARKER_RETRY_S)
        return {p: o + 1 for p, o in markers.items()}
