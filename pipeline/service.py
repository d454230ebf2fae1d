"""Ingestion as one service: validate → durable queue → dataflow → usage store.

The API calls ``validate_batch``/``validate``, ``submit`` (202 once durable), ``backfill``
(200 once stored), ``void``, ``caught_up_as_of`` and the read helpers (``metrics``,
``lag_seconds``, ``backlog_events``, ``health``). ``Ingestion`` is that interface with the
parts every topology shares (the catalog view, the validator, the usage store); the queue
behind it is ``EmbeddedIngestion``'s durable local log and in-process dataflow, or
``abaxus.pipeline.kafka_ingestion.KafkaIngestion``'s topic read by separate workers.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine

from abaxus.errors import Unavailable
from abaxus.ids import event_id_for
from abaxus.logging import get_logger
from abaxus.pipeline.catalog_view import CatalogView
from abaxus.pipeline.dataflow import Dataflow
from abaxus.pipeline.intake import Accepted, AcceptedBatch, EventValidator, Rejected
from abaxus.pipeline.log import IntakeLog, LogWriteError, Position
from abaxus.pipeline.records import encode_record
from abaxus.settings import Settings
from abaxus.store.usage import EVENT_SCHEMA, UsageStore
from abaxus.telemetry import Telemetry

__all__ = ["BACKFILL_TIMEOUT_S", "CATCH_UP_TIMEOUT_S", "RETRY", "EmbeddedIngestion", "Ingestion"]

BACKFILL_TIMEOUT_S = 60.0
CATCH_UP_TIMEOUT_S = 30.0
RETRY = {"Retry-After": "1"}


log = get_logger("abaxus.ingestion")


class Ingestion:
    """What the API asks of ingestion, whatever queue is behind it."""

    def __init__(self, settings: Settings, engine: Engine, telemetry: Telemetry) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self._view = CatalogView(engine)
        self._validator = EventValidator(self._view, clock=settings.clock)
        # The usage store is opened here and shared: the API reads it (its own dependency).
        self.usage = UsageStore(settings)

    def start(self) -> None:
        """Start what runs beside the API (the embedded dataflow, the Kafka producer's threads)."""

    def stop(self) -> None:
        self.usage.close()

    # ---- the catalog as intake sees it ---------------------------------------------------
    def metrics(self) -> dict[str, dict[str, Any]]:
        """Every metric by key (a few seconds old at most), as events are validated against."""
        self._view.refresh_if_stale()
        return self._view.metrics

    def catalog_changed(self) -> None:
        """This process changed customers or metrics: validate against the new catalog at once."""
        self._view.refresh()

    # ---- validation ----------------------------------------------------------------------
    def validate_batch(self, body: bytes) -> tuple[AcceptedBatch, list[Rejected], pa.RecordBatch | None] | None:
        """The columnar fast path for a batch body whose every event is valid; ``None`` otherwise."""
        return self._validator.validate_batch(body)

    def validate(self, raws: list[bytes], prefix_fmt: str = "events.{}.") -> tuple[list[Accepted], list[Rejected],
                                                                                  pa.RecordBatch | None]:
        """Validate raw events one by one (each rejection counted by code); accepted ones as one batch."""
        accepted, rejected, batch = self._validator.validate(raws, prefix_fmt=prefix_fmt)
        for r in rejected:
            self.telemetry.events_rejected.labels(r.error.code).inc()
        return accepted, rejected, batch

    # ---- what each queue answers ---------------------------------------------------------
    def backlog_events(self) -> int:
        """Events acknowledged (durable) but not yet in the usage store."""
        raise NotImplementedError

    def lag_seconds(self) -> float:
        """Age of the oldest acknowledged event not yet in the usage store."""
        raise NotImplementedError

    def health(self) -> dict[str, str | None]:
        """``usage_store``, ``queue`` and ``dataflow`` (§17): ``None`` if the part works, else what is wrong."""
        raise NotImplementedError

    def overloaded(self) -> str | None:
        """Why new events must wait (the back-pressure bound is passed), else None."""
        backlog = self.backlog_events()
        if backlog >= self.settings.intake_max_backlog_events:
            return f"{backlog:,} acknowledged events are not stored yet (bound {self.settings.intake_max_backlog_events:,})"
        lag = self.lag_seconds()
        if lag >= self.settings.intake_max_lag_seconds:
            return f"the pipeline is {lag:.1f} s behind (bound {self.settings.intake_max_lag_seconds:g} s)"
        return None

    def _refuse_if_overloaded(self) -> None:
        busy = self.overloaded()
        if busy is not None:
            self.telemetry.intake_refused.labels("backpressure").inc()
            raise Unavailable("NOT_READY", f"Abaxus is behind: {busy}; nothing was accepted. Retry after "
                              f"{RETRY['Retry-After']} s.", headers=RETRY)

    async def submit(self, batch: pa.RecordBatch, *, backfill: bool = False) -> Any:
        """Make accepted events durable (a 202 may follow); raise NOT_READY (503) if that cannot be promised."""
        raise NotImplementedError

    async def _append_durably(self, log: IntakeLog, dataflow: Dataflow | None, batch: pa.RecordBatch,
                              backfill: bool) -> Position:
        """Append to a local log; NOT_READY (nothing accepted) if the dataflow is down, the
        back-pressure bound is passed, or the write or its fsync fails (the log is then cut
        back to its last whole record, so nothing of this request survives a restart)."""
        if dataflow is not None and not dataflow.healthy():
            raise Unavailable("NOT_READY", "The dataflow is down; nothing was accepted. Retry shortly.", headers=RETRY)
        self._refuse_if_overloaded()
        try:
            return await log.append(encode_record(batch, backfill=backfill))
        except LogWriteError as exc:
            self.telemetry.intake_refused.labels("log_write_failed").inc()
            raise Unavailable("NOT_READY", f"The intake log could not make the events durable ({log.problem or exc}); "
                              "nothing was accepted. Free disk space or retry shortly.", headers=RETRY) from None

    async def backfill(self, batch: pa.RecordBatch) -> set[str]:
        """Submit like ``submit``, then wait until stored: the idempotency keys stored now (not duplicates)."""
        raise NotImplementedError

    def caught_up_as_of(self, timeout: float = CATCH_UP_TIMEOUT_S) -> int:
        """``usage_as_of`` for a computation that must see every event acknowledged before it.

        Waits (bounded) until the dataflow has stored everything acknowledged before this
        instant, then takes a watermark no later insert can precede: an invoice created after
        its events got their 202s counts them. If that cannot happen in ``timeout`` (or the
        usage store refuses inserts), the request gets 503 NOT_READY and nothing is done: an
        invoice never silently misses usage that was acknowledged before it (§17).
        """
        raise NotImplementedError

    def _register_pending_voids(self, keys: list[str], reason: str, at_ms: int) -> None:
        raise NotImplementedError

    def _pending_voids_added(self) -> None:
        """Pending voids were added to the usage store (a sink elsewhere may need telling)."""

    def _wait_current(self, timeout: float) -> None:
        """Wait (bounded) until everything acknowledged so far is stored."""
        raise NotImplementedError

    def void(self, keys: list[str], reason: str) -> list[dict[str, Any]]:
        """Void stored events; events not stored yet are voided when they arrive (§9).

        The void is registered with the sink first, then we wait for the dataflow to pass
        what is acknowledged now, so an event in flight is either stored voided by the sink
        or found stored here: never stored unvoided after we answered.
        """
        unique = list(dict.fromkeys(keys))
        before = {r["idempotency_key"]: r["voided"] for r in self.usage.stored_events(unique).to_pylist()}
        now = self.settings.clock.now_ms()
        fresh = [k for k in unique if not before.get(k, False)]
        self._register_pending_voids(fresh, reason, now)
        with contextlib.suppress(TimeoutError):  # still pending in the sink's set: stored voided when the dataflow catches up
            self._wait_current(10.0)
        stored = self.usage.stored_events(fresh) if fresh else pa.table({})
        rows = {r["idempotency_key"]: r for r in stored.to_pylist()} if fresh else {}
        unvoided = [k for k, r in rows.items() if not r["voided"]]
        if unvoided:
            table = stored.filter(pc.is_in(stored.column("idempotency_key"), pa.array(unvoided)))
            n = table.num_rows
            table = table.set_column(table.schema.get_field_index("voided"), "voided", pa.repeat(pa.scalar(True), n))
            table = table.set_column(table.schema.get_field_index("voided_at"), "voided_at",
                                     pa.repeat(pa.scalar(now, pa.int64()), n).cast(pa.timestamp("ms", tz="UTC")))
            table = table.set_column(table.schema.get_field_index("void_reason"), "void_reason", pa.repeat(pa.scalar(reason), n))
            self.usage.insert_events(table.cast(EVENT_SCHEMA))
        pending = [k for k in fresh if k not in rows]
        self.usage.add_pending_voids([(k, reason, now) for k in pending])
        self._pending_voids_added()
        results = []
        for k in keys:
            if before.get(k, False):
                status = "already_voided"
            elif k in rows:
                status = "voided"
            else:
                status = "pending"
            results.append({"idempotency_key": k, "event_id": event_id_for(k), "status": status})
        return results


class EmbeddedIngestion(Ingestion):
    """The default: an fsync'd local log, and the dataflow on a thread of this process (chDB's owner)."""

    def __init__(self, settings: Settings, engine: Engine, telemetry: Telemetry) -> None:
        super().__init__(settings, engine, telemetry)
        self._log = IntakeLog(settings.data_dir / "log", settings.log_segment_bytes)
        self._dataflow = Dataflow(settings, self.usage, self._log, telemetry)

    def start(self) -> None:
        self._dataflow.start()

    def stop(self) -> None:
        self._dataflow.stop()
        self._log.close()
        super().stop()

    # ---- health ----------------------------------------------------------------------------
    def backlog_events(self) -> int:
        return self._dataflow.progress.backlog_events()

    def lag_seconds(self) -> float:
        return self._dataflow.lag_seconds()

    def health(self) -> dict[str, str | None]:
        """``usage_store``, ``queue`` and ``dataflow`` (§17): ``None`` if the part works, else what is wrong."""
        answers = self.usage.healthy()
        store_problem = self._dataflow.store_problem
        usage = (None if answers and store_problem is None
                 else "the usage store does not answer queries" if not answers else f"inserts fail: {store_problem}")
        queue = None if self._log.healthy() else (self._log.problem or "the intake log is closed")
        dataflow = None if self._dataflow.healthy() else str(self._dataflow.error or "the dataflow is not running")[:300]
        return {"usage_store": usage, "queue": queue, "dataflow": dataflow}

    async def submit(self, batch: pa.RecordBatch, *, backfill: bool = False) -> Position:
        """Append accepted events durably; raise NOT_READY (nothing accepted) if that cannot be promised.

        Refused, with ``Retry-After``, when the dataflow is down, when the back-pressure bound
        is passed, and when the log write or its fsync fails (the log is then cut back to its
        last whole record, so nothing of this request survives a restart).
        """
        position = await self._append_durably(self._log, self._dataflow, batch, backfill)
        self._dataflow.progress.accepted(position, self.settings.clock.now_ms(), batch.num_rows)
        return position

    async def backfill(self, batch: pa.RecordBatch) -> set[str]:
        """Append like ``submit``, then wait until stored: the idempotency keys stored now (not duplicates)."""
        position = await self.submit(batch, backfill=True)
        return await self._wait_stored(position) or set()

    def caught_up_as_of(self, timeout: float = CATCH_UP_TIMEOUT_S) -> int:
        """See ``Ingestion.caught_up_as_of``: the wait is for the log's durable end (back-pressure keeps it short)."""
        try:
            self._dataflow.progress.wait_through(self._log.durable_position, timeout)
        except TimeoutError as exc:
            log.warning("usage_not_caught_up", timeout_s=timeout, lag_s=round(self._dataflow.lag_seconds(), 3),
                        reason=str(exc))
            raise Unavailable("NOT_READY", f"Not every acknowledged event is stored yet ({exc}); nothing was done. "
                              "Retry shortly.", headers=RETRY) from None
        return self._dataflow.progress.safe_as_of()

    async def _wait_stored(self, position: Position) -> set[str] | None:
        try:
            return await asyncio.to_thread(self._dataflow.progress.wait_for, position, BACKFILL_TIMEOUT_S)
        except TimeoutError:
            raise Unavailable("NOT_READY",
                              "The events are durable but not yet stored; they will be. Retry to see their status.") from None

    def _register_pending_voids(self, keys: list[str], reason: str, at_ms: int) -> None:
        self._dataflow.register_pending_voids(keys, reason, at_ms)

    def _wait_current(self, timeout: float) -> None:
        self._dataflow.progress.wait_through(self._log.durable_position, timeout)
