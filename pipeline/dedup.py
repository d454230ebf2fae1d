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
from abaxus.pipeline.bloom import BloomFilter, Hashes, key_hashes
from abaxus.pipeline.records import INTAKE_SCHEMA

__all__ = ["MAX_REMEMBERED_KEYS", "DedupLogic", "DedupResult"]

_EMPTY = pa.RecordBatch.from_pylist([], schema=INTAKE_SCHEMA)  # what a marker record keeps and drops
MAX_REMEMBERED_KEYS = 2_000_000  # older keys are found in the store (one batched lookup per Bloom hit)


class DedupResult:
    """What the dedup step hands the sink for one intake record."""

    __slots__ = ("backfill", "dropped", "kept", "position")

    def __init__(self, kept: pa.RecordBatch, dropped: pa.RecordBatch, position: Any, backfill: bool) -> None:
        self.kept, self.dropped, self.position, self.backfill = kept, dropped, position, backfill


def _not_remembered(keys: list[str], maybe: np.ndarray, current: dict[str, None], older: dict[str, None],
                    added_now: set[str], keep: np.ndarray) -> tuple[list[int], list[int]]:
    """Indexes of keys neither remembered nor repeated earlier, and those of them the filter hits; ``keep`` drops the rest.

    Every remembered key is in the Bloom filter or was accepted earlier in this activation
    (``added_now``: the filter takes those at its end), so only the filter's hits need a
    look into the big generations, and the rest a look into this activation's keys.
    """
    fresh = set(keys)
    if len(fresh) == len(keys) and added_now.isdisjoint(fresh):  # the usual batch: no repeats
        hit_idx = np.flatnonzero(maybe).tolist()
        hits = []
        for i in hit_idx:
            k = keys[i]
            if k in current or k in older:
                keep[i] = False
            else:
                hits.append(i)
        unknown = list(range(len(keys))) if len(hits) == len(hit_idx) else np.flatnonzero(keep).tolist()
        return unknown, hits
    unknown, hits = [], []
    batch_seen: set[str] = set()
    for i, (k, hit) in enumerate(zip(keys, maybe.tolist(), strict=True)):
        if k in batch_seen or k in added_now or (hit and (k in current or k in older)):
            keep[i] = False
        else:
            batch_seen.add(k)
            unknown.append(i)
            if hit:
                hits.append(i)
    return unknown, hits


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
        pending: list[tuple[Any, Any, bool, list[str], np.ndarray, list[int], Hashes | None]] = []
        hit_keys: list[str] = []
        added_now: set[str] = set()
        for batch, position, backfill in items:
            if batch is None:  # a marker: nothing to dedup, but the sink records its position
                pending.append((_EMPTY, position, backfill, [], np.ones(0, dtype=bool), [], None))
                continue
            keys = batch.column("idempotency_key").to_pylist()
            keep = np.ones(len(keys), dtype=bool)
            hashes = key_hashes(keys)  # once: the filter is asked with them now and takes the new keys later
            with self.bloom_lock:
                maybe = self.bloom.might_contain_hashed(hashes)
            unknown, hits = _not_remembered(keys, maybe, current, older, added_now, keep)
            if unknown:
                candidates = [keys[i] for i in unknown]
                # Remembered at once, so a later record of this activation sees them (first wins);
                # one that turns out to be stored is a known key all the same.
                current.update(dict.fromkeys(candidates))
                added_now.update(candidates)
                hit_keys.extend(keys[i] for i in hits)
            pending.append((batch, position, backfill, keys, keep, unknown, hashes))
        stored = self.store_lookup(hit_keys) if hit_keys else set()
        out = []
        for batch, position, backfill, keys, keep, unknown, record_hashes in pending:
            if unknown:
                if stored:
                    for i in unknown:
                        if keys[i] in stored:
                            keep[i] = False
                new_idx = [i for i in unknown if keep[i]] if stored else unknown
                self.recent.extend(keys[i] for i in new_idx)
                if record_hashes is not None and new_idx:
                    index = np.asarray(new_idx, dtype=np.intp)
                    with self.bloom_lock:
                        self.bloom.add_hashed((record_hashes[0][index], record_hashes[1][index]))
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
