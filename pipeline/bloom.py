"""A compact Bloom filter of every idempotency key ever stored, that grows with the store.

It answers "certainly new" for almost every fresh key, so the dataflow asks the usage store
only about the few keys that hit the filter. It uses Python's process-local string hash,
which is fine because the filter is rebuilt from the store at every start.

A filter of fixed size fills up: sized for 4M keys, it answered "maybe" for about half of all
keys after 15M, and every "maybe" is a store lookup on the sink's path (a 10-minute soak
stalled the pipeline for 20 s at a time). So it is a stack of layers: when the newest layer
holds its capacity, a layer twice as large takes the new keys, and a key is "maybe" if any
layer says so. False hits stay near the per-layer rate times the number of layers (a few
per cent at most), and memory grows with the keys, one byte per eight bits of a key's share.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import numpy as np

__all__ = ["BloomFilter", "Hashes", "key_hashes"]

_BITS_PER_KEY = 8  # one layer at capacity: ~2.4 % false hits with 4 hashes


class _Layer:
    """One byte a bit (fast vectorised set and test), sized for ``capacity`` keys."""

    def __init__(self, capacity: int, hashes: int) -> None:
        self.capacity = capacity
        self.bits = max(1 << 16, 1 << int(np.ceil(np.log2(max(capacity, 1) * _BITS_PER_KEY))))
        self.k = hashes
        self.array = np.zeros(self.bits, dtype=np.bool_)
        self.count = 0

    def positions(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        i = np.arange(self.k, dtype=np.uint64)
        with np.errstate(over="ignore"):
            positions = ((h1[:, None] + i[None, :] * h2[:, None]) & np.uint64(self.bits - 1)).astype(np.int64)
        return cast("np.ndarray", positions)  # numpy: Any for an untyped dtype

    def add(self, h1: np.ndarray, h2: np.ndarray) -> None:
        self.array[self.positions(h1, h2).ravel()] = True
        self.count += len(h1)

    def contains(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        return cast("np.ndarray", self.array[self.positions(h1, h2)].all(axis=1))  # numpy: Any for an untyped dtype


Hashes = tuple[np.ndarray, np.ndarray]


def key_hashes(keys: list[str]) -> Hashes:
    """The two base hashes of each key: compute once, then test and add with them (``*_hashed``)."""
    h1 = np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys)).view(np.uint64)
    with np.errstate(over="ignore"):
        h2 = (h1 >> np.uint64(29)) * np.uint64(0x9E3779B97F4A7C15) | np.uint64(1)
    return h1, h2


class BloomFilter:
    """Layers of ~8 bits a key and 4 hashes; a new layer, twice the last, when the last is full."""

    def __init__(self, capacity: int = 4_000_000, hashes: int = 4) -> None:
        self.k = hashes
        self.layers = [_Layer(max(capacity, 1 << 13), hashes)]
        self.count = 0

    @property
    def bits(self) -> int:
        return sum(layer.bits for layer in self.layers)

    def add_many(self, keys: list[str]) -> None:
        if keys:
            self.add_hashed(key_hashes(keys))

    def add_hashed(self, hashes: Hashes) -> None:
        n = len(hashes[0])
        if not n:
            return
        newest = self.layers[-1]
        if newest.count + n > newest.capacity:
            newest = _Layer(max(2 * newest.capacity, n), self.k)
            self.layers.append(newest)
        newest.add(*hashes)
        self.count += n

    def might_contain(self, keys: list[str]) -> np.ndarray:
        """A boolean per key: False means certainly never added."""
        if not keys:
            return np.zeros(0, dtype=bool)
        return self.might_contain_hashed(key_hashes(keys))

    def might_contain_hashed(self, hashes: Hashes) -> np.ndarray:
        h1, h2 = hashes
        found = self.layers[0].contains(h1, h2)
        for layer in self.layers[1:]:
            found |= layer.contains(h1, h2)
        return found

    def extend(self, chunks: Iterable[list[str]]) -> None:
        for chunk in chunks:
            self.add_many(chunk)
