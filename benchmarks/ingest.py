"""Ingest throughput, end to end, against the raw insert ceiling (issue 4).

Starts a real embedded ``abaxus serve`` process, drives it with N concurrent clients sending
1,000-event batches, and measures events/s from the first request until every event is
queryable in ClickHouse, plus p50/p99 batch latency. Then, in the same run, inserts the same
rows straight into a fresh chDB with ``insert_arrow`` (100k-row batches, the store's own insert
settings) as the ceiling.

    python benchmarks/ingest.py --events 300000 --clients 4
    python benchmarks/ingest.py --events 300000 --mode kafka   # embedded, then split, side by side
    python benchmarks/ingest.py --intake-processes 0           # the one-process column only

By default the embedded server runs twice: as one process, and with ``--intake-processes``
(2) intake processes beside it (ABAXUS_INTAKE_PROCESSES; from 2 on they alone take HTTP and
the server only stores), side by side. There the stored
count is read through the usage front and the CPU is the owner's plus its intake processes'.

``--mode kafka`` runs the same events through the split topology as well: a tansu broker,
one ``abaxus serve --role worker`` (owner of chDB, with its usage front) and one
``abaxus serve --role api`` replica producing to Kafka, and prints both columns. There the
batch latency is the produce-acknowledgement latency: a 202 waits for the broker's ack.
"""

from __future__ import annotations

import argparse
import fcntl
import math
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import clickhouse_connect
import httpx
import msgspec
import pyarrow as pa

from abaxus.pipeline.log import decode_position
from abaxus.pipeline.progress_board import SharedBoard
from abaxus.settings import Settings
from abaxus.store.usage import EVENT_SCHEMA, EVENTS_INSERT_SETTINGS, migrate_usage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from server_process import ServerProcess, free_port

KEY = "sk_test_" + "B" * 40


def make_bodies(total: int, batch: int, customers: int) -> list[bytes]:
    bodies = []
    for start in range(0, total, batch):
        events = [{"customer_id": f"cust_{(start + i) % customers:04d}", "metric_key": "api_calls",
                   "value": (start + i) % 10 + 1, "timestamp": "2026-04-15T12:00:00Z",
                   "idempotency_key": f"bench-{start + i}", "properties": {"region": "eu"}}
                  for i in range(min(batch, total - start))]
        bodies.append(msgspec.json.encode({"events": events}))
    return bodies


class _Answer(msgspec.Struct):
    accepted: int


_answer = msgspec.json.Decoder(_Answer)


class RawClient:
    """HTTP/1.1 keep-alive over a plain socket: pre-built requests, only the status and the
    ``accepted`` count read back. httpx spends ~1 ms of the shared 2 cores per request; this
    leaves them to the server under test."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.head = (f"POST /v1/events/batch HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
                     "Content-Type: application/json\r\nContent-Length: ").encode()

    def post_batch(self, body: bytes) -> tuple[int, int]:
        self.sock.sendall(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status = int(self.reader.readline().split()[1])
        length = 0
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        answer = self.reader.read(length)
        return status, _answer.decode(answer).accepted if status < 300 else 0

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class HttpxClient:
    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {KEY}",
                                                                      "Content-Type": "application/json"})

    def post_batch(self, body: bytes) -> tuple[int, int]:
        r = self.client.post("/v1/events/batch", content=body)
        return r.status_code, r.json()["accepted"] if r.status_code < 300 else 0

    def close(self) -> None:
        self.client.close()


RETRIES = {"503": 0}


def post_until_accepted(client: RawClient | HttpxClient, body: bytes) -> tuple[int, int]:
    """Send a batch; on 503 (back-pressure: nothing was accepted) wait Retry-After (1 s) and resend."""
    while True:
        status, n = client.post_batch(body)
        if status != 503:
            return status, n
        RETRIES["503"] += 1
        time.sleep(1.0)


def drive(server: ServerProcess, bodies: list[bytes], clients: int, kind: str) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    accepted = 0
    lock = threading.Lock()
    it = iter(bodies)

    def worker() -> None:
        nonlocal accepted
        client = RawClient(server.url) if kind == "raw" else HttpxClient(server.url)
        try:
            while True:
                with lock:
                    body = next(it, None)
                if body is None:
                    return
                t0 = time.perf_counter()
                status, n = post_until_accepted(client, body)
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if status == 202:
                        accepted += n
        finally:
            client.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return started, latencies, accepted


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def server_cpu_seconds(server: ServerProcess) -> tuple[float, float]:
    """User and system CPU seconds so far of the server process and its live children (intake processes)."""
    assert server.proc is not None
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for pid in [server.proc.pid, *_children(server.proc.pid)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        user, system = user + int(fields[11]) / tick, system + int(fields[12]) / tick
    return user, system


def server_latency_share(server: ServerProcess, within: str = "0.05") -> tuple[float, float]:
    """From the server's own histogram: share of batch requests handled within 50 ms, and its p99 bucket."""
    buckets: dict[str, float] = {}
    with httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as c:
        for line in c.get("/metrics").text.splitlines():
            if line.startswith("abaxus_http_request_duration_seconds_bucket{") and '"/v1/events/batch"' in line:
                le = line.split('le="')[1].split('"')[0]
                buckets[le] = buckets.get(le, 0.0) + float(line.split()[-1])
    total = buckets.get("+Inf", 0.0)
    if not total:
        return float("nan"), float("nan")
    p99 = next((float(le) for le, n in buckets.items() if le != "+Inf" and n >= 0.99 * total), float("inf"))
    return buckets.get(within, 0.0) / total, p99 * 1000


