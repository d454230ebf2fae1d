"""Outbound webhooks: endpoints, Stripe-style signatures, and the worker that delivers the outbox.

Delivery is at least once. ``abaxus.billing.outbox.emit`` writes each event and its pending
deliveries in the transaction of the change; the ``WebhookDispatcher`` thread then claims due
deliveries (a lease in ``claimed_until``, set by compare-and-set; on PostgreSQL the claim also
skips rows another server has locked), POSTs each with a timeout, records the attempt, and
reschedules a failure with exponential backoff and full jitter until the retry window (3 days
by default) is spent, when the delivery becomes ``failed``. A process killed mid-attempt
leaves a lease that simply expires, so the next process tries again: the receiver may see an
event twice, never zero times, and deduplicates on its stable ``whev_…`` id.

Requests go only to the endpoint's own URL: redirects are not followed (a 3xx is a failed
attempt) and no proxy is taken from the environment. Bodies of answers are never read.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import random
import secrets
import string
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import msgspec
from msgspec import UNSET
from sqlalchemy import Connection, Engine, insert, select, update

from abaxus import __version__
from abaxus.clock import Clock
from abaxus.errors import Conflict, InvalidInput, NotFound
from abaxus.ids import new_id
from abaxus.logging import get_logger
from abaxus.schemas.webhooks import (
    WebhookAttemptOut,
    WebhookDeliveryOut,
    WebhookEndpointCreate,
    WebhookEndpointOut,
    WebhookEndpointPatch,
)
from abaxus.settings import Settings
from abaxus.store.metadata import is_postgres
from abaxus.store.paging import fetch_page
from abaxus.store.tables import outbox_events, webhook_attempts, webhook_deliveries, webhook_endpoints
from abaxus.timefmt import format_ms

__all__ = [
    "MAX_DELAY_S",
    "WebhookDispatcher",
    "create_endpoint",
    "disable_endpoint",
    "get_delivery",
    "get_endpoint",
    "list_deliveries",
    "list_endpoints",
    "patch_endpoint",
    "redeliver",
    "retry_delay",
    "sign",
    "verify",
]

log = get_logger("abaxus.webhooks")

SEND_TIMEOUT_S = 10.0
LEASE_MS = 30_000  # longer than any attempt (the timeout), so a live attempt never loses its claim
MAX_DELAY_S = 6 * 3600.0
POLL_S = 1.0
_ALPHABET = string.ascii_letters + string.digits
_encode_types = msgspec.json.Encoder()
_decode_types = msgspec.json.Decoder(list[str])


# ---- signatures --------------------------------------------------------------------------
def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Abaxus-Signature`` header: ``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``, keyed by the secret.

    The same scheme as Stripe's ``Stripe-Signature``, so Stripe's verification code accepts it.
    """
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, tolerance_s: int = 300, now: float | None = None) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and its timestamp is within the tolerance."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    macs = [v for k, v in parts if k.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not macs:
        return False
    t = int(stamps[0])
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, m) for m in macs)


