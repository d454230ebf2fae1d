"""The durable intake: an append-only segmented log on disk, fsync'd with group commit.

A ``202`` is answered only after the request's record is on disk. Concurrent appends that
arrive while a flush runs are written and fsync'd together by the next flush, so many
requests share one fsync. Records are framed ``[u32 length][u32 crc32][payload]``; a torn
tail left by a crash (never acknowledged) is cut off when the log is reopened.

Positions are ``(segment, byte offset)``; readers never see past the durable end.
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import zlib
from pathlib import Path

__all__ = ["IntakeLog", "LogReader", "Position"]

Position = tuple[int, int]
_HEADER = struct.Struct("<II")
SEGMENT_BYTES = 256 * 1024 * 1024


def _segment_path(directory: Path, index: int) -> Path:
    return directory / f"{index:010d}.seg"


def _segments(directory: Path) -> list[int]:
    return sorted(int(p.stem) for p in directory.glob("*.seg"))


def _valid_length(path: Path) -> int:
    """Bytes of whole, checksummed records at the start of a segment."""
    good = 0
    with path.open("rb") as f:
        data = f.read()
    while good + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, good)
        end = good + _HEADER.size + length
        if end > len(data) or zlib.crc32(data[good + _HEADER.size:end]) != crc:
            break
        good = end
    return good


class IntakeLog:
    """Appends records durably; ``await append(payload)`` returns once it is fsync'd."""

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        segments = _segments(directory) or [0]
        self._segment = segments[-1]
        path = _segment_path(directory, self._segment)
        path.touch()
        valid = _valid_length(path)
        if valid != path.stat().st_size:  # torn tail from a crash: never acknowledged
            with path.open("r+b") as f:
                f.truncate(valid)
                os.fsync(f.fileno())
        self._file = path.open("ab", buffering=0)
        self._durable: Position = (self._segment, valid)
        self._pending: list[tuple[bytes, asyncio.Future[Position]]] = []
        self._flushing = False
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._closed = False
        self.healthy_flag = True

    @property
    def durable_position(self) -> Position:
        return self._durable

    def healthy(self) -> bool:
        return self.healthy_flag and not self._closed

    async def append(self, payload: bytes) -> Position:
        """Write one record; returns the position after it once it is durable."""
        if self._closed:
            raise RuntimeError("intake log is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Position] = loop.create_future()
        self._pending.append((payload, future))
        if not self._flushing:
            self._flushing = True
            loop.create_task(self._flush_loop())
        return await future

    async def _flush_loop(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending, []
                try:
                    positions = await asyncio.to_thread(self._write_group, [p for p, _ in group])
                except Exception as exc:  # disk full, I/O error: nobody gets a 202
                    self.healthy_flag = False
                    for _, fut in group:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, fut), pos in zip(group, positions):
                    if not fut.done():
                        fut.set_result(pos)
        finally:
            self._flushing = False

    def _write_group(self, payloads: list[bytes]) -> list[Position]:
        with self._lock:
            positions = []
            offset = self._durable[1]
            buf = bytearray()
            for payload in payloads:
                if offset + len(buf) > self.segment_bytes and offset + len(buf) > 0:
                    self._write_and_sync(buf)
                    buf = bytearray()
                    self._roll()
                    offset = 0
                buf += _HEADER.pack(len(payload), zlib.crc32(payload))
                buf += payload
                positions.append((self._segment, offset + len(buf)))
            self._write_and_sync(buf)
            self._durable = (self._segment, offset + len(buf))
        with self._changed:
            self._changed.notify_all()
        return positions

    def _write_and_sync(self, buf: bytes | bytearray) -> None:
        if buf:
            self._file.write(buf)
            os.fsync(self._file.fileno())

    def _roll(self) -> None:
        self._file.close()
        self._segment += 1
        self._file = _segment_path(self.directory, self._segment).open("ab", buffering=0)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._durable = (self._segment, 0)

    def wait_for_data(self, position: Position, timeout: float) -> None:
        """Block a reader until the log has grown past ``position`` (or the timeout)."""
        with self._changed:
            if self._durable == position and not self._closed:
                self._changed.wait(timeout)

    def close(self) -> None:
        self._closed = True
        with self._changed:
            self._changed.notify_all()
        with self._lock:
            self._file.close()

    def delete_before(self, segment: int) -> None:
        """Drop whole segments the dataflow has committed past."""
        for index in _segments(self.directory):
            if index < segment:
                _segment_path(self.directory, index).unlink(missing_ok=True)


class LogReader:
    """Reads whole records from a position up to the log's durable end."""

    def __init__(self, log: IntakeLog) -> None:
        self.log = log

    def read(self, position: Position, max_records: int = 64) -> tuple[list[tuple[bytes, Position]], Position]:
        records: list[tuple[bytes, Position]] = []
        segment, offset = position
        durable = self.log.durable_position
        while len(records) < max_records and (segment, offset) < durable:
            path = _segment_path(self.log.directory, segment)
            limit = durable[1] if segment == durable[0] else path.stat().st_size
            if offset >= limit:
                segment, offset = segment + 1, 0
                continue
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read(min(limit - offset, 64 * 1024 * 1024))
            pos = 0
            while len(records) < max_records and pos + _HEADER.size <= len(data):
                length, crc = _HEADER.unpack_from(data, pos)
                end = pos + _HEADER.size + length
                if end > len(data):
                    break
                payload = data[pos + _HEADER.size:end]
                if zlib.crc32(payload) != crc:
                    raise RuntimeError(f"corrupt record in {path} at byte {offset + pos}")
                pos = end
                records.append((payload, (segment, offset + pos)))
            offset += pos
            if pos == 0:
                break
        return records, (segment, offset)
