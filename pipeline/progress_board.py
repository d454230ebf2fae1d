"""Where the sink records how far it has stored, for the processes that accept events to read.

A process that accepts events but does not store them (an API replica, an intake process)
waits on this record: backfills, voids and invoices wait until it passes their barrier.

* ``StoreBoard``: in the usage store (``abaxus.intake_offsets`` and ``abaxus.sink_inflight``),
  for Kafka workers on other machines.
* ``SharedBoard``: a small memory-mapped file in the data directory, for the intake
  processes of one embedded server, which share its disk. Each record in the usage store
  was a MergeTree insert (~25 ms here, three per sink write: most of the sink's time at
  full load); here it is a memory write. The file also outlives the owner, so a restart
  resumes each partition from it.
"""

from __future__ import annotations

import fcntl
import os
import struct
from pathlib import Path

from abaxus.pipeline.shared_map import map_fd, read_consistently, write_consistently
from abaxus.store.usage import UsageStore

__all__ = ["MAX_PARTITIONS", "ProgressBoard", "SharedBoard", "StoreBoard"]

MAX_PARTITIONS = 256


class ProgressBoard:
    """Stored offsets by partition, and the start of the insert in flight (0: none)."""

    def stored_offsets(self) -> dict[int, int]:
        raise NotImplementedError

    def record_offsets(self, next_offsets: dict[int, int], at_ms: int) -> None:
        raise NotImplementedError

    def mark_inflight(self, worker: str, since_ms: int) -> None:
        raise NotImplementedError

    def inflight_since(self, newer_than_ms: int) -> list[int]:
        """The start stamps of inserts in flight (of workers heard from after ``newer_than_ms``)."""
        raise NotImplementedError

    def voids_version(self) -> int | None:
        """Changes whenever a pending void is registered; None: unknown, read the voids before every insert."""
        return None

    def voids_registered(self) -> None:
        """A process registered pending voids in the usage store (the sink reads them again)."""

    def request_flush(self) -> None:
        """A request waits for the store: the sink should write what it holds back now."""

    def flush_requests(self) -> int:
        """Changes whenever a flush is requested (0 where requests cannot be seen)."""
        return 0


class StoreBoard(ProgressBoard):
    """The record in the usage store, under ``topic`` (the Kafka topic)."""

    def __init__(self, usage: UsageStore, topic: str) -> None:
        self.usage, self.topic = usage, topic

    def stored_offsets(self) -> dict[int, int]:
        return self.usage.stored_offsets(self.topic)

    def record_offsets(self, next_offsets: dict[int, int], at_ms: int) -> None:
        self.usage.record_offsets(self.topic, next_offsets, at_ms)

    def mark_inflight(self, worker: str, since_ms: int) -> None:
        self.usage.mark_inflight(worker, since_ms)

    def inflight_since(self, newer_than_ms: int) -> list[int]:
        return self.usage.inflight_since(newer_than_ms)


# sequence (odd while the sink writes), insert in flight since, voids version, flush requests
_HEAD = struct.Struct("<QqQQ")
_SEQ, _INFLIGHT, _COUNTER = struct.Struct("<Q"), struct.Struct("<q"), struct.Struct("<Q")
_VOIDS_AT, _FLUSH_AT = 16, 24
_OFFSETS = struct.Struct(f"<{MAX_PARTITIONS}Q")


class SharedBoard(ProgressBoard):
    """The record in a memory-mapped file: one writer (the owner's sink), any number of readers.

    A sequence number, odd while the sink writes, lets a reader take the offsets and the
    in-flight stamp as one consistent pair. The voids version has writers in every process;
    they bump it under the file's lock.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # kept: ``_bump`` locks it
        self._map = map_fd(self._fd, _HEAD.size + _OFFSETS.size)

    def _read(self) -> tuple[int, tuple[int, ...]]:
        return read_consistently(self._map, lambda: (_INFLIGHT.unpack_from(self._map, _SEQ.size)[0],
                                                     _OFFSETS.unpack_from(self._map, _HEAD.size)))

    def _write(self, inflight: int | None = None, next_offsets: dict[int, int] | None = None) -> None:
        offsets = next_offsets or {}
        if any(partition >= MAX_PARTITIONS for partition in offsets):  # before the write: never left half done
            raise ValueError(f"at most {MAX_PARTITIONS} log partitions")

        def write() -> None:
            if inflight is not None:
                _INFLIGHT.pack_into(self._map, _SEQ.size, inflight)
            for partition, offset in offsets.items():
                struct.pack_into("<Q", self._map, _HEAD.size + 8 * partition, offset)

        write_consistently(self._map, write)

    def stored_offsets(self) -> dict[int, int]:
        _, offsets = self._read()
        return {p: o for p, o in enumerate(offsets) if o}

    def record_offsets(self, next_offsets: dict[int, int], at_ms: int) -> None:
        self._write(next_offsets=next_offsets)

    def mark_inflight(self, worker: str, since_ms: int) -> None:
        self._write(inflight=since_ms)

    def inflight_since(self, newer_than_ms: int) -> list[int]:
        inflight, _ = self._read()
        return [inflight] if inflight > 0 else []

    def voids_version(self) -> int:
        return int(_COUNTER.unpack_from(self._map, _VOIDS_AT)[0])

    def voids_registered(self) -> None:
        self._bump(_VOIDS_AT)

    def request_flush(self) -> None:
        self._bump(_FLUSH_AT)

    def flush_requests(self) -> int:
        return int(_COUNTER.unpack_from(self._map, _FLUSH_AT)[0])

    def _bump(self, at: int) -> None:
        """Add one to a counter every process may write (under the file's lock)."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            _COUNTER.pack_into(self._map, at, _COUNTER.unpack_from(self._map, at)[0] + 1)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
