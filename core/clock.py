"""One clock for all of Abaxus, passed down with the settings (``settings.clock``).

Everything that needs "now" (a period's end, a lease's expiry, a dedup window, a webhook's
next attempt) asks the clock it was given, never the wall clock directly, so a test can
move time forward instead of sleeping or writing past instants into tables.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What Abaxus asks of a clock: the current instant in UTC milliseconds since the epoch."""

    def now_ms(self) -> int: ...


class SystemClock:
    """The wall clock (the default)."""

    __slots__ = ()

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def __repr__(self) -> str:
        return "SystemClock()"

    def __eq__(self, other: object) -> bool:  # every system clock is the same clock
        return isinstance(other, SystemClock)

    def __hash__(self) -> int:
        return hash(SystemClock)


class ManualClock:
    """A clock that only moves when told to: for tests that need time to pass without sleeping."""

    def __init__(self, start_ms: int) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return self._now

    def advance(self, ms: int) -> int:
        """Move forward by ``ms`` (never back); the new instant."""
        if ms < 0:
            raise ValueError("a clock never moves back; advance by a positive number of milliseconds")
        with self._lock:
            self._now += ms
            return self._now

    def set(self, instant_ms: int) -> None:
        """Jump to ``instant_ms`` (which must not be in this clock's past)."""
        with self._lock:
            if instant_ms < self._now:
                raise ValueError("a clock never moves back")
            self._now = instant_ms

    def __repr__(self) -> str:
        return f"ManualClock(now_ms={self._now})"
