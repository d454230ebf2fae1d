"""Bulk invoicing as a background job (§12): safe to rerun, errors per subscription, run once.

Several API replicas may share one metadata store, so a job is not run by the replica that
received it but by whichever replica *claims* it. A claim is three columns of the job's row:
``claimed_by`` (the replica's id), ``lease_until`` (ms on the replica's clock) and
``attempts`` (how many claims the job has had: the claim's fencing token). Each replica runs
one poll loop (``BulkInvoicing.start``) that, every ``poll_s`` seconds or when woken by a
local ``enqueue``:

1. renews the lease of every job it is running (the heartbeat), and notices a job it has
   lost (another replica's claim has a higher ``attempts``);
2. claims queued jobs, and running jobs whose lease has expired (their claimant crashed or
   stalled), while it runs fewer than ``max_jobs``.

A claim is ``SELECT … FOR UPDATE SKIP LOCKED`` (on PostgreSQL: replicas claiming at the same
moment each take a different row and never wait on each other) followed by a compare-and-set
``UPDATE`` on the ``attempts`` seen, so it is exact on SQLite too, where SQLAlchemy renders no
lock. Every later write to the job row is fenced by ``claimed_by`` and ``attempts``: a
claimant that lost its job (taken over while it stalled) can neither overwrite the new run's
counts nor mark the job failed; it stops at its next chunk.

A takeover never bills a customer twice: invoices are unique per subscription period
(``invoices.period_slot``), so the new run counts the periods the crashed run had already
invoiced as ``invoices_existing``, and a stalled claimant that wakes and issues a chunk the
new run issued meanwhile gets a conflict for each (``Invoicing.issue_many``) and creates none.

Usage for every billable subscription is read with one query per distinct window (grouped
by customer and metric) and each charge is rated in one vectorised call across customers.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import Connection, Engine, func, insert, select, update

from abaxus.billing.invoices import Invoicing
from abaxus.billing.pricing import Window, billable_windows, load_specs, price_windows
from abaxus.billing.proration import credit_lines
from abaxus.billing.timeline import Timeline, load_amendments
from abaxus.clock import Clock, SystemClock
from abaxus.errors import AbaxusError, NotFound
from abaxus.ids import new_id
from abaxus.logging import get_logger
from abaxus.store.tables import invoices, jobs, subscriptions
from abaxus.timefmt import format_ms

__all__ = ["LEASE_MS", "POLL_S", "BulkInvoicing", "Claim"]

log = get_logger("abaxus.jobs")
CHUNK = 5000
LEASE_MS = 30_000  # a crashed claimant's job is taken over this long after its last heartbeat
POLL_S = 3.0  # each replica looks for claimable jobs (and renews its leases) this often
_OPEN = ("queued", "running")


def job_out(row: Any) -> dict[str, Any]:
    """The §12 job body (the claim columns are internal and not shown)."""
    return {"id": row["id"], "status": row["status"], "cutoff_date": format_ms(row["cutoff_date"]),
            "invoices_created": row["invoices_created"], "invoices_skipped": row["invoices_skipped"],
            "invoices_existing": row["invoices_existing"], "errors": msgspec.json.decode(row["errors"]),
            "created_at": format_ms(row["created_at"]), "started_at": format_ms(row["started_at"]),
            "finished_at": format_ms(row["finished_at"])}


def default_replica_id() -> str:
    """Host, process and a random part: unique per ``BulkInvoicing``, readable in the ``jobs`` table."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this replica holds: ``attempts`` is the fencing token every write to the row checks."""

    job_id: str
    cutoff_ms: int
    actor: str
    attempts: int


class _Lost(Exception):  # a signal inside one run, never raised out of this module
    """The job was taken over by another replica: stop without writing anything more."""


