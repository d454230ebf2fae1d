"""A compact Bloom filter of every idempotency key ever stored, that grows with the store.

It answers "certainly new" for almost every fresh key, so the dataflow asks the usage store
only about the few keys that hit the filter. A key is hashed through its event id, which
every intake record and stored row already holds: the id is 130 bits of the key's SHA-256 in
base32 (§9), so two 60-bit hashes are cut from its characters with numpy, for a whole column
at once, with no Python object per key (``id_hashes``).

A filter of fixed size fills up: sized for 4M keys, it answered "maybe" for about half of all
keys after 15M, and every "maybe" is a store lookup on the sink's path (a 10-minute soak
stalled the pipeline for 20 s at a time). So it is a stack of layers: when the newest layer
holds its capacity, a layer twice as large takes the new keys, and a key is "maybe" if any
layer says so. False hits stay near the per-layer rate times the number of layers.

Each layer is a blocked filter: a key's 7 bits lie in one 64-bit word (the first hash picks
the word, the second the bits), so adding and testing are one scatter and one gather of
words. At 16 bits a key a full layer answers "maybe" for ~0.4 % of fresh keys and costs 2
bytes a key. (An earlier layer kept one byte per bit, 8 bits a key: 8 bytes a key, ~2.4 %
false hits; packing single bits instead needs a read-modify-write per bit, ~0.4 µs a key in
numpy, measured, where the words cost about what the bytes did.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import pyarrow as pa

from abaxus.ids import BASE32_DIGITS, EVENT_ID_LENGTH, event_id_array

__all__ = ["BloomFilter", "Hashes", "id_hashes", "key_hashes"]

_BITS_PER_KEY = 16
_HASHES = 7  # bits set per key, 6 bits of the second hash each
_SHIFTS = np.arange(_HASHES, dtype=np.uint64) * np.uint64(6)
_SIX_BITS = np.uint64(63)
_ONE = np.uint64(1)


def _bit_masks(h2: np.ndarray) -> np.ndarray:
    """Each key's word mask: up to 7 of the 64 bits, chosen by the second hash."""
    return cast("np.ndarray", np.bitwise_or.reduce(_ONE << ((h2[:, None] >> _SHIFTS) & _SIX_BITS), axis=1))


class _Layer:
    """Words of 64 bits, sized for ``capacity`` keys at 16 bits each (see the module doc)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.words = max(1 << 10, 1 << int(np.ceil(np.log2(max(capacity, 1) * _BITS_PER_KEY / 64))))
        self.array = np.zeros(self.words, dtype=np.uint64)
        self.count = 0

    def _index(self, h1: np.ndarray) -> np.ndarray:
        return (h1 & np.uint64(self.words - 1)).astype(np.intp)

    def add(self, h1: np.ndarray, masks: np.ndarray) -> None:
        np.bitwise_or.at(self.array, self._index(h1), masks)  # unbuffered: two keys in one word both keep their bits
        self.count += len(h1)

    def contains(self, h1: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return cast("np.ndarray", (self.array[self._index(h1)] & masks) == masks)


Hashes = tuple[np.ndarray, np.ndarray]


_B32_VALUES = np.zeros(256, dtype=np.uint64)  # a base32 character's digit
_B32_VALUES[BASE32_DIGITS] = np.arange(32, dtype=np.uint64)
_DIGIT_WEIGHTS = np.uint64(1) << (np.arange(11, -1, -1, dtype=np.uint64) * np.uint64(5))


def id_hashes(event_ids: pa.Array) -> Hashes:
    """The two base hashes of each key, from its event id: compute once, then test and add with them.

    Characters 4–15 and 16–27 of an id are 12 base32 digits each: 60 bits of SHA-256 apiece.
    ``ValueError`` if an id is missing or is not 30 characters (see ``key_hashes``).
    """
    n = len(event_ids)
    if not n:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64)
    _, offsets_buf, data_buf = event_ids.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=n + 1, offset=4 * event_ids.offset)
    first = int(offsets[0])
    if event_ids.null_count or int(offsets[-1]) - first != EVENT_ID_LENGTH * n or \
            not (np.diff(offsets) == EVENT_ID_LENGTH).all():
        raise ValueError("not every row has an event id of 30 characters")
    chars = np.frombuffer(data_buf, dtype=np.uint8, count=EVENT_ID_LENGTH * n, offset=first)
    chars = chars.reshape(n, EVENT_ID_LENGTH)
    hashes = _B32_VALUES[chars[:, 4:28]].reshape(n, 2, 12) @ _DIGIT_WEIGHTS  # each row: 12 digits, 5 bits each
    return hashes[:, 0], hashes[:, 1]


def key_hashes(keys: Sequence[str]) -> Hashes:
    """``id_hashes`` of the keys' event ids, computed here (for keys without their ids at hand)."""
    return id_hashes(event_id_array(keys))


class BloomFilter:
    """Layers of 16 bits a key and 7 hashes; a new layer, twice the last, when the last is full."""

    def __init__(self, capacity: int = 4_000_000) -> None:
        self.layers = [_Layer(max(capacity, 1 << 13))]
        self.count = 0

    def add_many(self, keys: Sequence[str]) -> None:
        if keys:
            self.add_hashed(key_hashes(keys))

    def add_ids(self, event_ids: pa.Array) -> None:
        """Add the keys whose event ids these are (the store's ``event_id`` column)."""
        if len(event_ids):
            self.add_hashed(id_hashes(event_ids))

    def add_hashed(self, hashes: Hashes) -> None:
        n = len(hashes[0])
        if not n:
            return
        newest = self.layers[-1]
        if newest.count + n > newest.capacity:
            newest = _Layer(max(2 * newest.capacity, n))
            self.layers.append(newest)
        newest.add(hashes[0], _bit_masks(hashes[1]))
        self.count += n

    def might_contain(self, keys: Sequence[str]) -> np.ndarray:
        """A boolean per key: False means certainly never added."""
        if not keys:
            return np.zeros(0, dtype=bool)
        return self.might_contain_hashed(key_hashes(keys))

    def might_contain_hashed(self, hashes: Hashes) -> np.ndarray:
        h1, masks = hashes[0], _bit_masks(hashes[1])
        found = self.layers[0].contains(h1, masks)
        for layer in self.layers[1:]:
            found |= layer.contains(h1, masks)
        return found
