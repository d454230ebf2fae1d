"""When to retry a call and how long to wait: exponential backoff with full jitter.

Only failures that say "nothing was done, try again" are retried: no answer at all
(connection refused or reset, timeouts), ``429 RATE_LIMITED`` and ``503`` (``NOT_READY``,
``PAYMENT_PROVIDER_UNAVAILABLE``). Other 4xx are the caller's to fix and a 500 is a server
fault, so retrying them would only repeat the failure. Every retried write is safe: the
transport sends non-event writes with one ``Idempotency-Key`` for all attempts (spec §16), and
events carry their own ``idempotency_key`` (§9).

Full jitter (``uniform(0, min(cap, base · 2^(n−1)))``) spreads clients that failed together
so they do not come back together; a ``Retry-After`` from the server is a floor on the wait.
The state machine is shared by the sync and async transports so both behave identically.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

__all__ = ["RetryEvent", "RetryPolicy", "RetryState", "parse_retry_after"]


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard one logical call tries.

    ``max_attempts`` counts the first try; ``max_elapsed`` (seconds) bounds the whole call,
    waits included: a wait that would end past it is not started, the last error is raised
    instead. ``base_delay``/``max_delay`` shape the backoff. ``retry_statuses`` are the HTTP
    statuses worth another try (add 502/504 when a proxy sits in front of Abaxus).
    """

    max_attempts: int = 8
    max_elapsed: float = 60.0
    base_delay: float = 0.25
    max_delay: float = 8.0
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 503}))

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts counts the first try: use 1 to disable retries, not less.")
        if self.max_elapsed <= 0 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("max_elapsed must be > 0 and the delays ≥ 0 (seconds).")

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """One attempt, no retries (tests, or callers with their own retry loop)."""
        return cls(max_attempts=1)

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter wait after failed attempt ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return (rng or random).uniform(0, ceiling)


@dataclass(frozen=True)
class RetryEvent:
    """What a retry hook is told before each wait: enough to log or count retries."""

    method: str
    path: str
    attempt: int  # the attempt that failed, 1-based
    delay: float  # seconds about to be waited
    status: int | None  # HTTP status, or None when there was no answer
    error: str | None  # exception class name when there was no answer


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


class RetryState:
    """The retry budget of one logical call: ask it, after each failure, whether and how long to wait."""

    def __init__(self, policy: RetryPolicy, *, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.policy = policy
        self.clock = clock
        self.rng = rng
        self.started = clock()
        self.attempt = 0

    def begin_attempt(self) -> int:
        self.attempt += 1
        return self.attempt

    def retryable_status(self, status: int, code: str | None) -> bool:
        if status in self.policy.retry_statuses:
            return True
        # Our own earlier attempt of this very call is still running on the server (it timed
        # out on our side): its stored answer will be replayed once it finishes (§16).
        return status == HTTPStatus.CONFLICT and code == "IDEMPOTENCY_KEY_IN_USE" and self.attempt > 1

    def next_delay(self, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next attempt, or None when the budget is spent."""
        if self.attempt >= self.policy.max_attempts:
            return None
        delay = self.policy.backoff(self.attempt, self.rng)
        if retry_after is not None:
            delay = max(delay, retry_after)  # the server's wait is a floor, never shortened
        if self.clock() - self.started + delay > self.policy.max_elapsed:
            return None
        return delay
