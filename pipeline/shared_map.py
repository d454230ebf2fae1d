"""Small memory-mapped files that processes of one embedded server share, and their sequence lock.

A log's durable end (``log.DurableMark``), the progress board (``progress_board.SharedBoard``),
the owner's health report (``owner_report.OwnerReport``) and the intake processes' connection
counts are each a few bytes every process maps. A value of more than one word is written
under a sequence number, odd while the writer is at it, so a reader takes it whole or tries
again; each such file has one writer.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, overload

__all__ = ["map_fd", "map_file", "read_consistently", "write_consistently"]

T = TypeVar("T")
_SEQ = struct.Struct("<Q")  # at offset 0 of every file that uses the lock


def map_fd(fd: int, size: int) -> mmap.mmap:
    """Map the first ``size`` bytes of the open file ``fd``, growing it (with zeros) to that size first."""
    if os.fstat(fd).st_size < size:
        os.ftruncate(fd, size)
    return mmap.mmap(fd, size)


def map_file(path: Path, size: int, mode: int = 0o644) -> mmap.mmap:
    """Map ``path`` (created with ``mode`` if absent) at ``size`` bytes; the descriptor is not kept."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        return map_fd(fd, size)
    finally:
        os.close(fd)


def write_consistently(shared: mmap.mmap, write: Callable[[], None]) -> None:
    """Run ``write`` (which fills the bytes after the sequence number) with the sequence odd."""
    seq = _SEQ.unpack_from(shared, 0)[0] | 1  # odd: a reader arriving now tries again
    _SEQ.pack_into(shared, 0, seq)
    write()
    _SEQ.pack_into(shared, 0, seq + 1)


@overload
def read_consistently(shared: mmap.mmap, read: Callable[[], T]) -> T: ...
@overload
def read_consistently(shared: mmap.mmap, read: Callable[[], T], tries: int) -> T | None: ...
def read_consistently(shared: mmap.mmap, read: Callable[[], T], tries: int | None = None) -> T | None:
    """``read()`` taken while no write was under way; None after ``tries`` attempts (None: until then)."""
    attempt = 0
    while tries is None or attempt < tries:
        attempt += 1
        seq = _SEQ.unpack_from(shared, 0)[0]
        if seq & 1:
            continue
        value = read()
        if _SEQ.unpack_from(shared, 0)[0] == seq:
            return value
    return None
