"""The intake log's flush task: one that ends other than by emptying its queue is logged.

Appends wait on the task; if it dies or is cancelled mid-write, their requests never get an
answer, so the end must at least show in the log (it used to vanish with the dropped task).
Each scenario runs in a fresh interpreter with JSON logs, so what it logged is read exactly
(structlog caches loggers on first use, so a test process keeps whatever renderer came first).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from abaxus.logging import configure_logging
from abaxus.pipeline.log import IntakeLog, LogReader


class _Abandoned(BaseException):
    """What no ``except Exception`` in the flush loop catches (as ``CancelledError`` is not)."""


class _PayloadThatAborts(bytes):
    def __len__(self) -> int:
        raise _Abandoned("the write was abandoned")


def _crash_then_append(directory: str) -> None:
    configure_logging("json")
    intake = IntakeLog(Path(directory))

    async def scenario() -> tuple[int, int]:
        stuck = asyncio.ensure_future(intake.append(_PayloadThatAborts(b"x")))
        for _ in range(1_000):  # the append starts the flush task within its first steps
            if intake._flush_task is not None:
                break
            await asyncio.sleep(0)
        assert intake._flush_task is not None
        await asyncio.wait({intake._flush_task}, timeout=5)  # it dies on the payload
        assert (intake._flush_task.done(), stuck.done()) == (True, False)  # the flush died; the append waits
        stuck.cancel()
        return await asyncio.wait_for(intake.append(b"next"), 5)  # a new flush takes it

    try:
        print(json.dumps({"event": "appended", "position": list(asyncio.run(scenario()))}))
    finally:
        intake.close()


def _cancel_mid_write(directory: str) -> None:
    configure_logging("json")
    intake = IntakeLog(Path(directory))

    async def scenario() -> None:
        waiting = asyncio.ensure_future(intake.append(b"in flight"))
        await asyncio.sleep(0)  # the flush task has started its write in a thread
        assert intake._flush_task is not None
        intake._flush_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await intake._flush_task
        waiting.cancel()

    try:
        asyncio.run(scenario())
    finally:
        intake.close()


def _logged(tmp_path: Path, scenario: str) -> list[dict[str, Any]]:
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import {__name__} as t; t.{scenario}(sys.argv[1])")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "log")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    for line in lines:
        line.pop("timestamp", None)
    return lines


def test_an_error_escaping_the_flush_is_logged_and_the_log_still_takes_appends(tmp_path: Path):
    crashed, appended = _logged(tmp_path, "_crash_then_append")
    exception = crashed.pop("exception")
    assert crashed == {"event": "intake_log_flush_crashed", "level": "error",
                       "error": "_Abandoned('the write was abandoned')", "durable": [0, 0]}
    assert exception.startswith("Traceback")
    assert exception.endswith("_Abandoned: the write was abandoned")
    # Nothing of the abandoned write reached the file: the next record starts at 0.
    assert appended == {"event": "appended", "position": [0, 8 + len(b"next")]}


def test_a_flush_cancelled_mid_write_is_logged(tmp_path: Path):
    (cancelled,) = _logged(tmp_path, "_cancel_mid_write")
    # The thread's write may or may not have finished when the task was cancelled.
    assert cancelled.pop("durable") in ([0, 0], [0, 8 + len(b"in flight")])
    assert cancelled == {"event": "intake_log_flush_cancelled", "level": "warning"}


class _ObservedLog(IntakeLog):
    """The real log on a real file, noting which thread wrote each group; ``delay`` makes the disk slow."""

    delay = 0.0
    writers: list[int]

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.writers = []

    def _write_group(self, payloads: list[bytes]) -> list[tuple[int, int]]:
        self.writers.append(threading.get_ident())
        time.sleep(self.delay)
        return super()._write_group(payloads)


def test_quick_writes_stay_on_the_loop_and_a_slow_disk_moves_them_to_a_thread(tmp_path: Path):
    log = _ObservedLog(tmp_path / "log")
    payloads = [b"quick %d" % i for i in range(10)] + [b"slow %d" % i for i in range(5)] + [b"quick again %d" % i
                                                                                          for i in range(20)]

    async def scenario() -> int:
        for payload in payloads:
            log.delay = 0.01 if payload.startswith(b"slow") else 0.0  # 10 ms a group: past INLINE_WRITE_S
            await log.append(payload)
        return threading.get_ident()

    try:
        loop_thread = asyncio.run(scenario())
        records, _ = LogReader(log).read((0, 0), max_records=len(payloads) + 1)
    finally:
        log.close()
    # Every record is in the log, in order, wherever it was written.
    assert [payload for payload, _ in records] == payloads
    on_loop = [w == loop_thread for w in log.writers]
    # Unknown at first: a worker thread; once writes are known to be quick, the loop itself.
    assert on_loop[0] is False
    assert on_loop[5:10] == [True] * 5
    # A slow disk for a few groups moves the writes to a thread; once quick again, back on the loop.
    assert False in on_loop[10:15]
    assert on_loop[-5:] == [True] * 5
