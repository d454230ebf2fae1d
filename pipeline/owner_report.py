"""What the owner (chDB's process, which runs the dataflow) tells its intake processes about itself.

From two intake processes on, the owner does not answer on the public port (``abaxus.cli``),
so ``/readyz`` and event requests there are answered by intake processes, which cannot see
the dataflow. The owner publishes its dataflow's and usage store's problems once a second in
a small memory-mapped file (``<data dir>/intake/owner.report``); an intake process reads it
per request (a memory read) and treats a report older than ``STALE_AFTER_S`` as a dataflow
that is down, so a hung or stopped owner is refused with 503 like a failed dataflow is in one
process, instead of events being acknowledged with nobody storing them.

Laid out as the progress board is (``shared_map``): a sequence number, odd while the owner
writes, then the time of the report and its JSON.
"""

from __future__ import annotations

import struct
from pathlib import Path

import msgspec

from abaxus.pipeline.shared_map import map_file, read_consistently, write_consistently

__all__ = ["STALE_AFTER_S", "OwnerReport"]

STALE_AFTER_S = 5.0  # the owner reports every second; five missed reports mean it is not running
_SIZE = 4096
_HEAD = struct.Struct("<QqI")  # sequence, reported at (ms), length of the JSON that follows
_SEQ = struct.Struct("<Q")
_REPORT = struct.Struct("<qI")  # _HEAD after the sequence
_READ_TRIES = 10_000  # a write takes microseconds; past this the sequence stays odd


class OwnerReport:
    """One writer (the owner), any number of readers (its intake processes)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._map = map_file(path, _SIZE)
        self._decoded: tuple[bytes, dict[str, str | None]] = (b"", {})  # the last JSON read, decoded

    def publish(self, problems: dict[str, str | None], at_ms: int) -> None:
        """Write the owner's problems (part → what is wrong, or None) as of ``at_ms``."""
        body = msgspec.json.encode({k: v[:500] if v else v for k, v in problems.items()})[:_SIZE - _HEAD.size]

        def write() -> None:
            self._map[_HEAD.size:_HEAD.size + len(body)] = body
            _REPORT.pack_into(self._map, _SEQ.size, at_ms, len(body))

        write_consistently(self._map, write)

    def read(self) -> tuple[int, dict[str, str | None]]:
        """The time of the last report (0: none yet) and its problems, as one consistent pair.

        Read on every event request of an intake process: the JSON is decoded only when it changed.
        """
        def take() -> tuple[int, bytes]:
            at_ms, length = _REPORT.unpack_from(self._map, _SEQ.size)
            return at_ms, bytes(self._map[_HEAD.size:_HEAD.size + length])

        taken = read_consistently(self._map, take, _READ_TRIES)
        if taken is None or not taken[0]:  # none yet, or odd for good: the owner died mid-write
            return 0, {}
        at_ms, body = taken
        if body != self._decoded[0]:
            try:
                self._decoded = (body, msgspec.json.decode(body, type=dict[str, str | None]))
            except msgspec.DecodeError:
                return 0, {}
        return at_ms, self._decoded[1]

    def problems(self, now_ms: int) -> dict[str, str | None]:
        """``usage_store`` and ``dataflow`` as the owner reports them; a silent owner's dataflow is down."""
        at_ms, problems = self.read()
        if not at_ms:
            return {"usage_store": None, "dataflow": "the server (the process that stores events) has not reported yet"}
        age = (now_ms - at_ms) / 1000
        if age > STALE_AFTER_S:
            return {"usage_store": problems.get("usage_store"),
                    "dataflow": f"the server (the process that stores events) has not reported for {age:.0f} s"}
        return {"usage_store": problems.get("usage_store"), "dataflow": problems.get("dataflow")}

    def dataflow_problem(self, now_ms: int) -> str | None:
        """Why the owner's dataflow cannot be counted on, or None: its own report, or its silence."""
        return self.problems(now_ms)["dataflow"]

    def close(self) -> None:
        self._map.close()
