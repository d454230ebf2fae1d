"""Bulk jobs across replicas: each job is claimed by one replica, renewed while it runs, taken over when it lapses.

A "replica" here is a ``BulkInvoicing`` with its own SQLAlchemy engine (its own connection
pool) on the one metadata database, SQLite or PostgreSQL, as two ``abaxus serve --role api``
processes would have. Time is a shared ``ManualClock``: a lease expires because a test moves
the clock, never because it slept. A replica is paused mid-job by its watermark (``Gate``),
which ``Invoicing`` asks once per chunk: the run then holds its claim without finishing.

The plan has one flat fee, so every subscription period is one non-zero invoice and the
usage store is never queried (it is opened, as the replicas' shared ClickHouse would be).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, text

from abaxus.billing.invoices import Invoicing
from abaxus.billing.jobs import BulkInvoicing
from abaxus.clock import ManualClock
from abaxus.settings import Settings
from abaxus.store.metadata import migrate, open_engine
from abaxus.store.tables import audit_entries, customers, invoices, jobs, plan_versions, subscriptions
from abaxus.store.usage import UsageStore
from helpers import wait_until

LEASE_MS = 10_000
POLL_S = 0.02
CUSTOMERS = 5
T0 = 1_780_000_000_000  # 2026-05-28T20:26:40Z: after every cutoff below
FEE = '[{"pricing_model":"flat_fee","id":"chg_1","description":"Base fee","amount":"49.00","metric_key":null}]'
JANUARY = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)


def end_of(month: int) -> int:
    """The last second of ``month`` 2026, in ms: a cutoff that bills that whole month."""
    first_of_next = datetime(2026, month + 1, 1, tzinfo=UTC)
    return int(first_of_next.timestamp() * 1000) - 1000


class Gate:
    """A watermark that holds a run at its chunks after the first ``passes`` until opened.

    ``held`` is set once a run waits at the gate: the replica has claimed its job and is
    paused inside it, its claim not finished.
    """

    def __init__(self, clock: ManualClock, passes: int = 0) -> None:
        self.clock, self.passes = clock, passes
        self.calls = 0
        self.held = threading.Event()
        self.opened = threading.Event()
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self.calls += 1
            hold = self.calls > self.passes
        if hold and not self.opened.is_set():
            self.held.set()
            assert self.opened.wait(60), "a test forgot to open its gate"
        return self.clock.now_ms()


@pytest.fixture(scope="module")
def usage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UsageStore]:
    store = UsageStore(Settings(data_dir=tmp_path_factory.mktemp("usage") / "data"))
    yield store
    store.close()


@pytest.fixture
def url(database_url: str | None, tmp_path: Path) -> str:
    """The metadata database the replicas share: a SQLite file, or the reset PostgreSQL test database."""
    return database_url or f"sqlite:///{tmp_path / 'metadata.db'}"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def catalog(url: str) -> Iterator[Engine]:
    """The schema, one flat-fee plan and ``CUSTOMERS`` customers subscribed since January; an engine of the test's own.

    Rows as the catalog API stores them, written directly: these tests are about jobs.
    """
    engine = open_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(insert(plan_versions).values(
            plan_id="plan_flat", version=1, name="Flat", currency="usd", billing_period="monthly",
            charges=FEE, entitlements="[]", changelog=None, effective_from=JANUARY,
            created_at=JANUARY, deprecated_at=None, minimum=None))
        for i in range(CUSTOMERS):
            conn.execute(insert(customers).values(id=f"cust_{i}", name=f"Customer {i}", metadata="{}",
                                                  created_at=JANUARY, updated_at=JANUARY))
            conn.execute(insert(subscriptions).values(id=f"sub_{i}", customer_id=f"cust_{i}", plan_id="plan_flat",
                                                      plan_version=1, start_date=JANUARY, created_at=JANUARY))
    yield engine
    engine.dispose()


Replica = Callable[..., BulkInvoicing]


@pytest.fixture
def replica(url: str, usage: UsageStore, clock: ManualClock, catalog: Engine) -> Iterator[Replica]:
    """Make a replica named ``name``: its own engine, the shared clock, a short lease and a fast poll."""
    made: list[tuple[BulkInvoicing, Gate | None]] = []

    def make(name: str, gate: Gate | None = None, **options: Any) -> BulkInvoicing:
        engine = open_engine(url)
        invoicing = Invoicing(engine, usage, gate or clock.now_ms)
        bulk = BulkInvoicing(engine, invoicing, clock=clock, replica_id=name,
                             **{"lease_ms": LEASE_MS, "poll_s": POLL_S, **options})
        made.append((bulk, gate))
        return bulk

    yield make
    for bulk, gate in made:
        if gate is not None:
            gate.opened.set()
        bulk.join(timeout=10)
        bulk.engine.dispose()


def job_row(engine: Engine, job_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one())


def invoiced_periods(engine: Engine) -> Counter[tuple[str, int]]:
    """How many invoices each (customer, period start) has: a customer billed twice shows a 2."""
    with engine.connect() as conn:
        return Counter((r.customer_id, r.period_start) for r in conn.execute(
            select(invoices.c.customer_id, invoices.c.period_start)))


def issued_entries(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_entries)
                                .where(audit_entries.c.type == "invoice.issued")).scalar_one())


def claimable(engine: Engine, now: int) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(jobs).where(
            jobs.c.status.in_(("queued", "running")) & (jobs.c.lease_until.is_(None) | (jobs.c.lease_until <= now))))
            .scalar_one())


# ---- claims ---------------------------------------------------------------------------------
def test_racing_replicas_claim_each_job_exactly_once(replica: Replica, catalog: Engine, clock: ManualClock) -> None:
    """Eight threads of two replicas claim 40 queued jobs at once: every job is claimed once, by one replica."""
    a, b = replica("replica-a"), replica("replica-b")
    ids = {a.enqueue(end_of(4), "key_test")["job_id"] for _ in range(40)}
    start = threading.Barrier(8)
    taken: list[tuple[str, str]] = []
    lock = threading.Lock()

    def claim_all(r: BulkInvoicing) -> None:
        start.wait()
        while True:
            claim = r.claim_next()
            if claim is not None:
                with lock:
                    taken.append((claim.job_id, r.replica_id))
            elif not claimable(r.engine, clock.now_ms()):
                return

    threads = [threading.Thread(target=claim_all, args=(r,)) for r in (a, b) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    counts = Counter(job_id for job_id, _ in taken)
    assert set(counts) == ids
    assert [job_id for job_id, n in counts.items() if n > 1] == []
    for job_id, replica_id in taken:
        row = job_row(catalog, job_id)
        assert (row["status"], row["claimed_by"], row["attempts"]) == ("running", replica_id, 1)
        assert row["lease_until"] == clock.now_ms() + LEASE_MS


def test_a_claim_read_before_another_replica_claimed_is_refused(replica: Replica, catalog: Engine,
                                                                clock: ManualClock) -> None:
    """The compare-and-set: a replica that read the job as free, then lost it, writes nothing.

    Its read is even older than the other replica's lease: after that lease lapsed the job is
    claimable again, yet the stale read (``attempts`` 0) no longer matches the row (1).
    """
    a, b = replica("replica-a"), replica("replica-b")
    job_id = a.enqueue(end_of(4), "key_test")["job_id"]
    with b.engine.begin() as conn:
        stale = b._candidate(conn, clock.now_ms())
    assert stale is not None
    assert stale["id"] == job_id
    claim = a.claim_next()
    assert claim is not None
    assert claim.attempts == 1
    clock.advance(LEASE_MS)  # a's lease has lapsed: the row is claimable, but not on b's stale read
    with b.engine.begin() as conn:
        assert b._take(conn, stale, clock.now_ms()) is None
    row = job_row(catalog, job_id)
    assert (row["claimed_by"], row["attempts"]) == ("replica-a", 1)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_claim_skips_a_job_another_replica_has_locked_without_waiting(replica: Replica, catalog: Engine,
                                                                       clock: ManualClock) -> None:
    """SKIP LOCKED: while one transaction holds the oldest job's row, a claim takes the next one at once."""
    a = replica("replica-a")
    first = a.enqueue(end_of(3), "key_test")["job_id"]
    clock.advance(1)  # ``first`` is the oldest: the one a claim would take
    second = a.enqueue(end_of(4), "key_test")["job_id"]
    got: list[str | None] = []
    with catalog.connect() as locker:
        locker.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": first})
        claimer = threading.Thread(target=lambda: got.append(getattr(a.claim_next(), "job_id", None)), daemon=True)
        claimer.start()
        claimer.join(5)  # a claim that waited on the lock would still be waiting
        finished = not claimer.is_alive()
        locker.rollback()
    claimer.join(10)
    assert finished, "the claim waited for the locked row instead of skipping it"
    assert got == [second]


