"""Embedded ingestion over several processes: one intake-log partition per process.

``abaxus serve`` with ``ABAXUS_INTAKE_PROCESSES=N`` runs N intake processes beside the one
process that owns chDB (``abaxus.cli.intake``). Every process takes HTTP requests on the
same port, validates events and makes them durable in *its own* log partition — a 202 is
still an fsync — so parsing and validation use every core. The owner's dataflow reads all
partitions into one dedup state (first wins across processes) and records how far each
partition is stored, and the insert in flight, on a shared board (``progress_board.SharedBoard``,
a memory-mapped file), as Kafka workers record theirs in the usage store. Every process
waits on that record: a barrier takes the durable end every writer published
(``log.DurableMark``) and waits until the board has passed it, so an invoice, a void or a
backfill answered by any process sees every event any process acknowledged before it.

Partition 0 is the owner's log (``<data dir>/log``, where a one-process Abaxus keeps it);
partition *i* lives in ``<data dir>/intake/<i>``. Each has one writer at a time (a lock
file); the owner reads every partition found on disk, so events acknowledged by intake
processes of an earlier run are stored even if this run has fewer.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
from sqlalchemy import Engine

from abaxus.errors import Unavailable
from abaxus.logging import get_logger
from abaxus.pipeline.dataflow import Dataflow
from abaxus.pipeline.kafka_ingestion import RecordedIngestion
from abaxus.pipeline.log import (
    LOG_TOPIC,
    IntakeLog,
    PeerLog,
    decode_position,
    encode_position,
    read_durable_mark,
)
from abaxus.pipeline.owner_report import OwnerReport
from abaxus.pipeline.progress_board import SharedBoard
from abaxus.pipeline.service import RETRY
from abaxus.settings import Settings
from abaxus.telemetry import Telemetry

__all__ = ["LOG_TOPIC", "PartitionedLogIngestion", "decode_position", "encode_position", "partition_dir",
           "partitions_on_disk"]  # the position helpers live in abaxus.pipeline.log

log = get_logger("abaxus.partitions")

def partition_dir(data_dir: Path, index: int) -> Path:
    """Where partition ``index`` of the intake log lives (0: the owner's own log)."""
    return data_dir / "log" if index == 0 else data_dir / "intake" / str(index)


def partitions_on_disk(data_dir: Path) -> int:
    """How many partitions exist: 1 + the highest intake process's number found."""
    root = data_dir / "intake"
    found = [int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()] if root.exists() else []
    return max([0, *found]) + 1


class PartitionedLogIngestion(RecordedIngestion):
    poll_s = 0.002  # the board is a memory read, not a query
    """``Ingestion`` of one process of an embedded Abaxus that takes events in several processes.

    ``settings.intake_partition`` is the partition this process writes; partition 0 is the
    owner, which also runs the dataflow over every partition (``partitions`` of them).
    """

    def __init__(self, settings: Settings, engine: Engine, telemetry: Telemetry, partitions: int) -> None:
        board = SharedBoard(settings.data_dir / "intake" / "progress.board")
        super().__init__(settings, engine, telemetry, LOG_TOPIC, board)
        self._board = board
        self.partition = settings.intake_partition
        self.partitions = partitions
        self._log = IntakeLog(partition_dir(settings.data_dir, self.partition), settings.log_segment_bytes, shared=True)
        self._dataflow: Dataflow | None = None
        self._report = OwnerReport(settings.data_dir / "intake" / "owner.report")
        self._reporting = threading.Event()
        self._reporter: threading.Thread | None = None
        if self.partition == 0:
            peers = [PeerLog(partition_dir(settings.data_dir, i)) for i in range(1, partitions)]
            self._dataflow = Dataflow(settings, self.usage, self._log, telemetry, peers=peers, board=board)

    def start(self) -> None:
        if self._dataflow is not None:
            self._dataflow.start()
            self._report_owner()  # before the intake processes start: they find a fresh report
            self._reporter = threading.Thread(target=self._report_each_second, name="abaxus-owner-report", daemon=True)
            self._reporter.start()
        super().start()

    def stop(self) -> None:
        self._reporting.set()
        if self._reporter is not None:
            self._reporter.join(5)
        if self._dataflow is not None:
            self._dataflow.stop()
        self._log.close()
        super().stop()
        self._board.close()
        self._report.close()

    def _owner_problems(self) -> dict[str, str | None]:
        """The owner's own view of the usage store and the dataflow (``None``: works)."""
        assert self._dataflow is not None
        usage = None if self.usage.healthy() else "the usage store does not answer queries"
        if usage is None and self._dataflow.store_problem is not None:
            usage = f"inserts fail: {self._dataflow.store_problem}"
        dataflow = None if self._dataflow.healthy() else str(self._dataflow.error or "the dataflow is not running")[:300]
        return {"usage_store": usage, "dataflow": dataflow}

    def _report_owner(self) -> None:
        self._report.publish(self._owner_problems(), self.settings.clock.now_ms())

    def _report_each_second(self) -> None:
        while not self._reporting.wait(1.0):
            try:
                self._report_owner()
            except Exception:  # a probe that failed: the next second reports again
                log.warning("owner_report_failed", exc_info=True)

    def health(self) -> dict[str, str | None]:
        """The usage store, this process's log partition, and the dataflow (in an intake process: as the owner reports)."""
        queue = None if self._log.healthy() else (self._log.problem or "the intake log is closed")
        if self._dataflow is not None:
            return {**self._owner_problems(), "queue": queue}
        reported = self._report.problems(self.settings.clock.now_ms())
        usage = None if self.usage.healthy() else "the usage store does not answer queries"
        return {"usage_store": usage or reported["usage_store"], "queue": queue, "dataflow": reported["dataflow"]}

    async def submit(self, batch: pa.RecordBatch, *, backfill: bool = False) -> dict[int, int]:
        """Append to this process's partition (fsync'd); the stored offset that means "all of it stored"."""
        if self._dataflow is None:  # an intake process: the owner's dataflow, as it reports it
            problem = self._report.dataflow_problem(self.settings.clock.now_ms())
            if problem is not None:
                raise Unavailable("NOT_READY", f"The dataflow is down ({problem}); nothing was accepted. Retry shortly.",
                                  headers=RETRY)
        position = await self._append_durably(self._log, self._dataflow, batch, backfill)
        targets = {self.partition: encode_position(position)}
        self._acknowledge(targets, [batch])
        return targets

    def _barrier_targets(self, timeout: float) -> dict[int, int]:
        """Every partition's published durable end: each acknowledged record lies before it."""
        ends = {i: encode_position(read_durable_mark(partition_dir(self.settings.data_dir, i)))
                for i in range(self.partitions) if i != self.partition}
        ends[self.partition] = encode_position(self._log.durable_position)
        return {i: end for i, end in ends.items() if end > 0}

