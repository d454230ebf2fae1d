"""First wins, for all time (§9): the dedup step on its own, against an oracle of every key ever kept.

The step's layers (this activation's keys, the Bloom filter, the keys kept but not yet
stored, the store for the filter's hits) may each answer; whatever answers, a key is kept
exactly once, its first occurrence, and a key the store already holds is never kept again,
however late the sink stores what was kept.
"""

from __future__ import annotations

import random

from abaxus.pipeline.bloom import BloomFilter
from abaxus.pipeline.dedup import DedupLogic
from helpers import intake_batch


def test_each_key_is_kept_once_whichever_layer_knows_it():
    rng = random.Random(7)
    in_store = {f"old-{i}" for i in range(3000)}  # stored by an earlier run: the filter was rebuilt from them
    bloom = BloomFilter(capacity=1 << 13)  # small: many false hits, so the store is asked often
    bloom.add_many(sorted(in_store))
    asked: list[list[str]] = []

    def lookup(keys: list[str]) -> set[str]:
        asked.append(keys)
        return {k for k in keys if k in in_store}

    logic = DedupLogic(None, bloom, lookup, lambda n: None)
    kept_ever: set[str] = set()
    universe = [f"k-{i}" for i in range(6000)] + sorted(in_store) + ["é-ü-" + "x" * 250, "ключ-1", "鍵-2"]
    unstored: list[tuple[int, list[tuple[str, object]]]] = []  # (activation to store at, results)
    for activation in range(40):
        items = []
        for record in range(rng.randint(1, 5)):
            keys = [rng.choice(universe) for _ in range(rng.randint(1, 400))]
            if record and rng.random() < 0.5:  # repeats of an earlier record of the same activation
                keys += items[0][0].column("idempotency_key").to_pylist()[:50]
            items.append((intake_batch(keys, with_ids=rng.random() < 0.8), (activation, record), False))
            if rng.random() < 0.2:
                items.append((None, (activation, record, "marker"), False))
        results, _ = logic.on_batch(items)
        for (batch, _, _), result in zip(items, results, strict=True):
            if batch is None:
                assert result.kept.num_rows == result.dropped.num_rows == 0
                continue
            keys = batch.column("idempotency_key").to_pylist()
            expected = []
            for k in keys:
                if k not in kept_ever and k not in in_store:
                    kept_ever.add(k)
                    expected.append(k)
            assert result.kept.column("idempotency_key").to_pylist() == expected
            assert result.kept.num_rows + result.dropped.num_rows == len(keys)
        # The sink stores this activation's events now or up to three activations later;
        # until then only the step itself knows the keys.
        unstored.append((activation + rng.choice([0, 0, 1, 3]), [(k, r) for r in results
                                                                 for k in r.kept.column("idempotency_key").to_pylist()]))
        for _, kept in [u for u in unstored if u[0] <= activation]:
            in_store |= {k for k, _ in kept}
            for r in {id(r): r for _, r in kept}.values():
                r.stored()
        unstored = [u for u in unstored if u[0] > activation]
    assert asked, "the filter's hits went to the store"
    assert len(kept_ever) > 1000


def test_kept_keys_are_held_until_every_result_of_their_activation_is_stored():
    logic = DedupLogic(None, BloomFilter(capacity=1 << 13), lambda keys: set(), lambda n: None)
    results, _ = logic.on_batch([(intake_batch(["a", "b"]), 1, False), (None, 2, False), (intake_batch(["c"]), 3, False)])
    assert len(logic.unstored) == 3
    results[0].stored()
    assert logic.unstored.holding(["a", "c", "z"]) == {"a", "c"}
    results[1].stored()  # a marker holds nothing
    results[2].stored()
    assert len(logic.unstored) == 0
    again, _ = logic.on_batch([(intake_batch(["a"]), 4, False)])  # stored now: the (empty) store answers, so it is new
    assert again[0].kept.num_rows == 1