class BulkInvoicing:
    """Bulk jobs of one replica: enqueue, claim, run with a heartbeat, read.

    ``clock`` gives every instant written to the job rows (leases included), so a test moves
    a ``ManualClock`` past a lease instead of sleeping. ``poll_s`` is real time: how often
    the loop renews and claims. ``max_jobs`` bounds the jobs one replica runs at once (the
    rest wait ``queued`` for it or another replica); each commits ``chunk`` invoices at a time.
    """

    def __init__(self, engine: Engine, invoicing: Invoicing, *, clock: Clock | None = None,
                 replica_id: str | None = None, lease_ms: int = LEASE_MS, poll_s: float = POLL_S,
                 max_jobs: int = 1, chunk: int = CHUNK) -> None:
        if not 0 < poll_s * 1000 * 2 < lease_ms:
            raise ValueError("poll_s must be under half the lease, so a live claimant renews before it expires")
        self.engine, self.invoicing = engine, invoicing
        self.clock: Clock = clock or SystemClock()
        self.replica_id = replica_id or default_replica_id()
        self.lease_ms, self.poll_s, self.max_jobs, self.chunk = lease_ms, poll_s, max_jobs, chunk
        self._running: dict[str, Claim] = {}  # jobs this replica runs, by id
        self._lost: set[str] = set()  # of those, the ones another replica took over
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._loop: threading.Thread | None = None

    # ---- the API's side --------------------------------------------------------------
    def enqueue(self, cutoff_ms: int, actor: str) -> dict[str, Any]:
        """Record the job ``queued``; this replica's loop (or another's) claims it."""
        job_id = new_id("job")
        with self.engine.begin() as conn:
            conn.execute(insert(jobs).values(id=job_id, status="queued", cutoff_date=cutoff_ms // 1000 * 1000,
                                             invoices_created=0, invoices_skipped=0, invoices_existing=0, errors="[]",
                                             created_at=self.clock.now_ms(), actor=actor))
        self._wake.set()
        return {"job_id": job_id, "status": "queued"}

    def get(self, job_id: str) -> dict[str, Any]:
        """The job as §12 shows it, read from the shared store: any replica answers for any job."""
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            raise NotFound("JOB_NOT_FOUND", f"No job '{job_id}'.")
        return job_out(row)

    # ---- the poll loop ---------------------------------------------------------------
    def start(self) -> None:
        """Start this replica's poll loop: it resumes at once whatever a dead process left unclaimed."""
        if self._loop is not None:
            return
        self._stop.clear()
        self._draining.clear()
        self._loop = threading.Thread(target=self._poll, name=f"bulk-poll-{self.replica_id}", daemon=True)
        self._loop.start()

    def resume_interrupted(self) -> None:
        """Start the poll loop (the name ``Services.start`` calls).

        Jobs a stopped or crashed process left ``queued``, or ``running`` with an expired
        lease, are claimed like any other; reruns are safe (one invoice per subscription
        period) and count what the interrupted run issued as ``invoices_existing``.
        """
        self.start()

    def join(self, timeout: float = 30) -> None:
        """Stop claiming; keep renewing while the jobs running here finish (up to ``timeout``), then stop.

        A job still running after ``timeout`` keeps its claim until the lease runs out; then
        another replica (or this one, restarted) takes it over.
        """
        self._draining.set()
        self._wake.set()
        for t in list(self._threads):
            t.join(timeout)
        self._stop.set()
        self._wake.set()
        if self._loop is not None:
            self._loop.join(timeout)
            self._loop = None
        for t in list(self._threads):  # one the loop started as draining began
            t.join(timeout)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before the tick: a wake during it (a new job, a finished run) is not lost
            try:
                self.renew()
                while not self._draining.is_set() and self._has_room():
                    claim = self.claim_next()
                    if claim is None:
                        break
                    self._start_run(claim)
            except Exception as exc:  # the store is down or busy: try again at the next poll
                log.error("bulk_poll_failed", replica=self.replica_id, exc_info=exc)
            self._wake.wait(self.poll_s)

    def _has_room(self) -> bool:
        with self._lock:
            return len(self._running) < self.max_jobs

    def _start_run(self, claim: Claim) -> None:
        def target() -> None:
            try:
                self.run(claim)
            finally:
                self._wake.set()  # room for the next job

        thread = threading.Thread(target=target, name=f"bulk-{claim.job_id}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    # ---- claims ----------------------------------------------------------------------
    def claim_next(self) -> Claim | None:
        """Claim the oldest job no live replica holds, or None.

        The row lock (PostgreSQL) makes concurrent claimants take different rows without
        waiting; the compare-and-set on ``attempts`` makes a claim exact where there is no
        lock (SQLite), and refuses a row that changed after it was read.
        """
        now = self.clock.now_ms()
        with self.engine.begin() as conn:
            row = self._candidate(conn, now)
            claim = self._take(conn, row, now) if row is not None else None
        if claim is None:
            return None
        with self._lock:
            self._running[claim.job_id] = claim
        log.info("bulk_job_claimed", job_id=claim.job_id, replica=self.replica_id, attempt=claim.attempts,
                 takeover=claim.attempts > 1)
        return claim

    @staticmethod
    def _claimable(now: int) -> Any:
        return jobs.c.status.in_(_OPEN) & (jobs.c.lease_until.is_(None) | (jobs.c.lease_until <= now))

    def _candidate(self, conn: Connection, now: int) -> dict[str, Any] | None:
        """The oldest claimable job, its row locked (PostgreSQL) unless another claimant holds it."""
        row = conn.execute(select(jobs.c.id, jobs.c.cutoff_date, jobs.c.actor, jobs.c.attempts)
                           .where(self._claimable(now)).order_by(jobs.c.created_at, jobs.c.id).limit(1)
                           .with_for_update(skip_locked=True)).mappings().first()
        return dict(row) if row is not None else None

    def _take(self, conn: Connection, row: dict[str, Any], now: int) -> Claim | None:
        """Claim ``row`` as read, if it is still claimable and unchanged (the compare-and-set); else None."""
        seen = row["attempts"] or 0
        won = conn.execute(update(jobs).where((jobs.c.id == row["id"]) & self._claimable(now)
                                              & (func.coalesce(jobs.c.attempts, 0) == seen))
                           .values(status="running", claimed_by=self.replica_id, lease_until=now + self.lease_ms,
                                   attempts=seen + 1, started_at=func.coalesce(jobs.c.started_at, now))).rowcount
        if won != 1:  # another replica claimed it between the read and the write
            return None
        return Claim(row["id"], row["cutoff_date"], row["actor"] or "system", seen + 1)

    def _mine(self, claim: Claim) -> Any:
        return (jobs.c.id == claim.job_id) & (jobs.c.claimed_by == self.replica_id) & (jobs.c.attempts == claim.attempts)

    def renew(self) -> list[str]:
        """Extend the lease of every job running here (the heartbeat); the ids of those lost meanwhile."""
        with self._lock:
            held = [c for c in self._running.values() if c.job_id not in self._lost]
        lost = []
        for claim in held:
            with self.engine.begin() as conn:
                kept = conn.execute(update(jobs).where(self._mine(claim) & (jobs.c.status == "running"))
                                    .values(lease_until=self.clock.now_ms() + self.lease_ms)).rowcount
                # Not renewed: lost, unless the run finished between the copy above and the update.
                if kept != 1 and conn.execute(select(jobs.c.id).where(self._mine(claim))).first() is None:
                    lost.append(claim.job_id)
        if lost:
            with self._lock:
                self._lost.update(lost)
            for job_id in lost:
                log.warning("bulk_job_lost", job_id=job_id, replica=self.replica_id)
        return lost

    def _set(self, claim: Claim, **values: Any) -> None:
        """Write to the job row only while the claim is still ours; else stop the run."""
        with self.engine.begin() as conn:
            if conn.execute(update(jobs).where(self._mine(claim)).values(**values)).rowcount != 1:
                raise _Lost

    def _check(self, claim: Claim) -> None:
        with self._lock:
            if claim.job_id in self._lost:
                raise _Lost

    # ---- one run ---------------------------------------------------------------------
    def run(self, claim: Claim) -> None:
        """Invoice every billable subscription at the job's cutoff, chunk by chunk, under ``claim``."""
        counts = {"invoices_created": 0, "invoices_skipped": 0, "invoices_existing": 0}
        errors: list[dict[str, Any]] = []
        try:
            try:
                self._invoice_all(claim, counts, errors)
            except _Lost:
                raise
            except Exception as exc:  # the job itself could not run
                log.error("bulk_job_failed", job_id=claim.job_id, exc_info=exc)
                self._set(claim, status="failed", finished_at=self.clock.now_ms(), lease_until=None, **counts,
                          errors=msgspec.json.encode([*errors, {"customer_id": None, "subscription_id": None,
                                                                "error": "INTERNAL_ERROR"}]).decode())
        except _Lost:
            log.warning("bulk_job_abandoned", job_id=claim.job_id, replica=self.replica_id, **counts)
        finally:
            with self._lock:
                self._running.pop(claim.job_id, None)
                self._lost.discard(claim.job_id)

    def _invoice_all(self, claim: Claim, counts: dict[str, int], errors: list[dict[str, Any]]) -> None:
        cutoff_ms = claim.cutoff_ms
        with self.engine.connect() as conn:
            subs = [dict(r) for r in conn.execute(select(subscriptions).order_by(subscriptions.c.id)).mappings()]
            timelines = load_amendments(conn, None)
            groups: list[list[Window]] = []
            for sub in subs:
                try:
                    ws = billable_windows(conn, sub, cutoff_ms, Timeline(sub, timelines.get(sub["id"], [])))
                except AbaxusError as exc:
                    errors.append({"customer_id": sub["customer_id"], "subscription_id": sub["id"], "error": exc.code})
                    continue
                if ws:
                    groups.append(ws)
            live = {r[0] for r in conn.execute(select(invoices.c.period_slot).where(invoices.c.period_slot.is_not(None)))}
            specs = load_specs(conn, [w for ws in groups for w in ws])
        todo = []
        for ws in groups:
            if f"{ws[0].subscription['id']}:{ws[0].period_start}" in live:
                counts["invoices_existing"] += 1
            else:
                todo.append(ws)
        for start in range(0, len(todo), self.chunk):
            chunk = todo[start:start + self.chunk]
            with self.engine.connect() as conn:  # only amended subscriptions can carry credits
                credits = {sub["id"]: credit_lines(conn, ws[-1], Timeline(sub, timelines[sub["id"]]))
                           for ws in chunk if (sub := ws[-1].subscription)["id"] in timelines}
            as_of = self.invoicing.as_of()
            self._check(claim)  # taken over while pricing waited: the new claimant issues these
            priced = price_windows(self.invoicing.usage, [w for ws in chunk for w in ws], specs, as_of)
            for p in priced:
                p.lines.extend(credits.get(p.window.subscription["id"], []))
            billable = [p for p in priced if p.total != 0]
            counts["invoices_skipped"] += len(priced) - len(billable)
            created = self.invoicing.issue_many(billable, as_of, claim.actor)
            counts["invoices_created"] += created
            counts["invoices_existing"] += len(billable) - created
            self._set(claim, **counts, errors=_errors(errors))
        self._set(claim, status="succeeded", finished_at=self.clock.now_ms(), lease_until=None, **counts,
                  errors=_errors(errors))

    def running(self) -> Mapping[str, Claim]:
        """The jobs this replica is running now (a copy), by id."""
        with self._lock:
            return dict(self._running)


def _errors(errors: list[dict[str, Any]]) -> str:
    return msgspec.json.encode(errors).decode()
