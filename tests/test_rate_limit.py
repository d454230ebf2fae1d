"""Per-key rate limits (§17) counted by the ``limits`` package, in this process or in Redis.

The Redis tests use the server at 127.0.0.1:6379, each under its own key prefix (deleted
afterwards); they skip, saying why, when no server answers.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import TestClient

from abaxus.api.app import create_app
from abaxus.api.auth import RateDecision, RateLimiter
from abaxus.clock import ManualClock
from abaxus.settings import Settings, SettingsError
from conftest import ADMIN_KEY, error_of
from server_process import ServerProcess

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_reason() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1).ping()
        return None
    except redis.RedisError as exc:
        return f"Redis at 127.0.0.1:6379 did not answer ({exc.__class__.__name__}); start it to run this test"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the shared Redis; its keys are deleted afterwards."""

    reason = _redis_reason()
    if reason:
        pytest.skip(reason)
    prefix = f"abaxus-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def _wait_for_a_fresh_window(needed_s: float) -> None:
    """Start in a minute with ``needed_s`` left, so the counts under test share one window.

    Only for server processes, which run on the wall clock; in-process limiters take a ``ManualClock``.
    """
    left = 60 - time.time() % 60
    if left < needed_s:
        time.sleep(left + 0.05)


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


MINUTE_START_MS = 1_800_000_000_000  # 2027-01-15T08:00:00Z, the start of a clock minute


def test_limiters_sharing_a_redis_storage_count_one_limit_per_key(redis_prefix: str):
    clock = ManualClock(MINUTE_START_MS)  # the replicas' shared clock: both count in the same window
    a = RateLimiter(3, REDIS_URL, key_prefix=redis_prefix, clock=clock)
    b = RateLimiter(3, REDIS_URL, key_prefix=redis_prefix, clock=clock)
    seen = [a.hit("key_1"), b.hit("key_1"), a.hit("key_1"), b.hit("key_1"), a.hit("key_2")]
    reset = MINUTE_START_MS // 1000 + 60
    assert seen == [RateDecision(True, 2, reset), RateDecision(True, 1, reset), RateDecision(True, 0, reset),
                    RateDecision(False, 0, reset), RateDecision(True, 2, reset)]
    clock.advance(60_000)  # the next minute counts afresh
    assert b.hit("key_1") == RateDecision(True, 2, reset + 60)


def test_memory_limiters_count_each_on_its_own():
    clock = ManualClock(MINUTE_START_MS + 59_000)  # a second before the minute ends: still one window
    a, b = RateLimiter(1, clock=clock), RateLimiter(1, clock=clock)
    reset = MINUTE_START_MS // 1000 + 60
    assert [a.hit("key_1"), b.hit("key_1"), a.hit("key_1")] == [
        RateDecision(True, 0, reset), RateDecision(True, 0, reset), RateDecision(False, 0, reset)]


def test_a_memory_limiter_counts_each_key_per_minute_and_forgets_old_minutes():
    clock = ManualClock(MINUTE_START_MS)
    limiter = RateLimiter(2, clock=clock)
    reset = MINUTE_START_MS // 1000 + 60
    assert [limiter.hit("key_1") for _ in range(3)] + [limiter.hit("key_2")] == [
        RateDecision(True, 1, reset), RateDecision(True, 0, reset), RateDecision(False, 0, reset),
        RateDecision(True, 1, reset)]
    clock.advance(60_000)  # the next minute counts afresh, and a key refused last minute is let through
    assert limiter.hit("key_1") == RateDecision(True, 1, reset + 60)
    for minute in range(2, 50):  # one key a minute for 48 minutes: only the last two minutes are kept
        clock.advance(60_000)
        limiter.hit(f"key_{minute}")
    assert limiter._local is not None
    assert len(limiter._local._counts) == 2


def test_a_storage_that_does_not_answer_limits_nothing():
    limiter = RateLimiter(1, f"redis://127.0.0.1:{_unused_port()}/0")
    assert [limiter.hit("key_1"), limiter.hit("key_1")] == [None, None]


def test_without_an_answering_storage_requests_pass_without_limit_headers(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, bootstrap_key=ADMIN_KEY, rate_limit_rpm=1, log_format="console",
                        rate_limit_storage=f"redis://127.0.0.1:{_unused_port()}/0")
    with TestClient(create_app(settings)) as c:
        seen = [c.get("/v1/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}) for _ in range(2)]
    assert [r.status_code for r in seen] == [200, 200]
    assert [k for r in seen for k in r.headers if k.lower().startswith("x-ratelimit")] == []


def test_the_storage_setting_takes_memory_or_redis_urls():
    assert Settings.from_env({}).rate_limit_storage == "memory://"
    shared = Settings.from_env({"ABAXUS_RATE_LIMIT_STORAGE": "redis://:pw@10.0.0.5:6379/2",
                                "ABAXUS_RATE_LIMIT_PREFIX": "abaxus-prod"})
    assert (shared.rate_limit_storage, shared.rate_limit_prefix) == ("redis://:pw@10.0.0.5:6379/2", "abaxus-prod")
    assert "pw" not in repr(shared)
    with pytest.raises(SettingsError, match=r"ABAXUS_RATE_LIMIT_STORAGE must be memory:// .* got memcached://…"):
        Settings.from_env({"ABAXUS_RATE_LIMIT_STORAGE": "memcached://cache:11211"})


def _get(server: ServerProcess) -> Any:
    with server.client() as c:
        return c.get("/v1/metrics")


def test_two_replicas_sharing_redis_enforce_one_limit_per_key(tmp_path: Path, redis_prefix: str):
    """Two ``abaxus serve`` processes on one metadata database and one Redis: 4 requests a minute in all."""
    env = {"ABAXUS_DATABASE_URL": f"sqlite:///{tmp_path / 'metadata.sqlite3'}", "ABAXUS_RATE_LIMIT_RPM": "4",
           "ABAXUS_RATE_LIMIT_STORAGE": REDIS_URL, "ABAXUS_RATE_LIMIT_PREFIX": redis_prefix}
    replicas = [ServerProcess(tmp_path / name, ADMIN_KEY, extra_env=env) for name in ("a", "b")]
    try:
        for replica in replicas:  # one after the other: the first migrates and creates the key
            replica.start()
        _wait_for_a_fresh_window(10)
        a, b = replicas
        seen = [_get(a), _get(b), _get(a), _get(b), _get(a), _get(b)]
    finally:
        for replica in replicas:
            replica.stop()
    assert [r.status_code for r in seen] == [200, 200, 200, 200, 429, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in seen] == ["3", "2", "1", "0", "0", "0"]
    assert {r.headers["X-RateLimit-Limit"] for r in seen} == {"4"}
    assert len({r.headers["X-RateLimit-Reset"] for r in seen}) == 1
    assert error_of(seen[5]) == (429, "RATE_LIMITED", None)
    assert 1 <= int(seen[5].headers["Retry-After"]) <= 60