def stored_count(server: ServerProcess) -> int:
    """``abaxus_events_ingested_total`` of the server (with intake processes, any of them sums all) or the worker."""
    with httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as c:
        for line in c.get("/metrics").text.splitlines():
            if line.startswith("abaxus_events_ingested_total "):
                return int(float(line.split()[1]))
        return 0


def raw_insert_rate(total: int, customers: int, settings: dict[str, int] | None = None) -> float:
    """Rows a second ``insert_arrow`` puts into a fresh chDB, 100k rows at a time, with ``settings``."""

    with tempfile.TemporaryDirectory() as d:
        migrate_usage(Settings(data_dir=Path(d)))
        client = clickhouse_connect.get_client(dsn=f"chdb:///{(Path(d) / 'chdb').resolve()}")
        now = datetime.now(UTC)
        ts = pa.timestamp("ms", tz="UTC")
        n = total
        table = pa.table({
            "event_id": [f"evt_{i}" for i in range(n)], "idempotency_key": [f"bench-{i}" for i in range(n)],
            "customer_id": [f"cust_{i % customers:04d}" for i in range(n)], "metric_key": ["api_calls"] * n,
            "value": pa.array([Decimal(i % 10 + 1) for i in range(n)], pa.decimal128(38, 10)),
            "timestamp": pa.repeat(pa.scalar(datetime(2026, 4, 15, 12, tzinfo=UTC), ts), n),
            "properties": pa.array([[("region", "eu")]] * n, pa.map_(pa.string(), pa.string())),
            "ingested_at": pa.repeat(pa.scalar(now, ts), n), "voided": pa.repeat(pa.scalar(False), n),
            "voided_at": pa.repeat(pa.scalar(datetime(1970, 1, 1, tzinfo=UTC), ts), n),
            "void_reason": pa.repeat(pa.scalar(""), n)}, schema=EVENT_SCHEMA)
        t0 = time.perf_counter()
        for off in range(0, n, 100_000):
            client.insert_arrow("abaxus.events", table.slice(off, 100_000), settings=settings)
        rate = n / (time.perf_counter() - t0)
        client.close()
        return rate


def partition_shares(server: ServerProcess) -> str:
    """Bytes each process's log partition took (owner first), as per cent: how the kernel spread the connections."""
    path = server.data_dir / "intake" / "progress.board"
    if server.args:
        return "n/a"
    if not path.exists():
        return "all (one process)"
    board = SharedBoard(path)
    try:
        stored = {p: decode_position(o) for p, o in board.stored_offsets().items()}
    finally:
        board.close()
    size = Settings().log_segment_bytes
    taken = {p: seg * size + off for p, (seg, off) in stored.items()}
    total = sum(taken.values()) or 1
    return " / ".join(f"{100 * taken.get(p, 0) / total:.0f}" for p in range(max(taken, default=0) + 1)) + " %"


