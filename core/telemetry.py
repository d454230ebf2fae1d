"""Prometheus metrics of one Abaxus instance (its own registry, so tests can run many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Telemetry"]


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
            registry=self.registry)
        self.intake_backlog = Gauge(
            "abaxus_intake_backlog_events", "Events acknowledged (durable) but not yet in the usage store.",
            registry=self.registry)
        self.intake_backlog_limit = Gauge(
            "abaxus_intake_backlog_limit_events", "Back-pressure bound on the backlog; past it events get 503.",
            registry=self.registry)
        self.intake_lag_limit = Gauge(
            "abaxus_intake_lag_limit_seconds", "Back-pressure bound on the pipeline lag; past it events get 503.",
            registry=self.registry)
        self.intake_refused = Counter(
            "abaxus_intake_refused_requests", "Event requests answered 503 with nothing accepted, by reason.",
            ["reason"], registry=self.registry)
        self.worker_partition_lag = Gauge(
            "abaxus_worker_partition_lag_messages",
            "Messages of each Kafka partition not yet in the usage store (a worker's /metrics).", ["partition"],
            registry=self.registry)
        self.http_duration = Histogram(
            "abaxus_http_request_duration_seconds", "HTTP request latency.", ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    def render(self) -> bytes:
        return generate_latest(self.registry)
