"""First wins, for all time (§9): the dedup step on its own, against an oracle of every key ever kept.

The step's layers (this activation's keys, the remembered generations, the Bloom filter,
the store for the filter's hits) may each answer; whatever answers, a key is kept exactly
once, its first occurrence, and a key the store already holds is never kept again.
"""

from __future__ import annotations

import random

import pyarrow as pa

from abaxus.pipeline.bloom import BloomFilter
from abaxus.pipeline.dedup import DedupLogic
from abaxus.pipeline.records import INTAKE_SCHEMA


def _record(keys: list[str]) -> pa.RecordBatch:
    cols = {f.name: (pa.array(keys, pa.string()) if f.name == "idempotency_key" else pa.nulls(len(keys), f.type))
            for f in INTAKE_SCHEMA}
    return pa.RecordBatch.from_pydict(cols, schema=INTAKE_SCHEMA)


def test_each_key_is_kept_once_whichever_layer_knows_it():
    rng = random.Random(7)
    in_store = {f"old-{i}" for i in range(3000)}  # stored by an earlier run: the filter was rebuilt from them
    bloom = BloomFilter(capacity=1 << 13)  # small: many false hits, so the store is asked often
    bloom.add_many(sorted(in_store))
    asked: list[list[str]] = []

    def lookup(keys: list[str]) -> set[str]:
        asked.append(keys)
        return {k for k in keys if k in in_store}

    logic = DedupLogic(None, 7 * 86400, bloom, lookup, lambda n: None)
    kept_ever: set[str] = set()
    universe = [f"k-{i}" for i in range(6000)] + sorted(in_store)
    for activation in range(30):
        items = []
        for record in range(rng.randint(1, 5)):
            keys = [rng.choice(universe) for _ in range(rng.randint(1, 400))]
            if record and rng.random() < 0.5:  # repeats of an earlier record of the same activation
                keys += items[0][0].column("idempotency_key").to_pylist()[:50]
            items.append((_record(keys), (activation, record), False))
        results, _ = logic.on_batch(items)
        for (batch, _, _), result in zip(items, results, strict=True):
            keys = batch.column("idempotency_key").to_pylist()
            expected = []
            for k in keys:
                if k not in kept_ever and k not in in_store:
                    kept_ever.add(k)
                    expected.append(k)
            assert result.kept.column("idempotency_key").to_pylist() == expected
            assert result.kept.num_rows + result.dropped.num_rows == len(keys)
        in_store |= kept_ever  # the sink stored them: a later run would find them there
    assert asked, "the filter's hits went to the store"
    assert len(kept_ever) > 1000