# ---- runs -----------------------------------------------------------------------------------
def test_two_replicas_run_each_job_once_and_bill_each_period_once(replica: Replica, catalog: Engine,
                                                                 clock: ManualClock) -> None:
    """Four months' jobs on two polling replicas that take one job at a time: both run, none twice."""
    gate_a, gate_b = Gate(clock), Gate(clock)
    a, b = replica("replica-a", gate_a), replica("replica-b", gate_b)
    ids = [a.enqueue(end_of(month), "key_test")["job_id"] for month in (1, 2, 3, 4)]
    a.start()
    b.start()
    assert gate_a.held.wait(30)
    assert gate_b.held.wait(30)
    held = {job_id: job_row(catalog, job_id)["claimed_by"] for job_id in ids}
    assert sorted(v for v in held.values() if v) == ["replica-a", "replica-b"]
    assert set(a.running()) | set(b.running()) == {k for k, v in held.items() if v}
    gate_a.opened.set()
    gate_b.opened.set()
    wait_until(lambda: all(job_row(catalog, j)["status"] == "succeeded" for j in ids), timeout=30)
    rows = [job_row(catalog, j) for j in ids]
    assert [(r["attempts"], r["invoices_created"], r["invoices_existing"], r["invoices_skipped"]) for r in rows] == [
        (1, CUSTOMERS, 0, 0)] * 4
    assert {r["claimed_by"] for r in rows} == {"replica-a", "replica-b"}
    assert all(r["lease_until"] is None for r in rows)  # released when done
    periods = invoiced_periods(catalog)
    assert len(periods) == 4 * CUSTOMERS
    assert set(periods.values()) == {1}
    assert issued_entries(catalog) == 4 * CUSTOMERS