class Figures(NamedTuple):
    accepted: int
    http_rate: float
    e2e: float
    p50: float
    p99: float
    server_share: float
    server_p99: float
    retries: int
    cpu_user: float
    cpu_system: float
    wall: float
    shares: str


def _catalog(server: ServerProcess, customers: int) -> None:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        c.post("/v1/metrics", json={"key": "api_calls", "name": "API Calls", "aggregation": "sum"})
        for i in range(customers):
            c.post("/v1/customers", json={"id": f"cust_{i:04d}", "name": f"C{i}"})


def measure(api: ServerProcess, flow: ServerProcess, bodies: list[bytes], args: argparse.Namespace,
            cpu_of: list[ServerProcess]) -> Figures:
    """Drive ``api`` with the bodies; wait until ``flow`` (the dataflow's process) stored them all."""
    RETRIES["503"] = 0
    _catalog(api, args.customers)
    time.sleep(0.5)  # the catalog view refreshes: let it settle before timing
    cpu_before = [server_cpu_seconds(p) for p in cpu_of]
    started, latencies, accepted = drive(api, bodies, args.clients, args.client)
    http_done = time.perf_counter()
    while stored_count(flow) < accepted:
        time.sleep(0.02)
    stored_done = time.perf_counter()
    user = system = 0.0
    for p, (u0, s0) in zip(cpu_of, cpu_before, strict=True):
        u1, s1 = server_cpu_seconds(p)
        user, system = user + u1 - u0, system + s1 - s0
    # With intake processes, whichever answers /metrics sums every process's histogram.
    share, server_p99 = server_latency_share(api)
    q = statistics.quantiles(latencies, n=100)
    return Figures(accepted, accepted / (http_done - started), accepted / (stored_done - started), q[49] * 1000,
                   q[98] * 1000, share, server_p99, RETRIES["503"], user, system, stored_done - started,
                   partition_shares(flow))


def _intake_ready(server: ServerProcess, processes: int) -> bool:
    """Every intake process holds its log partition's writer lock (it serves from then on)."""
    for i in range(1, processes + 1):
        path = server.data_dir / "intake" / str(i) / "writer.lock"
        if not path.exists():
            return False
        with path.open("rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    return True


def run_embedded(bodies: list[bytes], args: argparse.Namespace, processes: int = 0) -> Figures:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"ABAXUS_INTAKE_PROCESSES": str(processes), "ABAXUS_USAGE_PORT": str(free_port()),
               "ABAXUS_USAGE_PASSWORD": "bench-front"} if processes else {}
        server = ServerProcess(Path(tmp) / "data", KEY, extra_env=env)
        server.start()
        try:
            deadline = time.monotonic() + 60
            while processes and not _intake_ready(server, processes):
                if time.monotonic() > deadline:
                    raise RuntimeError("the intake processes did not start")
                time.sleep(0.1)
            return measure(server, server, bodies, args, [server])
        finally:
            server.stop()


