"""Identifiers: prefixed ULIDs for server objects, content-derived ids for events."""

from __future__ import annotations

import base64
import hashlib
import importlib
import re
from collections.abc import Callable, Sequence
from operator import methodcaller
from typing import Any

import numpy as np
import pyarrow as pa
from ulid import ULID

__all__ = ["BASE32_DIGITS", "CLIENT_ID_RE", "EVENT_ID_LENGTH", "KEY_RE", "event_id_array", "event_id_for", "event_ids_for",
           "new_id"]

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
KEY_RE = re.compile(r"^[a-z0-9_]{1,64}$")


def new_id(prefix: str) -> str:
    """A server id such as ``met_01kn9946m0dbm0qdavzedy57he`` (spec §1: lowercase Crockford ULID).

    ``python-ulid``'s generator leads with the millisecond and, within one millisecond of this
    process, increments the random part, so ids sort by creation time.
    """
    return f"{prefix}_{str(ULID()).lower()}"


def event_id_for(idempotency_key: str) -> str:
    """``evt_`` + first 26 chars of base32(SHA-256(key)): a replay gets the same id with no lookup."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).digest()
    return "evt_" + base64.b32encode(digest).decode("ascii").lower()[:26]


def _small_input_sha256() -> Callable[[bytes], Any]:
    """CPython's own SHA-256 (HACL*), if this build has it: for 10–255-byte keys it is ~1.5×
    OpenSSL's, whose per-call setup dominates inputs this small. Checked against hashlib."""
    for name in ("_sha2", "_sha256"):  # 3.12 renamed the module
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        fn: Callable[[bytes], Any] = module.sha256
        if fn(b"abaxus").digest() == hashlib.sha256(b"abaxus").digest():
            return fn
    return hashlib.sha256


_sha256 = _small_input_sha256()
BASE32_DIGITS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)  # lowercase RFC 4648
_PREFIX = np.frombuffer(b"evt_", dtype=np.uint8)
EVENT_ID_LENGTH = 30  # "evt_" and 26 base32 characters, all ASCII
_FIVE_BITS = np.uint64(31)
_SHIFTS_HI = np.arange(59, -1, -5, dtype=np.uint64)[:12]  # characters 0-11: bits 0-59 of word 0
_SHIFTS_LO = np.arange(58, -1, -5, dtype=np.uint64)[:12]  # characters 13-24: bits 65-124, in word 1
_digest = methodcaller("digest")


def event_id_array(keys: Sequence[str]) -> pa.StringArray:
    """``event_id_for`` over a batch, as the Arrow column the intake stores.

    The stdlib has no batch SHA-256 (hashing stays one C call per key, ~0.4 µs, the floor
    here) and its base32 costs ~10 µs a key, so the 26 characters are cut from the digests
    in numpy at once: they are the first 130 bits, 5 at a time; bits 0–63 come from the
    first big-endian word, 64–127 from the second, 128–129 from the top of the third. The ids
    are written straight into Arrow's buffers: no Python string per id is made here.
    """
    n = len(keys)
    words = np.frombuffer(b"".join(map(_digest, map(_sha256, map(str.encode, keys)))), dtype=">u8").reshape(n, 4)
    hi, lo, tail = (words[:, i].astype(np.uint64) for i in range(3))
    chars = np.empty((n, 26), dtype=np.uint64)
    chars[:, :12] = (hi[:, None] >> _SHIFTS_HI) & _FIVE_BITS
    chars[:, 12] = ((hi & np.uint64(15)) << np.uint64(1)) | (lo >> np.uint64(63))
    chars[:, 13:25] = (lo[:, None] >> _SHIFTS_LO) & _FIVE_BITS
    chars[:, 25] = ((lo & np.uint64(7)) << np.uint64(2)) | (tail >> np.uint64(62))
    text = np.empty((n, EVENT_ID_LENGTH), dtype=np.uint8)
    text[:, :4] = _PREFIX
    text[:, 4:] = BASE32_DIGITS[chars]
    offsets = np.arange(0, EVENT_ID_LENGTH * n + 1, EVENT_ID_LENGTH, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))


def event_ids_for(keys: Sequence[str]) -> list[str]:
    """``event_id_for`` over a batch, vectorised (see ``event_id_array``)."""
    return event_id_array(keys).to_pylist()  # type: ignore[no-any-return]  # pyarrow ships no types
