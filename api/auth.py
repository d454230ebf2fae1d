"""Authentication, scopes and per-key rate limiting, as one middleware (§2, §17).

Scope rules live in ``allowed_scopes`` alone, so route modules never check keys themselves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio.to_thread
from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from sqlalchemy import Engine

from abaxus.billing.api_keys import AuthenticatedKey, authenticate
from abaxus.clock import Clock, SystemClock
from abaxus.errors import AbaxusError, Forbidden, Unauthenticated
from abaxus.logging import get_logger

__all__ = ["AuthMiddleware", "KeyCache", "RateDecision", "RateLimiter", "allowed_scopes"]

_WARN_EVERY_S = 60  # at most one storage-unavailable warning a minute

log = get_logger("abaxus.api")

PUBLIC_PATHS = ("/healthz", "/readyz", "/v1/webhooks/stripe")
_READ_POSTS = ("/v1/usage/compute", "/v1/pricing/calculate", "/v1/pricing/preview")


def allowed_scopes(method: str, path: str) -> frozenset[str]:
    if path.startswith("/v1/events"):
        return frozenset({"admin", "ingest", "read"} if method == "GET" else {"admin", "ingest"})
    if method in ("GET", "HEAD"):
        return frozenset({"admin"} if path.startswith("/v1/api-keys") else {"admin", "read"})
    if path in _READ_POSTS:
        return frozenset({"admin", "read"})
    return frozenset({"admin"})


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    remaining: int
    reset: int  # Unix seconds at the end of the window


class _MinuteCounts:
    """Requests per key in the current clock minute, in this process's memory (``memory://``).

    ``limits``' memory storage starts a 10 ms expiry timer thread on almost every hit: at one
    ingest request every few milliseconds that was ~0.4 ms of CPU per request (measured), a
    tenth of an intake process's work. Counting is all a fixed window needs; the counts of
    older minutes are dropped when a new minute starts.
    """

    def __init__(self) -> None:
        self._latest = -1
        self._counts: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()  # the event loop and worker threads (uncached keys) both count

    def hit(self, key_id: str, window: int) -> int:
        """Count one request of ``key_id`` in minute ``window``; the count so far, this one included."""
        with self._lock:
            if window > self._latest:  # a new minute: forget all but the one before it
                self._latest = window
                self._counts = {k: n for k, n in self._counts.items() if k[0] >= window - 1}
            count = self._counts.get((window, key_id), 0) + 1
            self._counts[(window, key_id)] = count
            return count


class RateLimiter:
    """``per_minute`` requests per key in each clock minute (a batch is one request).

    ``memory://`` counts in this process (``_MinuteCounts``), so each replica allows the limit
    on its own; a Redis URL (``redis://host:6379/0``) keeps the counters there (the ``limits``
    package's fixed-window strategy), so all replicas sharing it allow ``per_minute`` per key
    together. The window's number is part of the counter's name, so windows are the clock's
    minutes on every replica and ``reset`` is the minute's end (``clock``: the settings' clock,
    so a test can move to the next window).

    A shared storage that does not answer (within 0.5 s) limits nothing: the request goes
    through without rate-limit headers and a warning is logged (once a minute at most), so
    usage keeps flowing while Redis restarts.
    """

    def __init__(self, per_minute: int, storage: str = "memory://", *, key_prefix: str = "abaxus",
                 clock: Clock | None = None) -> None:
        self.per_minute = per_minute
        self.clock: Clock = clock or SystemClock()
        # Counted in this process's memory: ``hit`` never blocks, so it may run on the event loop.
        self.in_process = storage.startswith("memory://")
        self._item = RateLimitItemPerMinute(per_minute, namespace="requests")
        self._local = _MinuteCounts() if self.in_process else None
        self._limiter = None if self.in_process else FixedWindowRateLimiter(storage_from_string(
            storage, wrap_exceptions=True, key_prefix=key_prefix, socket_timeout=0.5, socket_connect_timeout=0.5))
        self._warned_at = -60.0
        self._warn_lock = threading.Lock()

    def hit(self, key_id: str) -> RateDecision | None:
        """Count one request of ``key_id``; ``None`` when the storage does not answer (blocking: call off the loop)."""
        window = self.clock.now_ms() // 60_000
        if self._local is not None:
            count = self._local.hit(key_id, window)
            return RateDecision(count <= self.per_minute, max(self.per_minute - count, 0), (window + 1) * 60)
        assert self._limiter is not None  # one of the two is set in __init__
        try:
            allowed = self._limiter.hit(self._item, key_id, str(window))
            remaining = self._limiter.get_window_stats(self._item, key_id, str(window)).remaining
        except StorageError as exc:
            self._warn(exc)
            return None
        return RateDecision(allowed, remaining, (window + 1) * 60)

    def _warn(self, exc: StorageError) -> None:
        with self._warn_lock:  # real time: it paces log lines, not billing
            now = time.monotonic()
            if now - self._warned_at < _WARN_EVERY_S:
                return
            self._warned_at = now
        log.warning("rate_limit_storage_unavailable", error=str(exc.storage_error)[:300],
                    effect="requests are not rate limited until it answers")


def _is_public(path: str) -> bool:
    # The dashboard signs its users in itself and calls the API with their key (abaxus.api.dashboard).
    return (path in PUBLIC_PATHS or path == "/schema" or path.startswith("/schema/")
            or path == "/dashboard" or path.startswith("/dashboard/"))


class KeyCache:
    """Keys already found, by secret, so a request need not query the metadata store.

    Exact, so a revoked key fails from that instant (§2): revoking a key in this process
    clears the cache (``changed``), and ``store_version`` — SQLite's change counter (see
    ``sqlite_change_counter``) — clears it whenever any process committed to the store, so
    processes sharing one SQLite file (intake processes, replicas) never answer from a stale
    entry. A lookup that began before a change is not remembered after it (the generation
    moved on), so a revocation racing a request cannot leave the old answer behind. Unknown
    secrets are never remembered: a flood of them cannot grow the cache.
    """

    def __init__(self, store_version: Callable[[], int] | None = None, max_keys: int = 10_000) -> None:
        self._keys: dict[str, AuthenticatedKey] = {}
        self._generation = 0
        self._max = max_keys
        self._lock = threading.Lock()
        self._store_version = store_version
        self._seen_version = store_version() if store_version is not None else 0

    def get(self, secret: str) -> AuthenticatedKey | None:
        if self._store_version is not None:
            version = self._store_version()
            if version != self._seen_version:
                self.changed()
                self._seen_version = version
                return None
        return self._keys.get(secret)

    def generation(self) -> int:
        return self._generation

    def remember(self, secret: str, key: AuthenticatedKey, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                if len(self._keys) >= self._max:
                    self._keys.clear()
                self._keys[secret] = key

    def changed(self) -> None:
        """A key was revoked (or changed): forget every key, answer from the store again."""
        with self._lock:
            self._generation += 1
            self._keys = {}


class AuthMiddleware(ASGIMiddleware):
    """Finds the key (in ``keys`` if given, else the metadata store), counts the request in ``limiter``, checks the scope.

    With a cached key and an in-process rate limiter nothing here blocks, so the request
    stays on the event loop (no worker-thread hop, no query): the ingest path's cost.
    """

    def __init__(self, engine: Engine, limiter: RateLimiter, keys: KeyCache | None = None) -> None:
        self.engine = engine
        self.limiter = limiter
        self.keys = keys

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope["type"] != ScopeType.HTTP or _is_public(scope["path"]):
            await next_app(scope, receive, send)
            return
        secret = _bearer_secret(scope)
        cached = self.keys.get(secret) if self.keys is not None else None
        if cached is not None and self.limiter.in_process:
            key, decision = cached, self.limiter.hit(cached.id)
        else:
            key, decision = await anyio.to_thread.run_sync(self._admit, secret)
        limit_headers = [] if decision is None else [
            (b"x-ratelimit-limit", str(self.limiter.per_minute).encode()),
            (b"x-ratelimit-remaining", str(decision.remaining).encode()),
            (b"x-ratelimit-reset", str(decision.reset).encode()),
        ]
        if decision is not None and not decision.allowed:
            retry = max(decision.reset - self.limiter.clock.now_ms() // 1000, 1)
            raise AbaxusError("RATE_LIMITED", f"Over {self.limiter.per_minute} requests this minute; retry in {retry} s.",
                              status=429,
                              headers={"Retry-After": str(retry), **{k.decode(): v.decode() for k, v in limit_headers}})
        if scope["method"] not in ("OPTIONS",) and key.scope not in allowed_scopes(scope["method"], scope["path"]):
            raise Forbidden("INSUFFICIENT_SCOPE",
                            f"This key's scope '{key.scope}' does not allow {scope['method']} {scope['path']}.")
        scope.setdefault("state", {})["api_key"] = key

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *limit_headers]
            await send(message)

        await next_app(scope, receive, send_with_headers)

    def _admit(self, secret: str) -> tuple[AuthenticatedKey, RateDecision | None]:
        """Find the key, then count the request (one trip to a worker thread for both)."""
        key = self.keys.get(secret) if self.keys is not None else None
        if key is None:
            generation = self.keys.generation() if self.keys is not None else 0
            key = authenticate(self.engine, secret)
            if key is None:
                raise Unauthenticated()
            if self.keys is not None:
                self.keys.remember(secret, key, generation)
        return key, self.limiter.hit(key.id)


def _bearer_secret(scope: Scope) -> str:
    header = ""
    for name, value in scope["headers"]:
        if name == b"authorization":
            header = value.decode("latin-1")
            break
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated()
    return secret.strip()
