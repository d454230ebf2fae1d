"""First-wins deduplication by idempotency key, for all time (§9).

Layers, cheapest first, over whole columns: the keys of this activation (a repeat of an
earlier event of the same activation is a duplicate); a Bloom filter of every key ever kept
(rebuilt from the store at start, hashed from the event ids, see ``abaxus.pipeline.bloom``);
and, only for keys that hit the filter, the keys this run kept that the sink has not stored
yet (``Unstored``) and one batched lookup in the usage store. A key that passes is new: its
first payload is the one written.

Why no cache of recent keys. An earlier version remembered every accepted key for the dedup
window in two dicts of up to a million keys each, so a resent key skipped the store lookup.
Inserting into dicts that large was a sixth of the whole dataflow's time (cache misses,
measured with py-spy under load), and it bought little: at a few per cent of false hits nearly
every activation asks the store anyway, and a resent key joins that one lookup. What must be
in memory is only what the store cannot answer yet: keys kept but not yet written. The sink
releases them (``DedupResult.stored``) once its insert returned, so the set is usually just
the activation in flight; no key's answer depends on when Bytewax runs the sink.

State stays empty: everything a crash loses is in the durable log and replays; a replayed key
that was stored is found by the filter (rebuilt from the store) and the store, and one that
was not is new. A snapshot of an older version (rotation time and keys) is ignored on resume.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from bytewax.operators import StatefulBatchLogic

from abaxus.pipeline.bloom import BloomFilter, Hashes, id_hashes, key_hashes
from abaxus.pipeline.records import INTAKE_SCHEMA

__all__ = ["DedupLogic", "DedupResult", "Unstored"]

_EMPTY = pa.RecordBatch.from_pylist([], schema=INTAKE_SCHEMA)  # what a marker record keeps and drops


class Unstored:
    """Keys the dedup step kept whose events the sink has not stored yet, per activation.

    An activation's keys stay an Arrow array until a filter hit must be checked against them;
    then they become a set once. The sink is normally done before the next activation, so
    most are released without ever being looked into.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the sink may run on another thread than the dedup step
        self._next = 0
        self._entries: dict[int, list[Any]] = {}  # token → [results not stored yet, keys array, keys set or None]

    def add(self, keys: pa.Array, results: int) -> int:
        """Hold ``keys`` until ``results`` results carrying the returned token are stored."""
        with self._lock:
            self._next += 1
            self._entries[self._next] = [results, keys, None]
            return self._next

    def stored(self, token: int) -> None:
        """One result of the activation ``token`` is stored: its keys are answered by the store now."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is not None:
                entry[0] -= 1
                if entry[0] <= 0:
                    del self._entries[token]

    def __len__(self) -> int:
        with self._lock:
            return sum(len(entry[1]) for entry in self._entries.values())

    def holding(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` are held (kept, not stored yet)."""
        with self._lock:
            entries = list(self._entries.values())
        found: set[str] = set()
        for entry in entries:
            if entry[2] is None:
                entry[2] = set(entry[1].to_pylist())
            found.update(k for k in keys if k in entry[2])
        return found


class DedupResult:
    """What the dedup step hands the sink for one intake record."""

    __slots__ = ("_token", "_unstored", "backfill", "dropped", "kept", "position")

    def __init__(self, kept: pa.RecordBatch, dropped: pa.RecordBatch, position: Any, backfill: bool,
                 unstored: Unstored | None = None, token: int = 0) -> None:
        self.kept, self.dropped, self.position, self.backfill = kept, dropped, position, backfill
        self._unstored, self._token = unstored, token

    def stored(self) -> None:
        """The sink stored this record's kept events (the store answers for their keys from now on)."""
        if self._unstored is not None:
            self._unstored.stored(self._token)
            self._unstored = None