def retry_delay(attempt: int, base_s: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt ``attempt`` (from 1): full jitter over a doubling, capped bound.

    Uniform in [0, min(6 h, base · 2^(attempt−1))]: receivers that failed together do not retry
    together, and the expected wait still doubles.
    """
    return rand() * min(MAX_DELAY_S, base_s * 2.0 ** min(attempt - 1, 62))


# ---- endpoints ---------------------------------------------------------------------------
def _new_secret() -> str:
    return "whsec_" + "".join(secrets.choice(_ALPHABET) for _ in range(40))


def _check_url(url: str, field: str = "url") -> str:
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port
    except ValueError:
        parts, port = None, None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment
            or any(c.isspace() for c in url) or not url.isascii() or (port is not None and port == 0)):
        raise InvalidInput("INVALID_FIELD", "Send an absolute http:// or https:// URL without spaces or a #fragment, "
                           "such as https://billing.example.com/abaxus-webhooks.", field)
    return url


_E = TypeVar("_E", bound=str)


def _check_events(events: list[_E], field: str = "events") -> list[_E]:
    if len(set(events)) != len(events):
        raise InvalidInput("INVALID_FIELD", "List each event type once.", field)
    if "*" in events and len(events) > 1:
        raise InvalidInput("INVALID_FIELD", "\"*\" already means every event type; send it alone.", field)
    return events


def endpoint_out(row: Any, secret: str | None = None) -> WebhookEndpointOut:
    out = WebhookEndpointOut(
        id=row["id"], url=row["url"], events=_decode_types.decode(row["events"]), description=row["description"],
        status=row["status"], created_at=format_ms(row["created_at"]) or "", updated_at=format_ms(row["updated_at"]) or "",
        disabled_at=format_ms(row["disabled_at"]))
    return msgspec.structs.replace(out, secret=secret) if secret is not None else out


def _load_endpoint(conn: Connection, endpoint_id: str) -> dict[str, Any]:
    row = conn.execute(select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)).mappings().first()
    if row is None:
        raise NotFound("WEBHOOK_ENDPOINT_NOT_FOUND", f"No webhook endpoint '{endpoint_id}'.")
    return dict(row)


def create_endpoint(engine: Engine, body: WebhookEndpointCreate, *, clock: Clock) -> WebhookEndpointOut:
    """A new endpoint; its ``secret`` is in this answer only (it signs every delivery)."""
    now = clock.now_ms()
    secret = _new_secret()
    row = {"id": new_id("whep"), "url": _check_url(body.url), "events": _encode_types.encode(_check_events(body.events)).decode(),
           "description": body.description, "secret": secret, "status": "enabled", "created_at": now, "updated_at": now,
           "disabled_at": None}
    with engine.begin() as conn:
        conn.execute(insert(webhook_endpoints).values(**row))
    return endpoint_out(row, secret)


def get_endpoint(engine: Engine, endpoint_id: str) -> WebhookEndpointOut:
    with engine.connect() as conn:
        return endpoint_out(_load_endpoint(conn, endpoint_id))


def list_endpoints(engine: Engine, limit: int, cursor: str | None) -> tuple[list[WebhookEndpointOut], str | None]:
    with engine.connect() as conn:
        page = fetch_page(conn, select(webhook_endpoints), [webhook_endpoints.c.created_at, webhook_endpoints.c.id],
                          kind="webhook_endpoints", limit=limit, cursor=cursor)
    return [endpoint_out(r) for r in page.rows], page.next_cursor


def _check_enabled(row: dict[str, Any]) -> None:
    if row["status"] != "enabled":
        raise Conflict("WEBHOOK_ENDPOINT_DISABLED", "The endpoint is disabled; create a new one to receive events again.")


def patch_endpoint(engine: Engine, endpoint_id: str, body: WebhookEndpointPatch, *, clock: Clock) -> WebhookEndpointOut:
    """Change the URL, event types or description; pending deliveries go to the new URL."""
    changes: dict[str, Any] = {}
    if body.url is not UNSET:
        changes["url"] = _check_url(body.url)
    if body.events is not UNSET:
        changes["events"] = _encode_types.encode(_check_events(body.events)).decode()
    if body.description is not UNSET:
        changes["description"] = body.description
    with engine.begin() as conn:
        row = _load_endpoint(conn, endpoint_id)
        _check_enabled(row)
        changes["updated_at"] = clock.now_ms()
        conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id).values(**changes))
        row.update(changes)
    return endpoint_out(row)


def disable_endpoint(engine: Engine, endpoint_id: str, *, clock: Clock) -> WebhookEndpointOut:
    """Stop sending to the endpoint for good; its pending deliveries become ``failed``. Repeatable."""
    with engine.begin() as conn:
        row = _load_endpoint(conn, endpoint_id)
        if row["status"] == "enabled":
            now = clock.now_ms()
            conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
                         .values(status="disabled", disabled_at=now, updated_at=now))
            d = webhook_deliveries.c
            conn.execute(update(webhook_deliveries).where((d.endpoint_id == endpoint_id) & (d.status == "pending"))
                         .values(status="failed", next_attempt_at=None, claimed_until=None,
                                 last_error="the endpoint was disabled"))
            row.update(status="disabled", disabled_at=now, updated_at=now)
    return endpoint_out(row)


# ---- deliveries --------------------------------------------------------------------------
def _deliveries_out(conn: Connection, rows: list[Any], window_ms: int) -> list[WebhookDeliveryOut]:
    ids = [r["id"] for r in rows]
    attempts: dict[str, list[WebhookAttemptOut]] = {i: [] for i in ids}
    if ids:
        a = webhook_attempts.c
        for r in conn.execute(select(webhook_attempts).where(a.delivery_id.in_(ids))
                              .order_by(a.delivery_id, a.attempt)).mappings():
            attempts[r["delivery_id"]].append(WebhookAttemptOut(
                attempt=r["attempt"], at=format_ms(r["at"]) or "", status_code=r["status_code"], error=r["error"],
                duration_ms=r["duration_ms"]))
    return [WebhookDeliveryOut(
        id=r["id"], endpoint_id=r["endpoint_id"], event_id=r["event_id"], event_type=r["event_type"], status=r["status"],
        attempt_count=r["attempt_count"], attempts=attempts[r["id"]], last_status_code=r["last_status_code"],
        last_error=r["last_error"], next_attempt_at=format_ms(r["next_attempt_at"]),
        retry_until=format_ms(_deadline(r, window_ms)) or "", created_at=format_ms(r["created_at"]) or "",
        delivered_at=format_ms(r["delivered_at"])) for r in rows]


def _deadline(row: Any, window_ms: int) -> int:
    return int(row["retry_until"]) if row["retry_until"] is not None else int(row["created_at"]) + window_ms


def list_deliveries(engine: Engine, settings: Settings, endpoint_id: str, status: str | None, event_id: str | None,
                    limit: int, cursor: str | None) -> tuple[list[WebhookDeliveryOut], str | None]:
    d = webhook_deliveries.c
    query = select(webhook_deliveries).where(d.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(d.status == status)
    if event_id is not None:
        query = query.where(d.event_id == event_id)
    with engine.connect() as conn:
        _load_endpoint(conn, endpoint_id)
        page = fetch_page(conn, query, [d.created_at, d.id], kind=f"webhook_deliveries:{endpoint_id}", limit=limit,
                          cursor=cursor)
        return _deliveries_out(conn, page.rows, _window_ms(settings)), page.next_cursor


def _load_delivery(conn: Connection, endpoint_id: str, delivery_id: str) -> dict[str, Any]:
    _load_endpoint(conn, endpoint_id)
    row = conn.execute(select(webhook_deliveries).where((webhook_deliveries.c.id == delivery_id)
                                                        & (webhook_deliveries.c.endpoint_id == endpoint_id))
                       ).mappings().first()
    if row is None:
        raise NotFound("WEBHOOK_DELIVERY_NOT_FOUND", f"Endpoint '{endpoint_id}' has no delivery '{delivery_id}'.")
    return dict(row)


def get_delivery(engine: Engine, settings: Settings, endpoint_id: str, delivery_id: str) -> WebhookDeliveryOut:
    with engine.connect() as conn:
        return _deliveries_out(conn, [_load_delivery(conn, endpoint_id, delivery_id)], _window_ms(settings))[0]


def redeliver(engine: Engine, settings: Settings, endpoint_id: str, delivery_id: str) -> WebhookDeliveryOut:
    """Send the delivery again now, with the same event id and body.

    A pending delivery's next attempt moves to now (its retry window unchanged); a succeeded
    or failed one gets exactly one more attempt.
    """
    now = settings.clock.now_ms()
    with engine.begin() as conn:
        _check_enabled(_load_endpoint(conn, endpoint_id))
        row = _load_delivery(conn, endpoint_id, delivery_id)
        if row["claimed_until"] is not None and row["claimed_until"] > now:
            raise Conflict("DELIVERY_IN_PROGRESS", "An attempt of this delivery is in flight; retry when it ends.")
        changes: dict[str, Any] = {"next_attempt_at": now, "claimed_until": None}
        if row["status"] != "pending":
            changes.update(status="pending", retry_until=now)
        conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id).values(**changes))
        row.update(changes)
        return _deliveries_out(conn, [row], _window_ms(settings))[0]


def _window_ms(settings: Settings) -> int:
    return int(settings.webhook_retry_window_seconds * 1000)


# ---- the worker --------------------------------------------------------------------------
class WebhookDispatcher:
    """A daemon thread that sends due deliveries, up to ``workers`` at a time, off every request path.

    It polls the outbox each second (sooner when a retry it scheduled falls due), so a new
    event or a manual redelivery is sent within about a second of its commit.
    """

    def __init__(self, engine: Engine, settings: Settings, *, workers: int = 4) -> None:
        self.engine = engine
        self.clock = settings.clock  # dates every attempt; waking up to retry is paced in real time
        self.base_s = settings.webhook_retry_base_seconds
        self.window_ms = _window_ms(settings)
        self._postgres = is_postgres(engine)
        self._workers = workers
        self._slots = threading.Semaphore(workers)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._due: list[float] = []  # monotonic times of the retries this process scheduled
        self._due_lock = threading.Lock()
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._http: httpx.Client | None = None

    def start(self) -> None:
        self._stop.clear()
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="webhook-send")
        self._http = httpx.Client(timeout=SEND_TIMEOUT_S, follow_redirects=False, trust_env=False,
                                  headers={"User-Agent": f"Abaxus-Webhooks/{__version__}"})
        self._thread = threading.Thread(target=self._run, name="webhook-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop claiming; let attempts in flight finish (each is bounded by the timeout)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(SEND_TIMEOUT_S + 5)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._http is not None:
            self._http.close()

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                started = self._tick()
            except Exception as exc:  # the store is down or busy: try again at the next poll
                log.error("webhook_claim_failed", exc_info=exc)
                started = 0
            if started:
                continue
            with self._due_lock:  # all senders busy: a finishing one wakes us
                full = self._in_flight >= self._workers
                wait = min(POLL_S, max(self._due[0] - time.monotonic(), 0.0)) if self._due and not full else POLL_S
            self._wake.wait(wait)
            self._wake.clear()

    def _tick(self) -> int:
        """Claim as many due deliveries as there are free senders and start them."""
        free = 0
        while self._slots.acquire(blocking=False):
            free += 1
        jobs: list[dict[str, Any]] = []
        try:
            if free:
                with self._due_lock:
                    while self._due and self._due[0] <= time.monotonic():
                        heapq.heappop(self._due)
                jobs = self._claim(free)
            assert self._pool is not None
            for job in jobs:
                with self._due_lock:
                    self._in_flight += 1
                self._pool.submit(self._send, job)
        finally:
            for _ in range(free - len(jobs)):
                self._slots.release()
        return len(jobs)

    def _claim(self, limit: int) -> list[dict[str, Any]]:
        now = self.clock.now_ms()
        lease = now + LEASE_MS
        d = webhook_deliveries.c
        due = ((d.status == "pending") & (d.next_attempt_at <= now)
               & (d.claimed_until.is_(None) | (d.claimed_until < now)))
        with self.engine.begin() as conn:
            query = (select(webhook_deliveries).where(due).order_by(d.next_attempt_at, d.id).limit(limit))
            if self._postgres:
                query = query.with_for_update(skip_locked=True)
            rows = [dict(r) for r in conn.execute(query).mappings()]
            jobs = [r for r in rows
                    if conn.execute(update(webhook_deliveries).where((d.id == r["id"]) & due)
                                    .values(claimed_until=lease)).rowcount == 1]
            if not jobs:
                return []
            payloads: dict[str, str] = dict(conn.execute(select(outbox_events.c.id, outbox_events.c.payload)
                                         .where(outbox_events.c.id.in_({j["event_id"] for j in jobs}))).all())
            endpoints = {r["id"]: dict(r) for r in conn.execute(
                select(webhook_endpoints).where(webhook_endpoints.c.id.in_({j["endpoint_id"] for j in jobs}))).mappings()}
        for job in jobs:
            job.update(lease=lease, payload=payloads.get(job["event_id"]), endpoint=endpoints.get(job["endpoint_id"]))
        return jobs

    def _send(self, job: dict[str, Any]) -> None:
        try:
            attempt = job["attempt_count"] + 1
            endpoint = job["endpoint"]
            if endpoint is None or endpoint["status"] != "enabled" or job["payload"] is None:
                self._give_up(job, "the endpoint was disabled" if endpoint else "the endpoint no longer exists")
                return
            body = job["payload"].encode("utf-8")
            signed = sign(endpoint["secret"], body, self.clock.now_ms() // 1000)
            headers = {
                "Content-Type": "application/json", "Abaxus-Signature": signed,
                "Abaxus-Event-Id": job["event_id"], "Abaxus-Event-Type": job["event_type"],
                "Abaxus-Delivery-Id": job["id"], "Abaxus-Delivery-Attempt": str(attempt),
            }
            at = self.clock.now_ms()
            started = time.monotonic()
            status: int | None = None
            error: str | None = None
            assert self._http is not None
            try:
                with self._http.stream("POST", endpoint["url"], content=body, headers=headers) as response:
                    status = response.status_code  # the answer's body is never read
                if not HTTPStatus.OK <= status < HTTPStatus.MULTIPLE_CHOICES:
                    redirect = HTTPStatus.MULTIPLE_CHOICES <= status < HTTPStatus.BAD_REQUEST
                    error = f"the endpoint answered HTTP {status}" + (" (redirects are not followed)" if redirect else "")
            except httpx.TimeoutException:
                error = f"no answer within {SEND_TIMEOUT_S:g} s"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
            duration_ms = int((time.monotonic() - started) * 1000)
            self._record(job, attempt, at, status, error, duration_ms)
        except Exception as exc:  # recording failed: the lease expires and the delivery is retried
            log.error("webhook_attempt_not_recorded", delivery_id=job.get("id"), exc_info=exc)
        finally:
            with self._due_lock:
                self._in_flight -= 1
            self._slots.release()
            self._wake.set()

    def _record(self, job: dict[str, Any], attempt: int, at: int, status: int | None, error: str | None,
                duration_ms: int) -> None:
        now = self.clock.now_ms()
        d = webhook_deliveries.c
        values: dict[str, Any] = {"attempt_count": attempt, "claimed_until": None, "last_status_code": status,
                                  "last_error": error}
        if error is None:
            values.update(status="succeeded", next_attempt_at=None, delivered_at=now)
        else:
            deadline = _deadline(job, self.window_ms)
            if now >= deadline:
                values.update(status="failed", next_attempt_at=None)
            else:
                delay = retry_delay(attempt, self.base_s)
                values.update(next_attempt_at=min(now + int(delay * 1000), deadline))
                with self._due_lock:
                    heapq.heappush(self._due, time.monotonic() + (values["next_attempt_at"] - now) / 1000 + 0.005)
        with self.engine.begin() as conn:
            owned = conn.execute(update(webhook_deliveries).where((d.id == job["id"]) & (d.claimed_until == job["lease"]))
                                 .values(**values)).rowcount
            if owned != 1:  # the endpoint was disabled meanwhile (or the lease ran out): its state stands
                log.warning("webhook_attempt_discarded", delivery_id=job["id"], attempt=attempt)
                return
            conn.execute(insert(webhook_attempts).values(delivery_id=job["id"], attempt=attempt, at=at, status_code=status,
                                                         error=error, duration_ms=duration_ms))
        log.info("webhook_attempt", delivery_id=job["id"], event_id=job["event_id"], attempt=attempt, status_code=status,
                 outcome=values.get("status", "retry"))

    def _give_up(self, job: dict[str, Any], reason: str) -> None:
        d = webhook_deliveries.c
        with self.engine.begin() as conn:
            conn.execute(update(webhook_deliveries).where((d.id == job["id"]) & (d.claimed_until == job["lease"]))
                         .values(status="failed", next_attempt_at=None, claimed_until=None, last_error=reason))
