"""The Bytewax dataflow: intake log → dedup by idempotency key → ClickHouse.

Steps (their ids key the recovery state, so they never change):
``intake_log`` (a partitioned source with resumable positions) →
``dedup_by_idempotency_key`` (``stateful_batch``, see ``dedup.py``) →
``usage_store`` (a sink that coalesces each activation's batches into one ``insert_arrow``).

In embedded mode the flow runs on a thread of the server process, because chDB lets only
one process own a data directory. The sink retries a failed insert until it succeeds or
the flow stops: events stay in the durable log until stored, so nothing accepted is lost.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pyarrow as pa
from bytewax.dataflow import Dataflow as BytewaxFlow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from abaxus.logging import get_logger
from abaxus.pipeline.bloom import BloomFilter
from abaxus.pipeline.dedup import DedupLogic, DedupResult
from abaxus.pipeline.kafka import ResumingKafkaSource
from abaxus.pipeline.log import IntakeLog, LogReader, PeerLog, Position, decode_position, encode_position
from abaxus.pipeline.progress import Progress
from abaxus.pipeline.progress_board import ProgressBoard, StoreBoard
from abaxus.pipeline.records import decode_record
from abaxus.settings import Settings
from abaxus.store.usage import EVENT_SCHEMA, UsageStore
from abaxus.telemetry import Telemetry

__all__ = ["COALESCE_IDLE_SECONDS", "COALESCE_ROWS", "COALESCE_SECONDS", "Dataflow", "LogPartition"]

_MIN_ERROR_NAME = 4  # longer than e.g. 'A_B': a ClickHouse error name such as NOT_ENOUGH_SPACE
_STALL_AFTER = 2  # failed store attempts in a row

log = get_logger("abaxus.pipeline")
_EPOCH0 = datetime(1970, 1, 1, tzinfo=UTC)
_DUP_SCHEMA = pa.schema([("idempotency_key", pa.string()), ("customer_id", pa.string()),
                         ("metric_key", pa.string()), ("received_at", pa.timestamp("ms", tz="UTC"))])


# Inserts of ~10k rows cost ~1.6× more per row than inserts of ~50k, 5k rows 2.5× (measured
# with chDB: 3.95, 2.44 and 6.19 µs a row), so the source holds small reads back for up to
# COALESCE_SECONDS to let the sink write fewer, larger blocks. A 202 never waits for this,
# and neither does a request that waits for the store (a backfill, an invoice, exact usage,
# a void): the source lets go as soon as one does (``Progress.has_waiters``, and the shared
# board's flush requests from other processes).
# Held that long only under load (events arrived at BUSY_ROWS_PER_S or more while the last
# records were held, within the last second) and while records keep coming: once none came
# for COALESCE_IDLE_SECONDS (a burst ended) what is held goes at once. Otherwise at most
# COALESCE_IDLE_SECONDS, so a trickle of events is stored at once.
COALESCE_ROWS = 50_000
COALESCE_SECONDS = 0.3
COALESCE_IDLE_SECONDS = 0.05
BUSY_ROWS_PER_S = 40_000
_MAX_RECORDS = 256
_RESTART_FIRST_S, _RESTART_MAX_S = 0.5, 10.0  # a failed flow is started again after these (doubling)


def _short_reason(exc: BaseException) -> str:
    """The ClickHouse error name (``NOT_ENOUGH_SPACE``) or the exception's first line."""
    text = str(exc)
    for word in text.replace("(", " ").replace(")", " ").split():
        if word.isupper() and "_" in word and len(word) > _MIN_ERROR_NAME:
            return f"{word}: {text.splitlines()[0][:200] if text else type(exc).__name__}"
    return (text.splitlines()[0][:200] if text else type(exc).__name__)