def _record_hashes(batch: pa.RecordBatch) -> Hashes:
    """The filter's hashes of a record's keys, from its event ids (computed from the keys if one is missing)."""
    try:
        return id_hashes(batch.column("event_id"))
    except ValueError:
        return key_hashes(batch.column("idempotency_key").to_pylist())


def _first_occurrences(keys: pa.Array, h1: np.ndarray) -> np.ndarray:
    """True for each key not seen earlier in ``keys``; ``h1``: their first filter hashes.

    Equal keys have equal hashes, so when no two hashes are equal (one sort of integers, a
    third of the cost of hashing the strings) there is no repeat; otherwise the keys decide.
    """
    n = len(keys)
    ordered = np.sort(h1)
    if (ordered[1:] != ordered[:-1]).all():
        return np.ones(n, dtype=bool)
    seen: set[str] = set()
    first = np.empty(n, dtype=bool)
    for i, key in enumerate(keys.to_pylist()):
        first[i] = key not in seen
        seen.add(key)
    return first


class DedupLogic(StatefulBatchLogic[Any, DedupResult, None]):
    """Stateful batch logic for step ``dedup_by_idempotency_key``."""

    def __init__(self, resume: Any, bloom: BloomFilter, store_lookup: Callable[[list[str]], set[str]],
                 on_duplicates: Callable[[int], None], bloom_lock: threading.Lock | None = None) -> None:
        del resume  # nothing to restore (see the module doc)
        self.bloom = bloom
        # Several Bytewax workers of one process share the filter (each key has one partition,
        # so no key is checked by two of them; the lock only keeps the filter's arrays whole).
        self.bloom_lock = bloom_lock or threading.Lock()
        self.store_lookup = store_lookup
        self.on_duplicates = on_duplicates
        self.unstored = Unstored()

    def on_batch(self, items: list[Any]) -> tuple[list[DedupResult], bool]:
        """Dedup every record of one activation, with at most one store lookup for all of them.

        A filter hit costs a store query, and at a few per cent of false hits nearly every
        1,000-event record has one: asked record by record, those queries were the sink's
        bottleneck. So the hits of all records are gathered first and looked up together.
        """
        batches = [batch for batch, _, _ in items if batch is not None]  # None: a marker, only its position counts
        keep = np.zeros(0, dtype=bool)
        keys = pa.array([], pa.string())
        if batches:
            keys = pa.concat_arrays([b.column("idempotency_key") for b in batches])
            hashes = [_record_hashes(b) for b in batches]
            h1 = np.concatenate([h[0] for h in hashes])
            h2 = np.concatenate([h[1] for h in hashes])
            keep = _first_occurrences(keys, h1)
            with self.bloom_lock:
                maybe = self.bloom.might_contain_hashed((h1, h2))
            hit_index = np.flatnonzero(maybe & keep)
            if len(hit_index):
                hit_keys: list[str] = keys.take(pa.array(hit_index)).to_pylist()
                known = self.unstored.holding(hit_keys)
                asked = [k for k in hit_keys if k not in known]
                known |= self.store_lookup(asked) if asked else set()
                if known:
                    keep[hit_index[[k in known for k in hit_keys]]] = False
            with self.bloom_lock:
                self.bloom.add_hashed((h1[keep], h2[keep]))
        token = self.unstored.add(keys.filter(pa.array(keep)), len(batches)) if keep.any() else 0
        out, start = [], 0
        for batch, position, backfill in items:
            if batch is None:
                out.append(DedupResult(_EMPTY, _EMPTY, position, backfill))
                continue
            mine = keep[start:start + batch.num_rows]
            start += batch.num_rows
            if mine.all():
                kept, dropped = batch, batch.slice(0, 0)
            else:
                kept, dropped = batch.filter(pa.array(mine)), batch.filter(pa.array(~mine))
                self.on_duplicates(dropped.num_rows)
            out.append(DedupResult(kept, dropped, position, backfill, self.unstored if token else None, token))
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> None:
        """Nothing: the store and the durable log hold all a restart needs (see the module doc)."""