def run_kafka(bodies: list[bytes], args: argparse.Namespace) -> Figures:
    from kafka_broker import Broker  # noqa: PLC0415 - the broker comes with the test extra; only this mode needs it

    password = "bench-front"
    broker = Broker().start()
    with tempfile.TemporaryDirectory() as tmp:
        front_port, worker_port = free_port(), free_port()
        common = {"ABAXUS_KAFKA_BROKERS": broker.address, "ABAXUS_KAFKA_PARTITIONS": "4"}
        worker = ServerProcess(Path(tmp) / "worker", KEY, port=worker_port, args=("--role", "worker"),
                               extra_env={**common, "ABAXUS_WORKER_PORT": str(worker_port),
                                          "ABAXUS_USAGE_PORT": str(front_port), "ABAXUS_USAGE_PASSWORD": password,
                                          "ABAXUS_DATABASE_URL": f"sqlite:///{Path(tmp) / 'metadata.sqlite3'}"})
        api = ServerProcess(Path(tmp) / "api", KEY, args=("--role", "api"),
                            extra_env={**common, "ABAXUS_CLICKHOUSE_URL": f"http://abaxus:{password}@127.0.0.1:{front_port}",
                                       "ABAXUS_DATABASE_URL": f"sqlite:///{Path(tmp) / 'metadata.sqlite3'}"})
        try:
            worker.start()
            api.start()
            return measure(api, worker, bodies, args, [api, worker])
        finally:
            api.stop()
            worker.stop()
            broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--customers", type=int, default=100)
    ap.add_argument("--client", choices=["raw", "httpx"], default="raw",
                    help="raw: a minimal keep-alive socket client (default, leaves the CPU to the server); httpx")
    ap.add_argument("--mode", choices=["embedded", "kafka"], default="embedded",
                    help="kafka: also run the split topology (broker + worker + API replica) beside the embedded figure")
    ap.add_argument("--intake-processes", type=int, default=2,
                    help="also run embedded with this many intake processes beside the server (0: don't)")
    args = ap.parse_args()
    bodies = make_bodies(args.events, 1000, args.customers)
    runs = {"embedded": run_embedded(bodies, args)}
    if args.intake_processes:
        runs[f"+{args.intake_processes} intake proc"] = run_embedded(bodies, args, args.intake_processes)
    if args.mode == "kafka":
        runs["kafka (split)"] = run_kafka(bodies, args)
    ceiling = raw_insert_rate(args.events, args.customers, EVENTS_INSERT_SETTINGS)
    # The ceiling was measured with ClickHouse's default insert settings, which insert
    # slower than the store does (optimize_on_insert); shown beside, the ratio is against ours.
    default_ceiling = raw_insert_rate(args.events, args.customers)
    names = list(runs)
    print(f"clients: {args.clients} concurrent, 1,000-event batches ({args.client} client threads)")
    print(f"{'':34}" + "".join(f"{n:>18}" for n in names))

    def row(label: str, values: list[str], note: str = "") -> None:
        print(f"{label:34}" + "".join(f"{v:>18}" for v in values) + (f"   {note}" if note else ""))

    figures = list(runs.values())
    row("events accepted", [f"{f.accepted:,}" for f in figures])
    row("HTTP accept rate (202s), ev/s", [f"{f.http_rate:,.0f}" for f in figures])
    row("end to end (accepted → stored)", [f"{f.e2e:,.0f}" for f in figures], "target ≥ 300,000")
    row("raw insert_arrow ceiling", [f"{ceiling:,.0f}" for _ in figures], "the store's insert settings")
    row("  with ClickHouse's defaults", [f"{default_ceiling:,.0f}" for _ in figures],
        f"ratio against it: {' / '.join(f'{f.e2e / default_ceiling:.3f}' for f in figures)}")
    row("ratio end to end / ceiling", [f"{f.e2e / ceiling:.3f}" for f in figures], "target ≥ 0.30")
    row("batch latency p50 / p99 (ms)", [f"{f.p50:.1f} / {f.p99:.1f}" for f in figures],
        "target p99 < 50 ms; kafka: 202 after the broker's ack")
    row("  in the server, within 50 ms", ["n/a" if math.isnan(f.server_share) else f"{f.server_share:.1%}"
                                           for f in figures], "the servers' own latency histogram")
    row("503 back-pressure retries", [f"{f.retries:,}" for f in figures])
    row("CPU s per 1M events (user+sys)", [f"{(f.cpu_user + f.cpu_system) * 1e6 / max(f.accepted, 1):.2f}" for f in figures],
        "all Abaxus processes of the run")
    row("cores busy (of 2)", [f"{(f.cpu_user + f.cpu_system) / f.wall:.2f}" for f in figures])
    row("events taken, by process", [f.shares for f in figures], "owner first; the kernel spreads connections")


if __name__ == "__main__":
    main()
