"""The dedup filter keeps answering "certainly new" for fresh keys however many are stored."""

from __future__ import annotations

from abaxus.pipeline.bloom import BloomFilter


def test_a_filter_past_its_first_capacity_grows_and_keeps_false_hits_low():
    bloom = BloomFilter(capacity=10_000)
    stored = [f"stored-{i}" for i in range(200_000)]  # 20 times what the first layer was sized for
    for start in range(0, len(stored), 1_000):
        bloom.add_many(stored[start:start + 1_000])
    assert bloom.count == 200_000
    assert len(bloom.layers) > 1
    assert bloom.might_contain(stored).all(), "a stored key was reported new: a duplicate would be counted"
    fresh = [f"fresh-{i}" for i in range(100_000)]
    false_hits = float(bloom.might_contain(fresh).mean())
    assert false_hits < 0.01, f"{false_hits:.1%} of fresh keys would need a store lookup"
    held = sum(layer.array.nbytes for layer in bloom.layers)
    # 2 bytes a key at capacity; layers doubling, rounded up to powers of two, the newest part full: ~5
    assert held <= 8 * bloom.count, f"{held / bloom.count:.1f} bytes a key"


def test_keys_sharing_a_word_keep_all_their_bits():
    bloom = BloomFilter(capacity=1 << 13)  # 2,048 words: 20,000 keys in one add share words many times over
    keys = [f"crowded-{i}" for i in range(20_000)]
    bloom.add_many(keys)
    assert bloom.might_contain(keys).all()


def test_an_empty_query_and_an_empty_add_are_no_ops():
    bloom = BloomFilter(capacity=1_000)
    bloom.add_many([])
    assert bloom.count == 0
    assert bloom.might_contain([]).shape == (0,)
    assert not bloom.might_contain(["never"]).any()
