"""Back-pressure: past the configured backlog, events get 503 + Retry-After and nothing else grows.

A real server process with a small bound (5,000 events not yet stored) takes more load than
its dataflow can store; it must refuse the excess (503 NOT_READY, ``Retry-After``, nothing of
the request accepted), keep its memory under a ceiling and its lag near the bound, and in
the end hold every event it answered 202 to, exactly once.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from abaxus.settings import Settings, SettingsError
from conftest import ADMIN_KEY
from helpers import wait_until
from quickstart_bodies import CUSTOMER, METRIC
from server_process import ServerProcess

BOUND = 5_000
RSS_CEILING_MB = 1_500


def _rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else 0.0


def _sender(server: ServerProcess, worker: int, acked: set[str], refused: list[httpx.Response],
            stop: threading.Event) -> None:
    with server.client() as c:
        n = 0
        while not stop.is_set():
            events = [{"customer_id": "cust_acme", "metric_key": "api_calls", "value": 1,
                       "timestamp": "2026-04-10T00:00:00Z", "idempotency_key": f"bp{worker}-{n}-{i}"} for i in range(1000)]
            r = c.post("/v1/events/batch", json={"events": events})
            if r.status_code == 202:
                acked.update(e["idempotency_key"] for e in events)  # type: ignore[misc]
            else:
                refused.append(r)
            n += 1


def test_past_the_backlog_bound_events_get_503_with_retry_after_and_every_202_is_stored(tmp_path: Path):
    server = ServerProcess(tmp_path / "data", ADMIN_KEY, extra_env={"ABAXUS_INTAKE_MAX_BACKLOG": str(BOUND)})
    server.start()
    acked: set[str] = set()
    refused: list[httpx.Response] = []
    stop = threading.Event()
    try:
        with server.client() as c:
            assert c.post("/v1/metrics", json=METRIC).status_code == 201
            assert c.post("/v1/customers", json=CUSTOMER).status_code == 201
            senders = [threading.Thread(target=_sender, args=(server, w, acked, refused, stop)) for w in range(4)]
            for t in senders:
                t.start()
            peak_rss = 0.0
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                assert server.proc is not None
                peak_rss = max(peak_rss, _rss_mb(server.proc.pid))
                time.sleep(0.2)
            stop.set()
            for t in senders:
                t.join(30)

            assert refused, "the load never passed the bound"
            for r in refused:
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "NOT_READY"
                assert r.headers["retry-after"] == "1"
            assert "behind" in refused[0].json()["error"]["message"]
            assert peak_rss < RSS_CEILING_MB, f"server RSS peaked at {peak_rss:.0f} MB"
            metrics = c.get("/metrics").text
            assert f"abaxus_intake_backlog_limit_events {float(BOUND)}" in metrics
            assert 'abaxus_intake_refused_requests_total{reason="backpressure"}' in metrics

            def stored() -> int:
                r = c.post("/v1/usage/compute", json={"customer_id": "cust_acme", "metric_key": "api_calls",
                                                      "period_start": "2026-04-01T00:00:00Z",
                                                      "period_end": "2026-04-30T23:59:59Z"})
                return int(r.json()["data"][0]["event_count"]) if r.status_code == 200 and r.json()["data"] else 0

            wait_until(lambda: stored() >= len(acked), timeout=60)
            line = c.post("/v1/usage/compute", json={"customer_id": "cust_acme", "metric_key": "api_calls",
                                                     "period_start": "2026-04-01T00:00:00Z",
                                                     "period_end": "2026-04-30T23:59:59Z"}).json()["data"][0]
            acc = 0
            for k in acked:
                acc ^= int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "big")
            assert line["event_count"] == len(acked)
            assert line["events_checksum"] == f"{acc:016x}"
    finally:
        stop.set()
        server.stop()


def test_backpressure_bounds_are_read_from_the_environment():
    s = Settings.from_env({"ABAXUS_INTAKE_MAX_BACKLOG": "20000", "ABAXUS_INTAKE_MAX_LAG": "2m"})
    assert (s.intake_max_backlog_events, s.intake_max_lag_seconds) == (20_000, 120.0)
    assert Settings.from_env({}).intake_max_lag_seconds == 5.0
    with pytest.raises(SettingsError, match="ABAXUS_INTAKE_MAX_LAG"):
        Settings.from_env({"ABAXUS_INTAKE_MAX_LAG": "soon"})
    with pytest.raises(SettingsError, match="ABAXUS_INTAKE_MAX_BACKLOG"):
        Settings.from_env({"ABAXUS_INTAKE_MAX_BACKLOG": "10"})