def test_a_crashed_claimant_is_taken_over_and_no_customer_is_billed_twice(replica: Replica, catalog: Engine,
                                                                         clock: ManualClock) -> None:
    """Replica a issues the first chunk, then stops renewing (its engine disposed, its run stalled).

    Replica b takes the job over only once a's lease has lapsed, finishes it (the periods a
    billed count as existing), and when a's stalled run wakes up it bills nobody again and
    leaves b's result alone.
    """
    gate = Gate(clock, passes=1)
    a = replica("replica-a", gate, chunk=2)  # never started: no heartbeat, as after a crash
    b = replica("replica-b")
    job_id = a.enqueue(end_of(4), "key_test")["job_id"]
    claim = a.claim_next()
    assert claim is not None
    stalled = threading.Thread(target=a.run, args=(claim,), daemon=True)
    stalled.start()
    assert gate.held.wait(30)  # chunk 1 (2 invoices) committed, chunk 2 waiting
    assert job_row(catalog, job_id)["invoices_created"] == 2
    a.engine.dispose()

    clock.advance(LEASE_MS - 1)
    assert b.claim_next() is None  # a's lease still holds
    clock.advance(1)
    b.start()  # b's poll loop takes the lapsed job over
    done = wait_until(lambda: (r := job_row(catalog, job_id))["status"] == "succeeded" and r, timeout=30)
    assert (done["claimed_by"], done["attempts"]) == ("replica-b", 2)
    assert (done["invoices_created"], done["invoices_existing"]) == (CUSTOMERS - 2, 2)

    gate.opened.set()  # a wakes: its chunk 2 conflicts with b's invoices and its write is fenced off
    stalled.join(30)
    assert not stalled.is_alive()
    assert job_row(catalog, job_id) == done
    periods = invoiced_periods(catalog)
    assert len(periods) == CUSTOMERS
    assert set(periods.values()) == {1}
    assert issued_entries(catalog) == CUSTOMERS
    assert a.running() == {}


