"""Soak: sustained overload for minutes; RSS, lag and p99 must stay flat (issue 10).

Starts a real embedded ``abaxus serve`` process and drives it with N connections sending
1,000-event batches of unique keys as fast as it answers, for ``--seconds`` (default 600).
Every 10 s it prints, side by side with the configured bounds: the server's RSS, the
pipeline lag and backlog it reports on ``/metrics``, the client p99 of that interval, the
events accepted and stored per second, and how many requests got 503 (back-pressure: the
client waits Retry-After and resends). At the end it waits until everything accepted is
stored and checks the count.

    python benchmarks/soak.py --seconds 600 --connections 8
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from ingest import KEY, RawClient

from server_process import ServerProcess


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


def gauges(c: httpx.Client) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in c.get("/metrics").text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            out[name] = float(value)
    return out


class Load:
    """N sender threads; each interval's latencies, 202 counts and 503 counts."""

    def __init__(self, server: ServerProcess, connections: int, customers: int) -> None:
        self.server, self.customers = server, customers
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.accepted = 0
        self.refused = 0
        self.threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(connections)]

    def _body(self, worker: int, n: int) -> bytes:
        return msgspec.json.encode({"events": [
            {"customer_id": f"cust_{(n + i) % self.customers:04d}", "metric_key": "api_calls", "value": i % 10 + 1,
             "timestamp": "2026-04-15T12:00:00Z", "idempotency_key": f"soak-{worker}-{n}-{i}",
             "properties": {"region": "eu"}} for i in range(1000)]})

    def _run(self, worker: int) -> None:
        client = RawClient(self.server.url)
        n = 0
        try:
            while not self.stop.is_set():
                body = self._body(worker, n)
                while not self.stop.is_set():
                    t0 = time.perf_counter()
                    status, accepted = client.post_batch(body)
                    dt = time.perf_counter() - t0
                    with self.lock:
                        self.latencies.append(dt)
                        if status == 503:
                            self.refused += 1
                        else:
                            self.accepted += accepted
                    if status != 503:
                        break
                    time.sleep(1.0)  # Retry-After
                n += 1
        finally:
            client.close()

    def take(self) -> tuple[list[float], int, int]:
        with self.lock:
            out = (self.latencies, self.accepted, self.refused)
            self.latencies = []
            return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--customers", type=int, default=100)
    ap.add_argument("--interval", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", KEY)
        server.start()
        assert server.proc is not None
        try:
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
                c.post("/v1/metrics", json={"key": "api_calls", "name": "API Calls", "aggregation": "sum"})
                for i in range(args.customers):
                    c.post("/v1/customers", json={"id": f"cust_{i:04d}", "name": f"C{i}"})
                g = gauges(c)
                print(f"bounds: backlog ≤ {g.get('abaxus_intake_backlog_limit_events', 0):,.0f} events, "
                      f"lag ≤ {g.get('abaxus_intake_lag_limit_seconds', 0):.0f} s; "
                      f"{args.connections} connections × 1,000-event batches for {args.seconds} s")
                print(f"{'t (s)':>6} {'RSS MB':>8} {'lag s':>7} {'backlog':>9} {'p99 ms':>8} {'accepted/s':>11} "
                      f"{'stored/s':>10} {'503s':>6}")
                load = Load(server, args.connections, args.customers)
                started = time.monotonic()
                for t in load.threads:
                    t.start()
                last_acc, last_stored, last_ref = 0, 0.0, 0
                peak_rss, peak_lag, p99s = 0.0, 0.0, []
                while (elapsed := time.monotonic() - started) < args.seconds:
                    time.sleep(args.interval - (elapsed % args.interval))
                    lat, acc, ref = load.take()
                    g = gauges(c)
                    stored = g.get("abaxus_events_ingested_total", 0.0)
                    rss = rss_mb(server.proc.pid)
                    lag = g.get("abaxus_pipeline_lag_seconds", 0.0)
                    p99 = statistics.quantiles(lat, n=100)[98] * 1000 if len(lat) >= 2 else float("nan")
                    peak_rss, peak_lag = max(peak_rss, rss), max(peak_lag, lag)
                    p99s.append(p99)
                    print(f"{time.monotonic() - started:>6.0f} {rss:>8.0f} {lag:>7.2f} "
                          f"{g.get('abaxus_intake_backlog_events', 0):>9,.0f} {p99:>8.1f} "
                          f"{(acc - last_acc) / args.interval:>11,.0f} {(stored - last_stored) / args.interval:>10,.0f} "
                          f"{ref - last_ref:>6}", flush=True)
                    last_acc, last_stored, last_ref = acc, stored, ref
                load.stop.set()
                for t in load.threads:
                    t.join(60)
                _, accepted, refused = load.take()
                deadline = time.monotonic() + 120
                while gauges(c).get("abaxus_events_ingested_total", 0) < accepted and time.monotonic() < deadline:
                    time.sleep(0.2)
                stored = gauges(c).get("abaxus_events_ingested_total", 0)
        finally:
            server.stop()
    print(f"total: accepted {accepted:,}, stored {stored:,.0f} ({'all stored' if stored >= accepted else 'MISSING'}), "
          f"503 answers {refused:,}; peak RSS {peak_rss:.0f} MB, peak lag {peak_lag:.2f} s, "
          f"median interval p99 {statistics.median(p99s):.1f} ms")


if __name__ == "__main__":
    main()