class LogPartition(StatefulSourcePartition[Any, Position]):
    """The source over one intake log partition: reads its records, holds them to coalesce (see COALESCE_ROWS)."""

    def __init__(self, flow: Dataflow, resume: Position | None, index: int = 0) -> None:
        self.flow = flow
        self.index = index
        self.reader = flow.readers[index]
        committed = flow.committed_position() if index == 0 else (0, 0)
        if flow.recorded:  # how far the store holds this partition (the sink records it there)
            assert flow.board is not None
            committed = max(committed, decode_position(flow.board.stored_offsets().get(index, 0)))
        start: Position = (resume[0], resume[1]) if resume else (0, 0)  # a snapshot may come back as a list
        self.position: Position = max(start, committed)
        self.read_position: Position = self.position
        self.held: list[tuple[pa.RecordBatch, Position, bool]] = []  # (batch, position, backfill): read, not emitted
        self.held_since = 0.0
        self.last_read = 0.0  # when records last came
        self.idle = False
        self.flushes_seen = flow.flush_requests()
        self.last_emit = (0.0, 0.0)  # when the last records were let go, and the rows a second they came at

    def _hold_limit(self) -> float:
        at, rate = self.last_emit
        busy = rate >= BUSY_ROWS_PER_S and time.monotonic() - at < 1.0
        return COALESCE_SECONDS if busy else COALESCE_IDLE_SECONDS

    def next_batch(self) -> list[Any]:
        reader = self.reader
        if len(self.held) < _MAX_RECORDS:
            records, _ = reader.read(self.read_position, max_records=_MAX_RECORDS - len(self.held))
            if records:
                self.last_read = time.monotonic()
                if not self.held:
                    self.held_since = self.last_read
                self.read_position = records[-1][1]
                for payload, position in records:
                    batch, backfill = decode_record(payload)
                    self.held.append((batch, position, backfill))
        flushes = self.flow.flush_requests()  # read before deciding: a request after it is seen next time
        if not self.held:
            self.flushes_seen = flushes
            if self.flow.stopping.is_set():
                raise StopIteration()
            self.idle = True
            return []
        rows = sum(b.num_rows for b, _, _ in self.held)
        now = time.monotonic()
        if (rows < COALESCE_ROWS and len(self.held) < _MAX_RECORDS
                and now - self.held_since < self._hold_limit() and now - self.last_read < COALESCE_IDLE_SECONDS
                and not any(backfill for _, _, backfill in self.held) and not self.flow.stopping.is_set()
                and not self.flow.progress.has_waiters() and flushes == self.flushes_seen):
            self.idle = True  # look again in 10 ms
            return []
        self.idle = False
        self.flushes_seen = flushes
        self.last_emit = (now, rows / max(now - self.held_since, 0.001))
        if self.flow.recorded:  # positions as the store records them: (partition, offset after the record)
            out = [("all", (b, (self.index, encode_position(p)), bf)) for b, p, bf in self.held]
        else:
            out = [("all", item) for item in self.held]
        self.position = self.held[-1][1]
        self.held = []
        return out

    def next_awake(self) -> datetime | None:
        if self.idle:
            return datetime.now(UTC) + timedelta(milliseconds=10)
        return None

    def snapshot(self) -> Position:
        return self.position  # what was emitted: held records are read again after a restart


class _LogSource(FixedPartitionedSource[Any, Position]):
    def __init__(self, flow: Dataflow) -> None:
        self.flow = flow

    def list_parts(self) -> list[str]:
        # "log" is this process's own log (the name recovery state of one-process data dirs has).
        return ["log"] + [f"log-{i}" for i in range(1, len(self.flow.readers))]

    def build_part(self, step_id: str, for_part: str, resume_state: Position | None) -> LogPartition:
        return LogPartition(self.flow, resume_state, 0 if for_part == "log" else int(for_part.split("-")[1]))


class _StoreSinkPartition(StatelessSinkPartition[DedupResult]):
    def __init__(self, flow: Dataflow, worker: str) -> None:
        self.flow = flow
        self.worker = worker

    def write_batch(self, items: list[DedupResult]) -> None:
        self.flow.store_results(items, self.worker)


class _StoreSink(DynamicSink[DedupResult]):
    def __init__(self, flow: Dataflow) -> None:
        self.flow = flow

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StoreSinkPartition:
        return _StoreSinkPartition(self.flow, f"{self.flow.process_id or 0}-{worker_index}")