def test_a_live_claimant_that_renews_keeps_its_job(replica: Replica, catalog: Engine, clock: ManualClock) -> None:
    """Three leases' worth of time pass while a runs; its heartbeat keeps the job from b throughout."""
    gate = Gate(clock)
    a, b = replica("replica-a", gate), replica("replica-b")
    job_id = a.enqueue(end_of(4), "key_test")["job_id"]
    a.start()
    assert gate.held.wait(30)
    for _ in range(5):
        now = clock.advance(LEASE_MS * 6 // 10)  # less than a lease since the last renewal
        wait_until(lambda now=now: job_row(catalog, job_id)["lease_until"] == now + LEASE_MS)  # a renewed
        assert b.claim_next() is None
    gate.opened.set()
    done = wait_until(lambda: (r := job_row(catalog, job_id))["status"] == "succeeded" and r, timeout=30)
    assert (done["claimed_by"], done["attempts"], done["invoices_created"]) == ("replica-a", 1, CUSTOMERS)
    assert set(invoiced_periods(catalog).values()) == {1}


def test_a_replica_that_lost_its_job_stops_before_billing(replica: Replica, catalog: Engine,
                                                         clock: ManualClock) -> None:
    """The heartbeat that finds another replica's claim marks the job lost; the run stops at its next chunk."""
    gate = Gate(clock)
    a, b = replica("replica-a", gate), replica("replica-b")
    job_id = a.enqueue(end_of(4), "key_test")["job_id"]
    claim = a.claim_next()
    assert claim is not None
    stalled = threading.Thread(target=a.run, args=(claim,), daemon=True)
    stalled.start()
    assert gate.held.wait(30)
    clock.advance(LEASE_MS)
    taken = b.claim_next()
    assert taken is not None
    assert taken.attempts == 2
    assert a.renew() == [job_id]
    gate.opened.set()
    stalled.join(30)
    assert invoiced_periods(catalog) == Counter()  # a issued nothing; b has not run yet
    row = job_row(catalog, job_id)
    assert (row["status"], row["claimed_by"], row["invoices_created"]) == ("running", "replica-b", 0)
    b.run(taken)
    assert job_row(catalog, job_id)["invoices_created"] == CUSTOMERS


def test_a_job_left_running_before_claims_existed_is_resumed(replica: Replica, catalog: Engine) -> None:
    """A row an older release left ``running`` has no claim (NULL lease): the poll loop resumes it."""
    with catalog.begin() as conn:
        conn.execute(jobs.insert().values(id="job_old", status="running", cutoff_date=end_of(4), invoices_created=0,
                                          invoices_skipped=0, invoices_existing=0, errors="[]", created_at=T0,
                                          started_at=T0, actor="key_x"))
    replica("replica-a").start()
    done = wait_until(lambda: (r := job_row(catalog, "job_old"))["status"] == "succeeded" and r, timeout=30)
    assert (done["claimed_by"], done["attempts"], done["invoices_created"], done["started_at"]) == (
        "replica-a", 1, CUSTOMERS, T0)


def test_a_job_enqueued_here_starts_without_waiting_for_the_next_poll(replica: Replica, catalog: Engine) -> None:
    """``enqueue`` wakes the replica's own loop: the job is done long before a 60 s poll would come round."""
    a = replica("replica-a", poll_s=60.0, lease_ms=600_000)
    a.start()
    job_id = a.enqueue(end_of(4), "key_test")["job_id"]
    wait_until(lambda: job_row(catalog, job_id)["status"] == "succeeded", timeout=20)
