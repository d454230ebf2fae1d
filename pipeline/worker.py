"""The worker role (``abaxus serve --role worker``): Kafka → dedup → usage store, with its own health port.

The worker owns no HTTP API: API replicas produce to Kafka and read the usage store. What
an operator needs from a worker is on ``ABAXUS_WORKER_PORT``: ``/healthz`` (the process
answers), ``/readyz`` (the dataflow runs, the usage store answers and takes inserts, the
broker answers) and ``/metrics`` (events written, duplicates dropped, and the lag of every
partition in messages: the broker's end offset minus what the usage store holds).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaException, TopicPartition

from abaxus.logging import get_logger
from abaxus.pipeline.dataflow import Dataflow
from abaxus.pipeline.kafka import topic_partitions
from abaxus.settings import Settings
from abaxus.store.usage import UsageStore
from abaxus.telemetry import Telemetry

__all__ = ["Worker", "wait_until_stopped"]

log = get_logger("abaxus.worker")
_OK, _UNAVAILABLE, _NOT_FOUND = 200, 503, 404


class Worker:
    """One worker process: the dataflow (``workers`` Bytewax workers) and its health server."""

    def __init__(self, settings: Settings, usage: UsageStore, *, workers: int = 1, process_id: int | None = None,
                 addresses: list[str] | None = None) -> None:
        assert settings.kafka_brokers is not None, "a worker reads Kafka: set ABAXUS_KAFKA_BROKERS"
        self.settings = settings
        self.usage = usage
        self.telemetry = Telemetry()
        self.partitions = topic_partitions(settings.kafka_brokers, settings.kafka_topic, settings.kafka_partitions)
        self.dataflow = Dataflow(settings, usage, None, self.telemetry, workers=workers, process_id=process_id,
                                 addresses=addresses)
        self._probe = Consumer({"bootstrap.servers": settings.kafka_brokers, "group.id": "abaxus-lag-probe",
                                "enable.auto.commit": False})
        self._probe_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self.dataflow.start()
        handler = _handler(self)
        self._server = ThreadingHTTPServer((self.settings.host, self.settings.worker_port), handler)
        threading.Thread(target=self._server.serve_forever, name="abaxus-worker-health", daemon=True).start()
        log.info("worker_started", topic=self.settings.kafka_topic, partitions=self.partitions,
                 health=f"http://{self.settings.host}:{self._server.server_address[1]}")

    @property
    def health_port(self) -> int:
        return int(self._server.server_address[1]) if self._server else 0

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.dataflow.stop()
        self._probe.close()

    # ---- what the health port answers -------------------------------------------------------
    def problems(self) -> dict[str, str | None]:
        """``dataflow``, ``usage_store`` and ``queue``: None if the part works, else what is wrong."""
        flow = self.dataflow
        dataflow = None if flow.healthy() else str(flow.error or "the dataflow is not running")[:300]
        answers = self.usage.healthy()
        usage = (None if answers and flow.store_problem is None
                 else "the usage store does not answer queries" if not answers else f"inserts fail: {flow.store_problem}")
        return {"dataflow": dataflow, "usage_store": usage, "queue": self._broker_problem()}

    def _broker_problem(self) -> str | None:
        try:
            with self._probe_lock:
                self._probe.list_topics(self.settings.kafka_topic, timeout=1.0)
        except KafkaException as exc:
            return f"the Kafka broker at {self.settings.kafka_brokers} does not answer ({exc})"
        return None

    def partition_lag(self) -> dict[int, int]:
        """Messages in each partition the usage store does not hold yet (needs a broker whose end offsets are right)."""
        stored = self.usage.stored_offsets(self.settings.kafka_topic)
        lag = {}
        with self._probe_lock:
            for p in range(self.partitions):
                _, high = self._probe.get_watermark_offsets(TopicPartition(self.settings.kafka_topic, p), timeout=1.0)
                lag[p] = max(0, high - stored.get(p, 0))
        return lag

    def metrics(self) -> bytes:
        try:
            for partition, messages in self.partition_lag().items():
                self.telemetry.worker_partition_lag.labels(str(partition)).set(messages)
        except (KafkaException, RuntimeError, OSError) as exc:
            log.warning("partition_lag_unavailable", error=str(exc)[:300])
        return self.telemetry.render()


def _handler(worker: Worker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._answer(_OK, "application/json", msgspec.json.encode({"status": "ok"}))
            elif self.path == "/readyz":
                problems = worker.problems()
                down = {k: v for k, v in problems.items() if v is not None}
                body: dict[str, Any] = {"status": "ready" if not down else "not_ready",
                                        "checks": {k: "ok" if v is None else "down" for k, v in problems.items()}}
                if down:
                    body["reasons"] = down
                self._answer(_UNAVAILABLE if down else _OK, "application/json", msgspec.json.encode(body))
            elif self.path == "/metrics":
                self._answer(_OK, "text/plain; version=0.0.4; charset=utf-8", worker.metrics())
            else:
                self._answer(_NOT_FOUND, "application/json", msgspec.json.encode(
                    {"error": {"code": "NOT_FOUND", "message": "A worker serves /healthz, /readyz and /metrics only."}}))

        def _answer(self, status: int, media_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: probes arrive every few seconds."""

    return Handler


def wait_until_stopped(stop: threading.Event, worker: Worker) -> None:
    """Block until ``stop`` is set or the dataflow's thread ends for good (then the process ends: restart it)."""
    while not stop.wait(0.5):
        if not worker.dataflow.running():
            log.error("worker_dataflow_died", error=str(worker.dataflow.error)[:500])
            return
