"""Bulk invoicing as a background job (§12): safe to rerun, errors per subscription.

Usage for every billable subscription is read with one query per distinct window (grouped
by customer and metric) and each charge is rated in one vectorised call across customers.
"""

from __future__ import annotations

import threading
from typing import Any

import msgspec
from sqlalchemy import Engine, insert, select, update

from abaxus.billing.invoices import Invoicing
from abaxus.billing.pricing import Window, billable_windows, load_specs, price_windows
from abaxus.billing.proration import credit_lines
from abaxus.billing.timeline import Timeline, load_amendments
from abaxus.errors import AbaxusError, NotFound
from abaxus.ids import new_id
from abaxus.logging import get_logger
from abaxus.store.tables import invoices, jobs, subscriptions
from abaxus.timefmt import format_ms, now_ms

__all__ = ["BulkInvoicing"]

log = get_logger("abaxus.jobs")
CHUNK = 5000


def job_out(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "status": row["status"], "cutoff_date": format_ms(row["cutoff_date"]),
            "invoices_created": row["invoices_created"], "invoices_skipped": row["invoices_skipped"],
            "invoices_existing": row["invoices_existing"], "errors": msgspec.json.decode(row["errors"]),
            "created_at": format_ms(row["created_at"]), "started_at": format_ms(row["started_at"]),
            "finished_at": format_ms(row["finished_at"])}


class BulkInvoicing:
    def __init__(self, engine: Engine, invoicing: Invoicing) -> None:
        self.engine, self.invoicing = engine, invoicing
        self._threads: list[threading.Thread] = []

    def enqueue(self, cutoff_ms: int, actor: str) -> dict[str, Any]:
        job_id = new_id("job")
        with self.engine.begin() as conn:
            conn.execute(insert(jobs).values(id=job_id, status="queued", cutoff_date=cutoff_ms // 1000 * 1000,
                                             invoices_created=0, invoices_skipped=0, invoices_existing=0, errors="[]",
                                             created_at=now_ms(), actor=actor))
        self._start(job_id, cutoff_ms // 1000 * 1000, actor)
        return {"job_id": job_id, "status": "queued"}

    def _start(self, job_id: str, cutoff_ms: int, actor: str) -> None:
        thread = threading.Thread(target=self.run, args=(job_id, cutoff_ms, actor), name=f"bulk-{job_id}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def resume_interrupted(self) -> None:
        """Run again the jobs a stopped or crashed process left queued or running.

        Reruns are safe (one invoice per subscription period); invoices the interrupted run
        already issued are then counted as ``invoices_existing``.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs).where(jobs.c.status.in_(["queued", "running"]))
                                .order_by(jobs.c.created_at)).mappings().all()
        for row in rows:
            log.info("bulk_job_resumed", job_id=row["id"])
            self._start(row["id"], row["cutoff_date"], row["actor"] or "system")

    def get(self, job_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            raise NotFound("JOB_NOT_FOUND", f"No job '{job_id}'.")
        return job_out(row)

    def _set(self, job_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))

    def run(self, job_id: str, cutoff_ms: int, actor: str) -> None:
        self._set(job_id, status="running", started_at=now_ms())
        counts = {"invoices_created": 0, "invoices_skipped": 0, "invoices_existing": 0}
        errors: list[dict[str, Any]] = []
        try:
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
            for start in range(0, len(todo), CHUNK):
                chunk = todo[start:start + CHUNK]
                with self.engine.connect() as conn:  # only amended subscriptions can carry credits
                    credits = {sub["id"]: credit_lines(conn, ws[-1], Timeline(sub, timelines[sub["id"]]))
                               for ws in chunk if (sub := ws[-1].subscription)["id"] in timelines}
                as_of = self.invoicing.as_of()
                priced = price_windows(self.invoicing.usage, [w for ws in chunk for w in ws], specs, as_of)
                for p in priced:
                    p.lines.extend(credits.get(p.window.subscription["id"], []))
                billable = [p for p in priced if p.total != 0]
                counts["invoices_skipped"] += len(priced) - len(billable)
                created = self.invoicing.issue_many(billable, as_of, actor)
                counts["invoices_created"] += created
                counts["invoices_existing"] += len(billable) - created
                self._set(job_id, **counts, errors=msgspec.json.encode(errors).decode())
            self._set(job_id, status="succeeded", finished_at=now_ms(), **counts, errors=msgspec.json.encode(errors).decode())
        except Exception as exc:  # the job itself could not run
            log.error("bulk_job_failed", job_id=job_id, exc_info=exc)
            self._set(job_id, status="failed", finished_at=now_ms(), **counts,
                      errors=msgspec.json.encode([*errors, {"customer_id": None, "subscription_id": None,
                                                            "error": "INTERNAL_ERROR"}]).decode())

    def join(self, timeout: float = 30) -> None:
        for t in self._threads:
            t.join(timeout)
