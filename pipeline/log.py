"""The durable intake: an append-only segmented log on disk, fsync'd with group commit.

A ``202`` is answered only after the request's record is whole on disk. Concurrent appends
that arrive while a flush runs are written and fsync'd together by the next flush, so many
requests share one fsync. While the disk is quick the flush runs on the event loop itself
(a thread handoff cost more CPU than the write); a slow write sends the next ones to a
worker thread, where the loop goes on taking requests for the group after. Records are
framed ``[u32 length][u32 crc32][payload]``.

Failure rules (a full disk taught them):

* every write goes to an explicit offset (``pwrite``) and is looped until all its bytes are
  written: Linux answers a write on a nearly full disk with a *short* count, not an error;
* a write or fsync that fails makes the whole group fail (nobody gets a 202), and the file
  is cut back to the last whole record before anything else is written, so bytes of a
  refused request can never be read back as an event after a restart;
* the log keeps trying: the next append, or a readiness probe that finds free space again,
  brings it back without a restart.

Positions are ``(segment, byte offset)``; readers never see past the durable end. A torn
tail left by a crash (never acknowledged) is cut off when the log is reopened.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import struct
import threading
import time
import zlib
from pathlib import Path

from abaxus.logging import get_logger
from abaxus.pipeline.shared_map import map_file, read_consistently, write_consistently

__all__ = [
    "LOG_TOPIC",
    "DurableMark",
    "IntakeLog",
    "LogInUse",
    "LogReader",
    "LogWriteError",
    "PeerLog",
    "Position",
    "decode_position",
    "encode_position",
    "read_durable_mark",
]

Position = tuple[int, int]
_HEADER = struct.Struct("<II")
SEGMENT_BYTES = 256 * 1024 * 1024
# Below this much free space the readiness probe keeps reporting the queue down.
MIN_FREE_BYTES = 8 * 1024 * 1024
# A group is written and fsync'd on the event loop itself while writes take less than this
# (a handoff to a worker thread and back cost ~0.1–0.2 ms of CPU on the 2-core machine,
# more than the write); once they take longer (a slow or busy disk), on a worker thread,
# so the loop keeps taking requests, which then share the next fsync.
INLINE_WRITE_S = 0.002

log = get_logger("abaxus.intake_log")


# The name the log partitions' stored offsets go by in abaxus.intake_offsets; '~' is not a
# legal Kafka topic character, so it can never be a topic's.
LOG_TOPIC = "~intake-log"
_OFFSET_BITS = 40  # a segment is at most 1 TiB: (segment, byte) packs into one growing integer


def encode_position(position: Position) -> int:
    """A log position as one integer that grows with the log (what ``intake_offsets`` holds)."""
    return (position[0] << _OFFSET_BITS) | position[1]


def decode_position(value: int) -> Position:
    return (value >> _OFFSET_BITS, value & ((1 << _OFFSET_BITS) - 1))


class LogWriteError(OSError):
    """A group of records could not be made durable; none of them was acknowledged."""


class LogInUse(RuntimeError):
    """Another process writes this log (each partition has exactly one writer)."""


_MARK = struct.Struct("<QQQ")  # sequence, segment, offset
_SEQ = struct.Struct("<Q")
_POSITION = struct.Struct("<QQ")


class DurableMark:
    """A log's durable end, shared with other processes through a memory-mapped file.

    The writer publishes after every fsync and before any append of that group is answered,
    so a reader that sees position P knows every record before P is acknowledged-or-durable,
    and never reads past what is durable. A sequence number (odd while writing) lets readers
    skip a half-written value; the value lives only while processes run: a reopened log
    publishes its (checked) length again.
    """

    def __init__(self, path: Path) -> None:
        self._map = map_file(path, _MARK.size)

    def publish(self, position: Position) -> None:
        write_consistently(self._map, lambda: _POSITION.pack_into(self._map, _SEQ.size, *position))

    def read(self) -> Position:
        segment, offset = read_consistently(self._map, lambda: _POSITION.unpack_from(self._map, _SEQ.size))
        return (segment, offset)

    def close(self) -> None:
        self._map.close()


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
        if length == 0 or end > len(data) or zlib.crc32(data[good + _HEADER.size:end]) != crc:
            break
        good = end
    return good


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_fully(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """Write every byte of ``data`` at ``offset``, looping on short writes.

    A count of 0 for a non-empty buffer means the device took nothing: reported as ENOSPC,
    the only way Linux says it for a file that cannot grow.
    """
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, "the device accepted no bytes")
        view = view[written:]
        offset += written


class IntakeLog:
    """Appends records durably; ``await append(payload)`` returns once it is fsync'd."""

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES, *, shared: bool = False) -> None:
        """``shared``: other processes read this log (a partition of several): take the writer's
        lock (``LogInUse`` if another process holds it) and publish the durable end (``durable.mark``)."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._writer_lock: int | None = None
        if shared:
            self._writer_lock = os.open(directory / "writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self._writer_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._writer_lock)
                raise LogInUse(f"another process writes the intake log in {directory}") from None
        segments = _segments(directory) or [0]
        self._segment = segments[-1]
        path = _segment_path(directory, self._segment)
        path.touch()
        valid = _valid_length(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        if valid != path.stat().st_size:  # torn tail from a crash: never acknowledged
            os.ftruncate(self._fd, valid)
            os.fsync(self._fd)
        self._durable: Position = (self._segment, valid)
        self._mark = DurableMark(directory / "durable.mark") if shared else None
        if self._mark is not None:
            self._mark.publish(self._durable)
        self._pending: list[tuple[bytes, asyncio.Future[Position]]] = []
        self._flushing = False
        self._flush_task: asyncio.Task[None] | None = None
        self._write_seconds = INLINE_WRITE_S  # a running mean of how long a group's write and fsync take
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._closed = False
        # Set while the last write failed: what went wrong, for /readyz and the logs.
        self.problem: str | None = None
        # True while bytes past the durable end may sit in the file (a cut-back failed).
        self._dirty_tail = False

    @property
    def durable_position(self) -> Position:
        return self._durable

    def healthy(self) -> bool:
        """Whether an append can be expected to succeed; probes the disk after a failure."""
        if self._closed:
            return False
        if self.problem is None:
            return True
        with self._lock:
            if self._dirty_tail and not self._cut_back():
                return False
            try:
                st = os.statvfs(self.directory)
            except OSError:
                return False
            if st.f_bavail * st.f_frsize >= MIN_FREE_BYTES:
                log.info("intake_log_recovered", after=self.problem)
                self.problem = None
                return True
        return False

    async def append(self, payload: bytes) -> Position:
        """Write one record; returns the position after it once it is durable.

        Raises ``LogWriteError`` when the record could not be made durable; then nothing
        of it is in the log.
        """
        if self._closed:
            raise LogWriteError(errno.EBADF, "intake log is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Position] = loop.create_future()
        self._pending.append((payload, future))
        if not self._flushing:
            self._flushing = True
            self._flush_task = loop.create_task(self._flush_loop())
            self._flush_task.add_done_callback(self._flush_ended)
        return await future

    async def _flush_loop(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending, []
                try:
                    positions = await self._write_timed([p for p, _ in group])
                except Exception as exc:  # noqa: BLE001 - disk full, I/O error: nobody in the group gets a 202
                    error = exc if isinstance(exc, LogWriteError) else LogWriteError(errno.EIO, str(exc))
                    for _, fut in group:
                        if not fut.done():
                            fut.set_exception(error)
                    continue
                for (_, fut), pos in zip(group, positions, strict=True):
                    if not fut.done():
                        fut.set_result(pos)
        finally:
            self._flushing = False

    async def _write_timed(self, payloads: list[bytes]) -> list[Position]:
        """``_write_group`` on the loop while writes are quick (see ``INLINE_WRITE_S``), else on a worker thread."""
        inline = self._write_seconds < INLINE_WRITE_S
        started = time.perf_counter()
        try:
            return self._write_group(payloads) if inline else await asyncio.to_thread(self._write_group, payloads)
        finally:
            # A running mean (the newest group weighs 0.2): one write the scheduler held up on a busy machine
            # does not send the next ones to a thread; a disk slow for several groups does.
            self._write_seconds = 0.8 * self._write_seconds + 0.2 * (time.perf_counter() - started)

    def _flush_ended(self, task: asyncio.Task[None]) -> None:
        """Say so when a flush ends other than by emptying the queue: the appends it held never
        get an answer (their records may or may not be durable), and nothing else would tell."""
        if task.cancelled():
            log.warning("intake_log_flush_cancelled", durable=list(self._durable))
        elif (exc := task.exception()) is not None:
            log.error("intake_log_flush_crashed", error=repr(exc), durable=list(self._durable), exc_info=exc)

    def _write_group(self, payloads: list[bytes]) -> list[Position]:
        with self._lock:
            if self._closed:
                raise LogWriteError(errno.EBADF, "intake log is closed")
            if self._dirty_tail and not self._cut_back():
                raise LogWriteError(errno.EIO, f"intake log cannot cut back a failed write: {self.problem}")
            if self._durable[1] >= self.segment_bytes:
                self._roll()
            start = self._durable[1]
            buf = bytearray()
            positions = []
            for payload in payloads:
                buf += _HEADER.pack(len(payload), zlib.crc32(payload))
                buf += payload
                positions.append((self._segment, start + len(buf)))
            try:
                write_fully(self._fd, buf, start)
                os.fsync(self._fd)
            except OSError as exc:
                self._failed(exc)
                raise LogWriteError(exc.errno or errno.EIO, f"intake log write failed: {exc}") from exc
            self._durable = (self._segment, start + len(buf))
            if self._mark is not None:  # before any of the group is answered (see DurableMark)
                self._mark.publish(self._durable)
            if self.problem is not None:
                log.info("intake_log_recovered", after=self.problem)
                self.problem = None
        with self._changed:
            self._changed.notify_all()
        return positions

    def _failed(self, exc: OSError) -> None:
        """Record the failure and cut the file back to the last whole, acknowledged record."""
        reason = errno.errorcode.get(exc.errno or 0, "EIO")
        self.problem = f"{reason}: {exc.strerror or exc} in {self.directory}"
        log.error("intake_log_write_failed", problem=self.problem, durable=list(self._durable))
        self._dirty_tail = True
        self._cut_back()

    def _cut_back(self) -> bool:
        """Truncate to the durable end and fsync; True once the file holds nothing else."""
        try:
            os.ftruncate(self._fd, self._durable[1])
            os.fsync(self._fd)
        except OSError as exc:
            log.error("intake_log_cut_back_failed", error=str(exc))
            return False
        self._dirty_tail = False
        return True

    def _roll(self) -> None:
        """Start the next segment; on failure nothing changes and the group is refused."""
        nxt = self._segment + 1
        path = _segment_path(self.directory, nxt)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                _fsync_dir(self.directory)
            except OSError:
                os.close(fd)
                raise
        except OSError as exc:
            path.unlink(missing_ok=True)
            self.problem = f"{errno.errorcode.get(exc.errno or 0, 'EIO')}: cannot start segment {path.name}: {exc}"
            raise LogWriteError(exc.errno or errno.EIO, self.problem) from exc
        os.close(self._fd)
        self._fd, self._segment = fd, nxt
        self._durable = (nxt, 0)

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
            os.close(self._fd)
            if self._mark is not None:
                self._mark.close()
            if self._writer_lock is not None:
                os.close(self._writer_lock)  # releases the writer's lock

    def delete_before(self, segment: int) -> None:
        """Drop whole segments the dataflow has committed past."""
        for index in _segments(self.directory):
            if index < segment:
                _segment_path(self.directory, index).unlink(missing_ok=True)

    def backlog_bytes(self, done: Position) -> int:
        """Bytes durable in the log past ``done`` (what the dataflow has still to store)."""
        seg, off = self._durable
        if done[0] == seg:
            return max(0, off - done[1])
        total = off
        for index in range(done[0], seg):
            try:
                size = _segment_path(self.directory, index).stat().st_size
            except FileNotFoundError:
                continue
            total += size - (done[1] if index == done[0] else 0)
        return max(0, total)


class PeerLog:
    """Another process's log partition, as its reader (the chDB owner) sees it: read-only.

    The durable end comes from the writer's ``DurableMark``; segments the usage store holds
    are deleted here, as for the reader's own log.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._mark = DurableMark(directory / "durable.mark")

    @property
    def durable_position(self) -> Position:
        return self._mark.read()

    def delete_before(self, segment: int) -> None:
        """Drop whole segments the dataflow has committed past (never the writer's current one)."""
        for index in _segments(self.directory):
            if index < min(segment, self.durable_position[0]):
                _segment_path(self.directory, index).unlink(missing_ok=True)

    def close(self) -> None:
        self._mark.close()


def read_durable_mark(directory: Path) -> Position:
    """The durable end a partition's writer last published ((0, 0) before it ever wrote)."""
    path = directory / "durable.mark"
    if not path.exists():
        return (0, 0)
    mark = DurableMark(path)
    try:
        return mark.read()
    finally:
        mark.close()


class LogReader:
    """Reads whole records from a position up to the log's durable end."""

    def __init__(self, log: IntakeLog | PeerLog) -> None:
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
