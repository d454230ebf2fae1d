"""Kafka between the API replicas and the dataflow workers (the split topology, §17).

The API side is ``KafkaQueue``: an idempotent producer (``enable.idempotence``, ``acks=all``)
whose ``produce`` returns only once the broker acknowledged every message, with the offset
each one got. The worker side is ``ResumingKafkaSource``: Bytewax's own ``KafkaSource``
(offsets kept in Bytewax recovery, no consumer group), started at the later of its snapshot
and the offset the usage store already holds, so a restarted worker re-reads only what was
not stored.

Messages are the intake records of the local log (one Arrow IPC stream each, see
``records.py``), one per partition a request's events fall in. A key always goes to the
same partition (``partition_of``), so all duplicates of a key meet in one dedup state.
A *marker* (an empty message with the ``abaxus-kind: marker`` header) is how an API replica
learns that the workers have stored everything that was in a partition before it.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from bytewax.connectors.kafka import KafkaError, KafkaSource, KafkaSourceMessage
from bytewax.inputs import StatefulSourcePartition
from confluent_kafka import KafkaError as ConfluentError
from confluent_kafka import KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # what confluent_kafka.admin re-exports (without saying so to mypy)

from abaxus.logging import get_logger
from abaxus.pipeline.records import decode_record

__all__ = ["DELIVERY_TIMEOUT_MS", "KIND_EVENTS", "KIND_MARKER", "BrokerUnavailable", "KafkaQueue", "ResumingKafkaSource",
           "partition_of", "split_by_partition", "topic_partitions"]

KIND_HEADER = "abaxus-kind"
KIND_EVENTS = b"events"
KIND_MARKER = b"marker"
# A produce that the broker has not acknowledged within this fails (the request gets 503).
DELIVERY_TIMEOUT_MS = 5_000
# An idle connection the broker closed is not "down"; no broker at all is.
_DOWN_CODES = frozenset({ConfluentError._ALL_BROKERS_DOWN})
# Delivery errors after which this producer can never deliver again: start a new one.
_FENCED_CODES = frozenset({ConfluentError.PRODUCER_FENCED, ConfluentError.INVALID_PRODUCER_EPOCH, ConfluentError._FATAL})

log = get_logger("abaxus.kafka")


class BrokerUnavailable(Exception):
    """The broker did not acknowledge a message (down, unreachable, or too slow)."""


def partition_of(key: str, partitions: int) -> int:
    """The partition a key's events go to: CRC-32 of its UTF-8 bytes, modulo the partition count.

    Stable across processes and releases (Python's ``hash`` is salted per process), so every
    replica sends every duplicate of a key to the one partition whose dedup state knows it.
    """
    return zlib.crc32(key.encode()) % partitions


def split_by_partition(batch: pa.RecordBatch, partitions: int) -> list[tuple[int, pa.RecordBatch]]:
    """The batch's rows grouped by ``partition_of`` their idempotency key, in the batch's order."""
    keys = batch.column("idempotency_key").to_pylist()
    if partitions == 1:
        return [(0, batch)]
    parts = np.fromiter((zlib.crc32(k.encode()) % partitions for k in keys), dtype=np.int64, count=len(keys))
    out = []
    for p in np.unique(parts):
        rows = np.flatnonzero(parts == p)
        out.append((int(p), batch if len(rows) == len(keys) else batch.take(pa.array(rows))))
    return out


def _config(brokers: str) -> dict[str, Any]:
    return {"bootstrap.servers": brokers}


def topic_partitions(brokers: str, topic: str, create_with: int, timeout: float = 10.0) -> int:
    """The topic's partition count, creating the topic with ``create_with`` partitions if absent.

    Replicas hash keys over the count the broker reports, not the setting, so they agree even
    when the setting was changed after the topic was made.
    """
    admin = AdminClient(_config(brokers))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailable(f"Cannot reach the Kafka broker at {brokers} ({exc.args[0].str()}): start it, or fix "
                                "ABAXUS_KAFKA_BROKERS.") from None
    if topic not in metadata.topics or not metadata.topics[topic].partitions:
        futures = admin.create_topics([NewTopic(topic, num_partitions=create_with, replication_factor=-1)],
                                      request_timeout=timeout)
        try:
            futures[topic].result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != ConfluentError.TOPIC_ALREADY_EXISTS:
                raise
        log.info("kafka_topic_created", topic=topic, partitions=create_with)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # the metadata lags the creation briefly
            metadata = admin.list_topics(topic, timeout=timeout)
            if metadata.topics[topic].partitions:
                break
            time.sleep(0.05)  # waiting on the broker's metadata, not on our own code
    return len(metadata.topics[topic].partitions)


class KafkaQueue:
    """The API replica's producer: ``produce`` answers with offsets once the broker has every message."""

    def __init__(self, brokers: str, topic: str, create_partitions: int) -> None:
        self.brokers = brokers
        self.topic = topic
        self.partitions = topic_partitions(brokers, topic, create_partitions)
        self.problem: str | None = None  # why the broker cannot be reached, while it cannot
        self._lock = threading.Lock()
        self._fatal = False
        self._producer = self._new_producer()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="abaxus-kafka-delivery", daemon=True)
        self._poller.start()

    def _new_producer(self) -> Producer:
        return Producer({
            **_config(self.brokers),
            "enable.idempotence": True,  # retries never duplicate or reorder a partition's messages
            "acks": "all",
            "linger.ms": 2,
            "message.timeout.ms": DELIVERY_TIMEOUT_MS,
            "compression.type": "lz4",
            "queue.buffering.max.kbytes": 262_144,
            "error_cb": self._on_error,
        })

    def _current(self) -> Producer:
        """The producer, replaced first if the last one hit a fatal error.

        After an outage an idempotent producer can be fenced (its producer id no longer
        valid at the broker): a fatal state in which every produce fails. Its messages have
        already failed (their requests got 503), so a new producer loses nothing.
        """
        with self._lock:
            if self._fatal:
                old, self._producer, self._fatal = self._producer, self._new_producer(), False
                old.purge()
                old.poll(0)  # the purged messages' reports: their waiters fail now, not at their timeout
                log.warning("kafka_producer_replaced", reason="fatal error")
            return self._producer

    def _on_error(self, error: ConfluentError) -> None:
        if error.fatal():
            self._fatal = True
        if error.code() in _DOWN_CODES:
            self.problem = f"the Kafka broker at {self.brokers} does not answer ({error.str()})"
        log.warning("kafka_error", error=error.str(), code=error.code())

    def _poll(self) -> None:
        """Deliver the producer's reports (they resolve the futures ``produce`` waits on)."""
        probed = 0.0
        while not self._stop.is_set():
            self._current().poll(0.05)
            if self.problem is not None and time.monotonic() - probed > 1.0:  # refused fast while down: notice it is back
                probed = time.monotonic()
                self.reachable(timeout=0.5)

    def produce(self, messages: Sequence[tuple[int, bytes, bytes]]) -> list[concurrent.futures.Future[tuple[int, int]]]:
        """Send ``(partition, payload, kind)`` messages; one future per message: its ``(partition, offset)``.

        A future fails with ``BrokerUnavailable`` when the broker did not take its message in
        ``DELIVERY_TIMEOUT_MS`` (or the local queue is full), so a caller answers 503 instead
        of a 202 that no broker stands behind.
        """
        futures: list[concurrent.futures.Future[tuple[int, int]]] = []
        producer = self._current()
        for partition, payload, kind in messages:
            future: concurrent.futures.Future[tuple[int, int]] = concurrent.futures.Future()
            futures.append(future)
            try:
                producer.produce(self.topic, payload, partition=partition, headers=[(KIND_HEADER, kind)],
                                 on_delivery=self._reporter(future))
            except (BufferError, KafkaException) as exc:
                future.set_exception(BrokerUnavailable(f"the producer refused the message: {exc}"))
        return futures

    def _reporter(self, future: concurrent.futures.Future[tuple[int, int]]) -> Any:
        def delivered(error: ConfluentError | None, message: Message) -> None:
            if error is not None:
                if error.fatal() or error.code() in _FENCED_CODES:
                    self._fatal = True
                future.set_exception(BrokerUnavailable(f"the broker did not acknowledge the message: {error.str()}"))
                return
            self.problem = None
            partition, offset = message.partition(), message.offset()
            if partition is None or offset is None:  # librdkafka sets both on a delivered message
                future.set_exception(BrokerUnavailable("the broker's acknowledgement named no offset"))
                return
            future.set_result((partition, offset))
        return delivered

    def markers(self, timeout: float) -> dict[int, int]:
        """Put a marker into every partition; the offset each got (blocks up to ``timeout``)."""
        futures = self.produce([(p, b"", KIND_MARKER) for p in range(self.partitions)])
        return dict(f.result(timeout) for f in futures)

    def reachable(self, timeout: float = 1.0) -> str | None:
        """None if the broker answers a metadata request now, else why not."""
        try:
            self._current().list_topics(self.topic, timeout=timeout)
        except KafkaException as exc:
            return f"the Kafka broker at {self.brokers} does not answer ({exc})"
        self.problem = None
        return None

    def close(self) -> None:
        """Deliver what is queued (bounded), then stop the delivery thread."""
        self._current().flush(DELIVERY_TIMEOUT_MS / 1000)
        self._stop.set()
        self._poller.join(2)


