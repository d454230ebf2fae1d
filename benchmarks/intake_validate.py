"""The intake's fast path per 1,000-event batch: before, now, and the floor (issue 11).

Prints, side by side in one run, milliseconds per 1,000-event batch for

* ``before``: ``EventValidator.validate_batch`` as it was at ``BASELINE`` (its module and
  ``abaxus.ids`` read from git at that commit into temporary modules),
* ``now``: ``EventValidator.validate_batch`` of this checkout,
* ``floor``: a bare ``msgspec.json.Decoder(EventBatchTyped).decode(body)``, the decode both
  paths start with and no validator can go below,

for two body shapes: ``ints`` as ``benchmarks/ingest.py`` sends (100 customers, integer
values, ``{"region": "eu"}``) and ``decimals`` (decimal-string values, five properties,
``+02:00`` offsets with milliseconds). The catalog is a real SQLite metadata store filled
through the billing functions. The three run in turns, round after round, so a neighbour's
load on a shared machine falls on all three alike; each figure is the best round, and the
median round is shown next to it. Before timing, both validators must give the same
accepted events and the same Arrow batch (``accepted_at`` aside) for every body.

    python benchmarks/intake_validate.py [--rounds 15] [--batches 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from abaxus.billing.customers import create_customer
from abaxus.billing.metrics import create_metric
from abaxus.clock import SystemClock
from abaxus.pipeline.catalog_view import CatalogView
from abaxus.pipeline.intake import EventValidator
from abaxus.schemas.catalog import CustomerCreate, MetricCreate
from abaxus.schemas.events import EventBatchTyped
from abaxus.store.metadata import migrate, open_engine

REPO = Path(__file__).resolve().parent.parent
BASELINE = "c3efa9f5d93afb808fd9e820eeaac9a704da47e5"  # main before the fast path was reworked
CUSTOMERS, BATCH = 100, 1000


# ---- the baseline, from git -----------------------------------------------------------------
def _module_at(commit: str, path: str, name: str) -> types.ModuleType:
    """``path`` as it was at ``commit``, imported as a throwaway module named ``name``."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:{path}"], check=True, capture_output=True,
                            text=True).stdout
    module = types.ModuleType(name)
    module.__file__ = f"{commit[:8]}:{path}"
    sys.modules[name] = module  # dataclasses and NamedTuple look their module up while the class is made
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def baseline_validator(view: CatalogView) -> Any:
    """An ``EventValidator`` of ``BASELINE`` that also uses that commit's ``event_ids_for``."""
    old_ids = _module_at(BASELINE, "core/ids.py", "_baseline_ids")
    old_intake = _module_at(BASELINE, "pipeline/intake.py", "_baseline_intake")
    vars(old_intake).update(event_ids_for=old_ids.event_ids_for, event_id_for=old_ids.event_id_for)
    return old_intake.EventValidator(view)


# ---- the catalog and the bodies -------------------------------------------------------------
def catalog(data_dir: Path) -> CatalogView:
    """A real SQLite metadata store with ``CUSTOMERS`` customers and the ``api_calls`` metric."""
    engine = open_engine(f"sqlite:///{data_dir / 'metadata.db'}")
    migrate(engine)
    clock = SystemClock()
    for i in range(CUSTOMERS):
        create_customer(engine, CustomerCreate(id=f"cust_{i:04d}", name=f"Customer {i}"), clock=clock)
    create_metric(engine, MetricCreate(key="api_calls", name="API calls", aggregation="sum"), clock=clock)
    return CatalogView(engine)


def int_bodies(batches: int) -> list[bytes]:
    """The shape ``benchmarks/ingest.py`` sends: integer values, one short property."""
    bodies = []
    for start in range(0, batches * BATCH, BATCH):
        events = [{"customer_id": f"cust_{(start + i) % CUSTOMERS:04d}", "metric_key": "api_calls",
                   "value": (start + i) % 10 + 1, "timestamp": "2026-04-15T12:00:00Z",
                   "idempotency_key": f"bench-{start + i}", "properties": {"region": "eu"}}
                  for i in range(BATCH)]
        bodies.append(msgspec.json.encode({"events": events}))
    return bodies


