"""First-wins deduplication by idempotency key, for all time (§9).

Three layers, cheapest first: the keys seen recently (two generations, for at least
``ABAXUS_DEDUP_WINDOW`` and at most ``MAX_REMEMBERED_KEYS``); a Bloom filter of every key
ever stored (rebuilt from the store at start); and, only for keys that hit the filter, one
batched lookup in the usage store. A key that passes is new: its first payload is the one
written.

The generations are dicts of key → None rather than sets: CPython stops tracking a dict
that holds only strings, so the cyclic GC never walks the millions of keys a set would make
it visit on every full collection.

The cap is safe: one Bytewax worker runs dedup and then the sink, so a key leaves the cache
only after a million newer keys have passed (a source read is at most 256k events), long
after its own event was written and the Bloom filter plus the store can answer for it.
Bounded generations also keep dict resizes (a pause proportional to the dict) short.

The store is the truth and the generations are its cache, so Bytewax state stays small: a
snapshot holds only the keys accepted since the previous snapshot (one epoch's worth), which recovery
restores as the warm start of the cache. Everything before a snapshot is already stored
(Bytewax writes an epoch's output before it commits the epoch), and events replayed after a
crash are checked against the store, so no key is ever accepted twice. Snapshotting the
whole window instead would pickle every key every epoch while holding the GIL: at 2M keys
that stalled ingestion for hundreds of milliseconds per epoch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from bytewax.operators import StatefulBatchLogic

from abaxus.clock import Clock, SystemClock
from abaxus.pipeline.bloom import BloomFilter
from abaxus.pipeline.records import INTAKE_SCHEMA

__all__ = ["MAX_REMEMBERED_KEYS", "DedupLogic", "DedupResult"]

_EMPTY = pa.RecordBatch.from_pylist([], schema=INTAKE_SCHEMA)  # what a marker record keeps and drops
MAX_REMEMBERED_KEYS = 2_000_000  # older keys are found in the store (one batched lookup per Bloom hit)


class DedupResult:
    """What the dedup step hands the sink for one intake record."""

    __slots__ = ("backfill", "dropped", "kept", "position")

    def __init__(self, kept: pa.RecordBatch, dropped: pa.RecordBatch, position: Any, backfill: bool) -> None:
        self.kept, self.dropped, self.position, self.backfill = kept, dropped, position, backfill


def _not_remembered(keys: list[str], current: dict[str, None], older: dict[str, None], keep: np.ndarray) -> list[int]:
    """Indexes of keys neither remembered nor repeated earlier in ``keys``; the rest are dropped in ``keep``."""
    fresh = set(keys)
    if len(fresh) == len(keys) and current.keys().isdisjoint(fresh) and older.keys().isdisjoint(fresh):
        return list(range(len(keys)))  # the usual batch: no repeats, nothing remembered (C-speed checks)
    unknown = []
    batch_seen: set[str] = set()
    for i, k in enumerate(keys):
        if k in current or k in older or k in batch_seen:
            keep[i] = False
        else:
            batch_seen.add(k)
            unknown.append(i)
    return unknown


class DedupLogic(StatefulBatchLogic[Any, DedupResult, tuple[float, list[str]]]):
    """Stateful batch logic for step ``dedup_by_idempotency_key``."""

    def __init__(self, resume: Any, window_s: int, bloom: BloomFilter,
                 store_lookup: Callable[[list[str]], set[str]], on_duplicates: Callable[[int], None],
                 bloom_lock: threading.Lock | None = None, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.generations: list[dict[str, None]]
        if resume:
            self.rotated, recent = resume
            self.generations = [dict.fromkeys(recent), {}]
        else:
            self.generations = [{}, {}]
            self.rotated = self.clock.now_ms() / 1000
        self.recent: list[str] = []  # accepted since the last snapshot
        self.window_s = window_s
        self.bloom = bloom
        # Several Bytewax workers of one process share the filter (each key has one partition,
        # so no key is checked by two of them; the lock only keeps the filter's arrays whole).
        self.bloom_lock = bloom_lock or threading.Lock()
        self.store_lookup = store_lookup
        self.on_duplicates = on_duplicates

    def _rotate(self) -> None:
        # Two generations of window/2 each: a key is remembered for at least the window,
        # unless memory runs short first (the store still answers for forgotten keys).
        now = self.clock.now_ms() / 1000
        if now - self.rotated > self.window_s / 2 or len(self.generations[0]) > MAX_REMEMBERED_KEYS // 2:
            self.generations = [{}, self.generations[0]]
            self.rotated = now

    def on_batch(self, items: list[Any]) -> tuple[list[DedupResult], bool]:
        """Dedup every record of one activation, with at most one store lookup for all of them.

        A filter hit costs a store query, and at a few per cent of false hits nearly every
        1,000-event record has one: asked record by record, those queries were the sink's
        bottleneck. So the hits of all records are gathered first and looked up together.
        """
        self._rotate()
        current, older = self.generations
        pending: list[tuple[Any, Any, bool, list[str], np.ndarray, list[int]]] = []
        hit_keys: list[str] = []
        for batch, position, backfill in items:
            if batch is None:  # a marker: nothing to dedup, but the sink records its position
                pending.append((_EMPTY, position, backfill, [], np.ones(0, dtype=bool), []))
                continue
            keys = batch.column("idempotency_key").to_pylist()
            keep = np.ones(len(keys), dtype=bool)
            unknown = _not_remembered(keys, current, older, keep)
            if unknown:
                candidates = [keys[i] for i in unknown]
                # Remembered at once, so a later record of this activation sees them (first wins);
                # one that turns out to be stored is a known key all the same.
                current.update(dict.fromkeys(candidates))
                with self.bloom_lock:
                    hits = self.bloom.might_contain(candidates)
                if hits.any():
                    hit_keys.extend(k for k, h in zip(candidates, hits, strict=True) if h)
            pending.append((batch, position, backfill, keys, keep, unknown))
        stored = self.store_lookup(hit_keys) if hit_keys else set()
        out = []
        for batch, position, backfill, keys, keep, unknown in pending:
            if unknown:
                if stored:
                    for i in unknown:
                        if keys[i] in stored:
                            keep[i] = False
                new = [keys[i] for i in unknown if keep[i]]
                self.recent.extend(new)
                with self.bloom_lock:
                    self.bloom.add_many(new)
            mask = pa.array(keep)
            kept = batch if keep.all() else batch.filter(mask)
            dropped = batch.slice(0, 0) if keep.all() else batch.filter(pa.array(~keep))
            if dropped.num_rows:
                self.on_duplicates(dropped.num_rows)
            out.append(DedupResult(kept, dropped, position, backfill))
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> tuple[float, list[str]]:
        """The rotation clock and the keys accepted since the last snapshot (see the module doc)."""
        recent, self.recent = self.recent, []
        return (self.rotated, recent)
