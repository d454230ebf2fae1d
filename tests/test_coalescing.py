"""The source's coalescing: under load it holds records back for bigger inserts, but never past a burst's end.

These drive the dataflow's real source partition over a real intake log (and a real chDB
usage store behind the flow), calling ``next_batch`` as Bytewax does, with real time.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from abaxus.pipeline.dataflow import COALESCE_IDLE_SECONDS, COALESCE_ROWS, COALESCE_SECONDS, Dataflow, LogPartition
from abaxus.pipeline.log import IntakeLog
from abaxus.pipeline.records import encode_record
from abaxus.settings import Settings
from abaxus.store.usage import UsageStore
from abaxus.telemetry import Telemetry
from helpers import intake_batch


def _record(start: int, rows: int) -> bytes:
    return encode_record(intake_batch([f"k-{i}" for i in range(start, start + rows)]), backfill=False)


@pytest.fixture
def source(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data")
    usage = UsageStore(settings)
    log = IntakeLog(settings.data_dir / "intake")
    flow = Dataflow(settings, usage, log, Telemetry())  # not started: its source partition is driven here
    try:
        yield log, LogPartition(flow, None)
    finally:
        log.close()
        usage.close()


def _append(log: IntakeLog, *payloads: bytes) -> None:
    async def write() -> None:
        for payload in payloads:
            await log.append(payload)
    asyncio.run(write())


def _rows(out: list) -> int:
    return sum(batch.num_rows for _, (batch, *_) in out)


def test_under_load_records_are_held_while_they_keep_coming_and_let_go_once_they_stop(source):
    log, part = source
    # A burst past COALESCE_ROWS goes at once, and marks the source busy (rows came fast).
    _append(log, *(_record(i * 1000, 1000) for i in range(COALESCE_ROWS // 1000)))
    assert _rows(part.next_batch()) == COALESCE_ROWS
    for attempt in range(3):  # a machine that stalls past the limits proves nothing: again
        started = time.monotonic()
        base = 10_000_000 * (attempt + 1)
        held, early = 0, False
        for i in range(4):  # records keep coming, faster than COALESCE_IDLE_SECONDS apart: held
            _append(log, _record(base + i * 100, 100))
            held += 100
            if part.next_batch():  # let go while they kept coming: only right if this machine stalled
                early = True
                break
            time.sleep(COALESCE_IDLE_SECONDS / 5)
        if not early:
            time.sleep(COALESCE_IDLE_SECONDS * 1.5)  # then none comes: the burst ended
            out = part.next_batch()
            if time.monotonic() - started < COALESCE_SECONDS:
                # Let go before COALESCE_SECONDS (the hold while busy): once quiet, at once.
                assert _rows(out) == held
                return
        part.next_batch()  # let go of what is held before the next attempt
    pytest.fail("the machine never ran this within the coalescing limits")
