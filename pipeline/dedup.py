"""First-wins deduplication by idempotency key, for all time (§9).

Three layers, cheapest first: the keys seen within ``ABAXUS_DEDUP_WINDOW`` (generational
sets held in Bytewax state, restored by recovery); a Bloom filter of every key ever stored
(rebuilt from the store at start); and, only for keys that hit the filter, one batched
lookup in the usage store. A key that passes is new: its first payload is the one written.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import pyarrow as pa
from bytewax.operators import StatefulBatchLogic

from abaxus.pipeline.bloom import BloomFilter

__all__ = ["DedupLogic", "DedupResult"]


class DedupResult:
    """What the dedup step hands the sink for one intake record."""

    __slots__ = ("backfill", "dropped", "kept", "position")

    def __init__(self, kept: pa.RecordBatch, dropped: pa.RecordBatch, position: Any, backfill: bool) -> None:
        self.kept, self.dropped, self.position, self.backfill = kept, dropped, position, backfill


class DedupLogic(StatefulBatchLogic):
    """Stateful batch logic for step ``dedup_by_idempotency_key``."""

    def __init__(self, resume: Any, window_s: int, bloom: BloomFilter,
                 store_lookup: Callable[[list[str]], set[str]], on_duplicates: Callable[[int], None]) -> None:
        if resume:
            self.generations = [set(g) for g in resume[0]]
            self.rotated = resume[1]
        else:
            self.generations = [set(), set()]
            self.rotated = time.time()
        self.window_s = window_s
        self.bloom = bloom
        self.store_lookup = store_lookup
        self.on_duplicates = on_duplicates

    def _rotate(self) -> None:
        # Two generations of window/2 each: a key is remembered for at least the window.
        if time.time() - self.rotated > self.window_s / 2:
            self.generations = [set(), self.generations[0]]
            self.rotated = time.time()

    def on_batch(self, items: list[Any]) -> tuple[list[DedupResult], bool]:
        self._rotate()
        current, older = self.generations
        out = []
        for batch, position, backfill in items:
            keys = batch.column("idempotency_key").to_pylist()
            keep = np.ones(len(keys), dtype=bool)
            unknown: list[int] = []
            batch_seen: set[str] = set()
            for i, k in enumerate(keys):
                if k in current or k in older or k in batch_seen:
                    keep[i] = False
                else:
                    batch_seen.add(k)
                    unknown.append(i)
            if unknown:
                candidates = [keys[i] for i in unknown]
                hits = self.bloom.might_contain(candidates)
                if hits.any():
                    stored = self.store_lookup([k for k, h in zip(candidates, hits) if h])
                    for i in unknown:
                        if keys[i] in stored:
                            keep[i] = False
                new = [keys[i] for i in unknown if keep[i]]
                current.update(new)
                self.bloom.add_many(new)
            mask = pa.array(keep)
            kept = batch if keep.all() else batch.filter(mask)
            dropped = batch.slice(0, 0) if keep.all() else batch.filter(pa.array(~keep))
            if dropped.num_rows:
                self.on_duplicates(dropped.num_rows)
            out.append(DedupResult(kept, dropped, position, backfill))
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> Any:
        return ([frozenset(g) for g in self.generations], self.rotated)