def decimal_bodies(batches: int) -> list[bytes]:
    """Decimal-string values, five properties, an offset and milliseconds on every timestamp."""
    bodies = []
    for start in range(0, batches * BATCH, BATCH):
        events = [{"customer_id": f"cust_{(start + i) % CUSTOMERS:04d}", "metric_key": "api_calls",
                   "value": f"{(start + i) % 97}.{(start + i) % 10_000:04d}",
                   "timestamp": f"2026-04-15T12:{i % 60:02d}:{(start + i) % 60:02d}.{i % 1000:03d}+02:00",
                   "idempotency_key": f"req_{start + i:016x}",
                   "properties": {"region": "eu-west-1", "plan": "growth", "endpoint": f"/v1/items/{i % 50}",
                                  "status": "200", "user": f"user_{(start + i) % 500}"}}
                  for i in range(BATCH)]
        bodies.append(msgspec.json.encode({"events": events}))
    return bodies


# ---- checking and timing --------------------------------------------------------------------
def same_answer(before: Any, now: Any, bodies: list[bytes]) -> None:
    """Both validators accept every body, with the same answers and the same batch."""
    for body in bodies:
        old, new = before.validate_batch(body), now.validate_batch(body)
        if old is None or new is None:
            raise SystemExit("a benchmark body went to the slow path: fix the body or the catalog")
        if list(old[0]) != list(new[0]) or old[1] or new[1]:
            raise SystemExit("the accepted events differ between before and now")
        if old[2].schema != new[2].schema or not old[2].drop_columns(["accepted_at"]).equals(
                new[2].drop_columns(["accepted_at"])):
            raise SystemExit("the Arrow batches differ between before and now")


def per_batch_ms(fn: Callable[[bytes], object], bodies: list[bytes]) -> float:
    """One pass over the bodies: milliseconds per body (= per 1,000 events)."""
    start = time.perf_counter_ns()
    for body in bodies:
        fn(body)
    return (time.perf_counter_ns() - start) / len(bodies) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=15, help="turns of before/now/floor (default 15)")
    parser.add_argument("--batches", type=int, default=10, help="distinct 1,000-event bodies per shape (default 10)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        view = catalog(Path(tmp))
        before, now = baseline_validator(view), EventValidator(view)
        floor = msgspec.json.Decoder(EventBatchTyped).decode
        shapes = {"ints": int_bodies(args.batches), "decimals": decimal_bodies(args.batches)}
        print(f"ms per 1,000-event batch, best (median) of {args.rounds} rounds; baseline {BASELINE[:10]}")
        print(f"{'shape':10s} {'KB':>6s} {'before':>15s} {'now':>15s} {'floor':>15s} {'before/now':>11s}")
        for shape, bodies in shapes.items():
            same_answer(before, now, bodies)
            runs: dict[str, list[float]] = {"before": [], "now": [], "floor": []}
            fns = {"before": before.validate_batch, "now": now.validate_batch, "floor": floor}
            for fn in fns.values():  # warm caches, the catalog's sets, the decoders
                per_batch_ms(fn, bodies)
            for _ in range(args.rounds):
                for name, fn in fns.items():
                    runs[name].append(per_batch_ms(fn, bodies))
            cells = [f"{min(r):6.3f} ({statistics.median(r):6.3f})" for r in runs.values()]
            kb = statistics.mean(map(len, bodies)) / 1024
            print(f"{shape:10s} {kb:6.0f} {cells[0]:>15s} {cells[1]:>15s} {cells[2]:>15s} "
                  f"{min(runs['before']) / min(runs['now']):10.2f}×")


if __name__ == "__main__":
    main()
