"""Server ids: prefix + lowercase Crockford ULID (§1), sorting by creation; event ids from the key."""

from __future__ import annotations

import re
import time

from ulid import ULID

from abaxus.ids import event_id_for, event_ids_for, new_id

ULID_TEXT = re.compile(r"^[0-9a-hjkmnp-tv-z]{26}$")


def test_new_id_is_the_prefix_and_a_lowercase_ulid_of_now():
    before = time.time_ns() // 1_000_000
    server_id = new_id("met")
    after = time.time_ns() // 1_000_000
    prefix, text = server_id.split("_", 1)
    assert prefix == "met"
    assert ULID_TEXT.match(text), server_id
    assert before <= ULID.from_str(text.upper()).milliseconds <= after


def test_ids_made_one_after_another_sort_in_the_order_made():
    ids = [new_id("inv") for _ in range(2_000)]
    assert sorted(ids) == ids
    assert len(set(ids)) == 2_000


def test_event_ids_are_the_key_digest_one_at_a_time_or_vectorised():
    keys = ["req_1", "é-ключ", "x" * 255, ""]
    assert event_id_for("req_1") == "evt_37t343hohom4uy3crxtrboiu3u"  # base32(SHA-256("req_1"))[:26]
    assert event_ids_for(keys) == [event_id_for(k) for k in keys]
    assert all(re.fullmatch(r"evt_[a-z2-7]{26}", e) for e in event_ids_for(keys))
    assert event_ids_for([]) == []
