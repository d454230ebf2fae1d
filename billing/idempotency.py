"""Idempotency records of non-event writes (§16), scoped per API key.

A record is claimed before the write runs (status NULL = in progress) and completed with
the response; a 5xx response drops the claim so the retry runs again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from tenacity import retry, retry_if_exception_type, stop_after_attempt

from abaxus.clock import Clock
from abaxus.errors import Conflict
from abaxus.store.tables import idempotency_records as rec

__all__ = ["CLAIM_ATTEMPTS", "RETENTION_MS", "STALE_CLAIM_MS", "Replay", "claim", "complete", "release"]

RETENTION_MS = 48 * 3600 * 1000  # the contract promises at least 24 h
# A claim still "running" after this long was left by a process that died mid-request (its
# response was never stored): the next request with the key takes it over and runs.
STALE_CLAIM_MS = 120 * 1000
# Tries of one claim whose record keeps vanishing between the insert and the read.
CLAIM_ATTEMPTS = 5
_IN_USE = "The first request with this Idempotency-Key is still running; retry shortly."


@dataclass(frozen=True)
class Replay:
    status: int
    body: bytes


def claim(engine: Engine, key_id: str, key: str, fingerprint: str, *, clock: Clock) -> Replay | None:
    """Claim ``key`` for this request, or return the stored response to replay."""
    try:
        return _try_claim(engine, key_id, key, fingerprint, clock.now_ms())
    except _Released:  # other requests keep claiming and releasing it: one of them is running
        raise Conflict("IDEMPOTENCY_KEY_IN_USE", _IN_USE) from None


class _Released(Exception):
    """The claim this request ran into was released before it could be read."""


# A released key is free, so the claim is tried again at once; only a key that other requests
# claim and release again between every insert and read runs out of attempts.
@retry(retry=retry_if_exception_type(_Released), stop=stop_after_attempt(CLAIM_ATTEMPTS), reraise=True)
def _try_claim(engine: Engine, key_id: str, key: str, fingerprint: str, now: int) -> Replay | None:
    try:
        with engine.begin() as conn:
            conn.execute(delete(rec).where(rec.c.created_at < now - RETENTION_MS))
            conn.execute(insert(rec).values(api_key_id=key_id, key=key, fingerprint=fingerprint, status=None,
                                            response_body=None, created_at=now))
        return None
    except IntegrityError:
        pass
    with engine.connect() as conn:
        row = conn.execute(select(rec).where((rec.c.api_key_id == key_id) & (rec.c.key == key))).mappings().first()
    if row is None:  # released between our insert and read
        raise _Released
    if row["fingerprint"] != fingerprint:
        raise Conflict("IDEMPOTENCY_KEY_REUSED", "This Idempotency-Key was used for a different request; use a new key.")
    if row["status"] is None:
        if row["created_at"] < now - STALE_CLAIM_MS and _take_over(engine, key_id, key, row["created_at"], now):
            return None
        raise Conflict("IDEMPOTENCY_KEY_IN_USE", _IN_USE)
    return Replay(status=row["status"], body=row["response_body"] or b"")


def _take_over(engine: Engine, key_id: str, key: str, claimed_at: int, now: int) -> bool:
    """Re-claim an abandoned claim; only one of several racing requests wins it."""
    with engine.begin() as conn:
        taken = conn.execute(update(rec).where((rec.c.api_key_id == key_id) & (rec.c.key == key)
                                               & rec.c.status.is_(None) & (rec.c.created_at == claimed_at))
                             .values(created_at=now))
    return taken.rowcount == 1


def complete(engine: Engine, key_id: str, key: str, status: int, body: bytes) -> None:
    with engine.begin() as conn:
        conn.execute(update(rec).where((rec.c.api_key_id == key_id) & (rec.c.key == key))
                     .values(status=status, response_body=body))


def release(engine: Engine, key_id: str, key: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(rec).where((rec.c.api_key_id == key_id) & (rec.c.key == key)))
