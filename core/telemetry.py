"""Prometheus metrics of one Abaxus instance (its own registry, so tests can run many apps).

``abaxus serve`` with intake processes runs several processes behind one port, and a scrape
reaches whichever of them takes the connection; each counting alone, ``/metrics`` would show
that one process's counts (events are stored, and counted, only by the server). There every
process first calls ``share_across_processes``: prometheus_client's multiprocess mode keeps
each process's values in files of one directory and any process renders the sum of them all.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["Telemetry", "share_across_processes"]

_SHARED_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def share_across_processes(directory: Path, *, fresh: bool) -> None:
    """From now on, this process's metrics live in ``directory``, summed with every other process's there.

    Call it before the first ``Telemetry``: a metric picks where it keeps its value when it is
    made. ``fresh`` (the server, at start): remove what processes of an earlier run left, so
    counts start from zero as a restarted single process's do. A process that ends leaves its
    file, so its counts stay in the totals (counters never go down).
    """
    directory.mkdir(parents=True, exist_ok=True)
    if fresh:
        for old in directory.glob("*.db"):
            old.unlink()
    os.environ[_SHARED_DIR_VARIABLE] = str(directory)
    # What prometheus_client picks at import from the same variable, picked again now that it is set.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]  # prometheus_client leaves it untyped


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_ingested = Counter("abaxus_events_ingested", "Events written to the usage store.", registry=self.registry)
        self.events_deduplicated = Counter(
            "abaxus_events_deduplicated", "Events dropped as repeats of an idempotency key.", registry=self.registry)
        self.events_rejected = Counter(
            "abaxus_events_rejected", "Events refused at intake, by error code.", ["code"], registry=self.registry)
        self.pipeline_lag = Gauge(
            "abaxus_pipeline_lag_seconds", "Age of the oldest accepted event not yet in the usage store.",
            registry=self.registry, multiprocess_mode="mostrecent")
        self.intake_backlog = Gauge(
            "abaxus_intake_backlog_events", "Events acknowledged (durable) but not yet in the usage store.",
            registry=self.registry, multiprocess_mode="mostrecent")
        self.intake_backlog_limit = Gauge(
            "abaxus_intake_backlog_limit_events", "Back-pressure bound on the backlog; past it events get 503.",
            registry=self.registry, multiprocess_mode="mostrecent")
        self.intake_lag_limit = Gauge(
            "abaxus_intake_lag_limit_seconds", "Back-pressure bound on the pipeline lag; past it events get 503.",
            registry=self.registry, multiprocess_mode="mostrecent")
        self.intake_refused = Counter(
            "abaxus_intake_refused_requests", "Event requests answered 503 with nothing accepted, by reason.",
            ["reason"], registry=self.registry)
        self.worker_partition_lag = Gauge(
            "abaxus_worker_partition_lag_messages",
            "Messages of each Kafka partition not yet in the usage store (a worker's /metrics).", ["partition"],
            registry=self.registry, multiprocess_mode="mostrecent")
        self.http_duration = Histogram(
            "abaxus_http_request_duration_seconds", "HTTP request latency.", ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    def render(self) -> bytes:
        shared = os.environ.get(_SHARED_DIR_VARIABLE)
        if shared is None:
            return generate_latest(self.registry)
        everyone = CollectorRegistry()
        MultiProcessCollector(everyone, path=shared)  # type: ignore[no-untyped-call]  # registers itself; untyped
        return generate_latest(everyone)