# ---- the worker's source ----------------------------------------------------------------
Item = tuple[str, tuple[pa.RecordBatch | None, tuple[int, int], bool]]


class _Partition(StatefulSourcePartition[Item, int | None]):
    """Bytewax's Kafka partition, its messages turned into the dataflow's records."""

    def __init__(self, inner: StatefulSourcePartition[Any, int | None], partition: int, stopping: threading.Event) -> None:
        self._inner = inner
        self._key = str(partition)
        self._stopping = stopping
        self._idle = False

    def next_batch(self) -> list[Item]:
        if self._stopping.is_set():
            raise StopIteration
        messages = self._inner.next_batch()
        self._idle = not messages
        out: list[Item] = []
        for message in messages:
            if isinstance(message, KafkaError):  # raise_on_errors makes the source raise these itself
                raise RuntimeError(f"error reading from Kafka: {message.err}")
            out.append((self._key, _record_of(message)))
        return out

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(milliseconds=10) if self._idle else None

    def snapshot(self) -> int | None:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


def _record_of(message: KafkaSourceMessage[bytes | None, bytes | None]) -> tuple[pa.RecordBatch | None, tuple[int, int], bool]:
    kind = dict(message.headers).get(KIND_HEADER, KIND_EVENTS)
    position = (int(message.partition or 0), int(message.offset or 0))
    if kind == KIND_MARKER or not message.value:
        return None, position, False
    batch, backfill = decode_record(message.value)
    return batch, position, backfill


class ResumingKafkaSource(KafkaSource):
    """``KafkaSource`` that starts each partition at max(its snapshot, what the store holds).

    After a crash between an insert and the next snapshot, Bytewax alone would replay the
    epoch; starting past what ``abaxus.intake_offsets`` says is stored keeps the replay to
    at most the one insert whose offsets were not recorded (which dedup then drops).
    """

    def __init__(self, brokers: str, topic: str, stored: Any, stopping: threading.Event) -> None:
        super().__init__([brokers], [topic], tail=True, batch_size=1000,
                         add_config={"fetch.wait.max.ms": "10", "statistics.interval.ms": "0"})
        self._topic = topic
        self._stored = stored  # () -> {partition: next_offset}
        self._stopping = stopping

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:  # type: ignore[override]
        partition = int(for_part.split("-", 1)[0])
        stored = self._stored().get(partition)
        start = max(x for x in (resume_state, stored) if x is not None) if (resume_state, stored) != (None, None) else None
        log.info("kafka_partition_resumed", partition=partition, snapshot=resume_state, stored=stored, start=start)
        return _Partition(super().build_part(step_id, for_part, start), partition, self._stopping)