class Dataflow:
    """Owns the running flow: start, stop, health, progress.

    One flow definition for every input: the local intake log (``intake`` given: embedded),
    with the log partitions of intake processes beside it (``peers``), or the Kafka topic
    (``intake`` None: a worker of the split topology). Only the input step and what the sink
    records after an insert differ: the log's committed position and this process's
    ``Progress`` (one log, one process), or — when other processes accept events — the
    stored offsets per partition (and the insert in flight) in the usage store, where those
    processes read them (``recorded``).
    """

    def __init__(self, settings: Settings, usage: UsageStore, intake: IntakeLog | None, telemetry: Telemetry,
                 *, workers: int = 1, process_id: int | None = None, addresses: list[str] | None = None,
                 peers: list[PeerLog] | None = None, board: ProgressBoard | None = None) -> None:
        self.settings = settings
        self.clock = settings.clock
        self.usage = usage
        self.kafka = intake is None
        if intake is None and not settings.kafka_brokers:
            raise ValueError("a dataflow without the local log reads Kafka: set ABAXUS_KAFKA_BROKERS")
        self.workers, self.process_id, self.addresses = workers, process_id, addresses
        self.readers = [LogReader(intake), *(LogReader(p) for p in peers or [])] if intake is not None else []
        self.reader = self.readers[0] if self.readers else None
        self.recorded = self.kafka or len(self.readers) > 1
        # Where a recorded flow notes its progress for the processes that wait on it.
        self.board: ProgressBoard | None = board
        if self.kafka and board is None:
            self.board = StoreBoard(usage, settings.kafka_topic)
        if self.recorded and self.board is None:
            raise ValueError("a dataflow over several log partitions records its progress: pass board")
        self._voids_seen: int | None = None
        self._trimmed_below = 0
        self._peers_trimmed_below: dict[int, int] = {}
        self.telemetry = telemetry
        self.stopping = threading.Event()
        self.pipeline_dir = settings.data_dir / "pipeline"
        self.pipeline_dir.mkdir(parents=True, exist_ok=True)
        self.progress = Progress(self.committed_position(), clock=settings.clock)
        self.pending_voids: dict[str, tuple[str, int]] = {}
        self.pending_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.bloom = BloomFilter(capacity=0)  # sized from the store in start()
        # Why the last insert into the usage store failed; None while inserts succeed.
        self.store_problem: str | None = None

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        started = time.monotonic()
        stored = 0
        # Room for twice what is stored keeps false hits (each one a store lookup) well under 1 %.
        self.bloom = BloomFilter(capacity=max(4_000_000, 2 * self.usage.count_events()))
        for chunk in self.usage.iter_all_event_ids():
            stored += len(chunk)
            self.bloom.add_ids(chunk)
        self.pending_voids = self.usage.pending_voids()
        if self.board is not None and not self.kafka:
            self._voids_seen = self.board.voids_version()
            self.board.mark_inflight("", 0)  # an insert a crash interrupted is not in flight any more
        recovery = self.pipeline_dir / "recovery"
        if not recovery.exists():
            recovery.mkdir(parents=True)
            init_db_dir(recovery, max(1, self.workers * len(self.addresses or [""])))
        log.info("dataflow_starting", stored_keys=stored, filter_seconds=round(time.monotonic() - started, 3),
                 resume_from=list(self.progress.done))
        self._thread = threading.Thread(target=self._run, args=(recovery,), name="abaxus-dataflow", daemon=True)
        self._thread.start()

    def _run(self, recovery: Path) -> None:
        """Run the flow until asked to stop; a flow that fails is started again, with backoff.

        A failure inside Bytewax (its recovery store cannot write a snapshot on a full disk,
        the broker's partition errors) would otherwise stop ingestion until someone restarts
        the process. Every event not yet stored is still in the log or the topic, and a new
        flow resumes from the last snapshot and what the store holds, so starting again loses
        nothing; while it waits, ``healthy()`` is false (``/readyz`` and 503s say why).
        """
        delay = _RESTART_FIRST_S
        try:
            while not self.stopping.is_set():
                try:
                    cli_main(self.build(), workers_per_process=self.workers, process_id=self.process_id,
                             addresses=self.addresses, epoch_interval=timedelta(seconds=self.settings.epoch_seconds),
                             recovery_config=RecoveryConfig(recovery))
                    return  # the sources ended: the flow was asked to stop
                except BaseException as exc:  # any failure of the flow: reported, then started again
                    # A panic in Bytewax's Rust code arrives as pyo3's PanicException, a
                    # BaseException: a full disk once made its stderr write fail ("failed printing
                    # to stderr") and the flow stayed down after space came back. Only the
                    # interpreter's own exits end the supervisor.
                    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                        raise
                    self.error = exc
                    with contextlib.suppress(Exception):  # a full disk can fail the log line too: restart all the same
                        log.error("dataflow_failed", exc_info=exc, restart_in_s=delay)
                if self.stopping.wait(delay):
                    return
                delay = min(delay * 2, _RESTART_MAX_S)
                with contextlib.suppress(Exception):
                    log.info("dataflow_restarting")
                self.error = None
        except BaseException as exc:  # interpreter shutdown and the like: reported through /readyz
            self.error = exc
            log.error("dataflow_stopped", exc_info=exc)
        finally:
            self.progress.alive = False

    def stop(self, timeout: float = 30) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def running(self) -> bool:
        """Whether the flow's thread runs (a failed flow waiting to start again still does)."""
        return self._thread is not None and self._thread.is_alive()

    def healthy(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.error is None

    def lag_seconds(self) -> float:
        return self.progress.lag_seconds()

    def flush_requests(self) -> int:
        """A counter that moves while requests wait for the store in other processes (the shared board's)."""
        return self.board.flush_requests() if self.board is not None else 0

    def register_pending_voids(self, keys: list[str], reason: str, at_ms: int) -> None:
        """Void these keys' events if the sink stores them from now on (§9 "pending").

        A key already waiting keeps its first reason and time.
        """
        with self.pending_lock:
            for key in keys:
                self.pending_voids.setdefault(key, (reason, at_ms))

    # ---- the flow ------------------------------------------------------------------------
    def build(self) -> BytewaxFlow:
        flow = BytewaxFlow("abaxus_ingest")
        source: Any
        if self.kafka:
            assert self.settings.kafka_brokers is not None
            source = ResumingKafkaSource(self.settings.kafka_brokers, self.settings.kafka_topic,
                                         lambda: self.usage.stored_offsets(self.settings.kafka_topic), self.stopping)
        else:
            source = _LogSource(self)
        # Records are keyed by where their keys' dedup state lives: "all" for the log, the
        # partition's number for Kafka (all duplicates of a key share a partition).
        records = op.input("intake_kafka" if self.kafka else "intake_log", flow, source)
        bloom_lock = threading.Lock()
        deduped = op.stateful_batch(
            "dedup_by_idempotency_key", records,
            lambda resume: DedupLogic(resume, self.bloom, self.usage.existing_keys,
                                      self.telemetry.events_deduplicated.inc, bloom_lock))
        op.output("usage_store", op.map("drop_key", deduped, lambda kv: kv[1]), _StoreSink(self))
        return flow

    # ---- the sink ------------------------------------------------------------------------
    def committed_position(self) -> Position:
        try:
            seg, off = (self.pipeline_dir / "sink.pos").read_text().split()
            return int(seg), int(off)
        except (FileNotFoundError, ValueError):
            return (0, 0)

    def _commit(self, position: Position) -> None:  # the local log's only
        """Record how far the usage store holds the log, then drop the segments wholly behind it.

        A restart resumes at or after this position (the later of it and Bytewax's snapshot),
        so nothing before it is read again.
        """
        tmp = self.pipeline_dir / "sink.pos.tmp"
        tmp.write_text(f"{position[0]} {position[1]}")
        os.replace(tmp, self.pipeline_dir / "sink.pos")
        if position[0] > self._trimmed_below and self.reader is not None:
            self.reader.log.delete_before(position[0])
            self._trimmed_below = position[0]

    def _trim_partitions(self, ends: dict[int, int]) -> None:
        """Drop the log segments of each partition wholly behind what the store now holds."""
        for index, end in ends.items():
            position = decode_position(end)
            if index == 0:
                self._commit(position)
            elif position[0] > self._peers_trimmed_below.get(index, 0):
                self.readers[index].log.delete_before(position[0])
                self._peers_trimmed_below[index] = position[0]

    def _to_event_rows(self, kept: list[pa.RecordBatch], now: datetime) -> pa.Table:
        table = pa.Table.from_batches(kept)
        n = table.num_rows
        ts = pa.timestamp("ms", tz="UTC")
        voided: pa.Array = pa.repeat(pa.scalar(False), n)
        voided_at: pa.Array = pa.repeat(pa.scalar(_EPOCH0, ts), n)
        reasons: pa.Array = pa.repeat(pa.scalar(""), n)
        if self.pending_voids:  # voids that arrived before their event (§9 "pending")
            with self.pending_lock:
                hits = [self.pending_voids.get(k) for k in table.column("idempotency_key").to_pylist()]
            if any(hits):
                voided = pa.array([h is not None for h in hits])
                # strictly before ingested_at: the summary then knows this row never counted
                stamp = int(now.timestamp() * 1000)
                voided_at = pa.array([min(h[1], stamp - 1) if h else 0 for h in hits], pa.int64()).cast(ts)
                reasons = pa.array([h[0] if h else "" for h in hits])
        return pa.table({
            "event_id": table.column("event_id"),
            "idempotency_key": table.column("idempotency_key"),
            "customer_id": table.column("customer_id"),
            "metric_key": table.column("metric_key"),
            "value": table.column("value"),
            "timestamp": table.column("timestamp"),
            "properties": table.column("properties"),
            "ingested_at": pa.repeat(pa.scalar(now, ts), n),
            "voided": voided,
            "voided_at": voided_at,
            "void_reason": reasons,
        }, schema=EVENT_SCHEMA)

    def store_results(self, items: list[DedupResult], worker: str = "0-0") -> None:
        kept = [r.kept for r in items if r.kept.num_rows]
        dropped = [r.dropped for r in items if r.dropped.num_rows]
        # No attempt limit: the events stay in the durable log until stored, so the sink waits
        # out a full disk or a restarting server (0.5 s, 1 s, then every 2 s) until the flow stops.
        def pause(seconds: float) -> None:  # wakes at once when the flow stops
            self.stopping.wait(seconds)

        retrying = Retrying(retry=retry_if_exception_type(Exception), wait=wait_exponential(multiplier=0.5, max=2.0),
                            stop=lambda _: self.stopping.is_set(), sleep=pause, reraise=True)
        for attempt in retrying:
            with attempt:
                self._store_once(kept, dropped, attempt.retry_state.attempt_number, worker)
        for r in items:  # their keys are in the store now: the dedup step may stop holding them
            r.stored()
        if self.recorded:
            if items:  # markers too: an API replica waits for the offsets past its markers
                ends: dict[int, int] = {}
                after = 1 if self.kafka else 0  # a Kafka message's own offset; a log record's end
                for r in items:
                    ends[r.position[0]] = max(ends.get(r.position[0], 0), r.position[1] + after)
                board = self.board
                assert board is not None
                for attempt in Retrying(retry=retry_if_exception_type(Exception), sleep=pause, reraise=True,
                                        wait=wait_exponential(multiplier=0.5, max=2.0), stop=lambda _: self.stopping.is_set()):
                    with attempt:
                        board.record_offsets(ends, self.clock.now_ms())
                if not self.kafka:
                    self._trim_partitions(ends)
            return
        for r in items:
            kept_keys = set(r.kept.column("idempotency_key").to_pylist()) if r.backfill else None
            self.progress.completed(r.position, kept_keys)
        if items:
            self._commit(max(r.position for r in items))

    def _store_once(self, kept: list[pa.RecordBatch], dropped: list[pa.RecordBatch], attempt: int, worker: str) -> None:
        """One insert; a failure sets ``store_problem`` (and the stalled signal from the second on).

        When progress is recorded in the store (Kafka, or log partitions of several
        processes) the insert in flight is announced there first (API processes take a
        usage watermark only below it) and the pending voids are read again: a void an API
        replica registered before its barrier applies to every event read after it.
        """
        stamp = self.clock.now_ms()  # ingested_at: the clock usage watermarks are taken by
        now = datetime.fromtimestamp(stamp / 1000, tz=UTC)
        self.progress.inserting(stamp)
        try:
            if self.board is not None and (kept or dropped):
                self.board.mark_inflight(worker, stamp)
                version = self.board.voids_version()  # before the read: a void registered after it is read next time
                if version is None or version != self._voids_seen:
                    self.pending_voids = self.usage.pending_voids()
                    self._voids_seen = version
            if kept:
                events = self._to_event_rows(kept, now)
                self.usage.insert_events(events)
                self.telemetry.events_ingested.inc(events.num_rows)
            if dropped:
                d = pa.Table.from_batches(dropped)
                self.usage.insert_duplicates(pa.table({
                    "idempotency_key": d.column("idempotency_key"), "customer_id": d.column("customer_id"),
                    "metric_key": d.column("metric_key"),
                    "received_at": d.column("accepted_at")}, schema=_DUP_SCHEMA))
            if self.board is not None and (kept or dropped):
                self.board.mark_inflight(worker, 0)
            if attempt > 1:
                log.info("usage_store_recovered", failed_attempts=attempt - 1)
                self.store_problem = None
                self.progress.set_stalled(None)
        except Exception as exc:  # the store is down: keep the events, retry
            self.store_problem = _short_reason(exc)
            log.warning("usage_store_insert_failed", error=str(exc)[:500], attempt=attempt)
            if attempt >= _STALL_AFTER:  # not a blip: waiting requests get 503 instead of a stale answer
                self.progress.set_stalled(self.store_problem)
            raise
        finally:
            self.progress.inserting(None)
