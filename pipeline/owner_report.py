"""What the owner (chDB's process, which runs the dataflow) tells its intake processes about itself.

From two intake processes on, the owner does not answer on the public port (``abaxus.cli``),
so ``/readyz`` and event requests there are answered by intake processes, which cannot see
the dataflow. The owner publishes its dataflow's and usage store's problems once a second in
a small memory-mapped file (``<data dir>/intake/owner.report``); an intake process reads it
per request (a memory read) and treats a report older than ``STALE_AFTER_S`` as a dataflow
that is down, so a hung or stopped owner is refused with 503 like a failed dataflow is in one
process, instead of events being acknowledged with nobody storing them.

The layout mirrors the progress board: a sequence number, odd while the owner writes, then
the time of the report and its JSON.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

import msgspec

__all__ = ["STALE_AFTER_S", "OwnerReport"]

STALE_AFTER_S = 5.0  # the owner reports every second; five missed reports mean it is not running
_SIZE = 4096
_HEAD = struct.Struct("<QqI")  # sequence, reported at (ms), length of the JSON that follows
_SEQ = struct.Struct("<Q")
_READ_TRIES = 10_000  # a write takes microseconds; past this the sequence stays odd


class OwnerReport:
    """One writer (the owner), any number of readers (its intake processes)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)

    def publish(self, problems: dict[str, str | None], at_ms: int) -> None:
        """Write the owner's problems (part → what is wrong, or None) as of ``at_ms``."""
        body = msgspec.json.encode({k: v[:500] if v else v for k, v in problems.items()})[:_SIZE - _HEAD.size]
        seq = _SEQ.unpack_from(self._map, 0)[0] | 1
        _SEQ.pack_into(self._map, 0, seq)
        self._map[_HEAD.size:_HEAD.size + len(body)] = body
        _HEAD.pack_into(self._map, 0, seq, at_ms, len(body))
        _SEQ.pack_into(self._map, 0, seq + 1)

    def read(self) -> tuple[int, dict[str, str | None]]:
        """The time of the last report (0: none yet) and its problems, as one consistent pair."""
        for _ in range(_READ_TRIES):
            seq, at_ms, length = _HEAD.unpack_from(self._map, 0)
            body = bytes(self._map[_HEAD.size:_HEAD.size + length])
            if not seq & 1 and _SEQ.unpack_from(self._map, 0)[0] == seq:
                break
        else:  # odd for good: the owner died mid-write; its successor's first report ends that
            return 0, {}
        if not at_ms:
            return 0, {}
        try:
            return at_ms, msgspec.json.decode(body, type=dict[str, str | None])
        except msgspec.DecodeError:
            return 0, {}

    def dataflow_problem(self, now_ms: int) -> str | None:
        """Why the owner's dataflow cannot be counted on, or None: its own report, or its silence."""
        at_ms, problems = self.read()
        if not at_ms:
            return "the server (the process that stores events) has not reported yet"
        age = (now_ms - at_ms) / 1000
        if age > STALE_AFTER_S:
            return f"the server (the process that stores events) has not reported for {age:.0f} s"
        return problems.get("dataflow")

    def close(self) -> None:
        self._map.close()
