"""Embedded ``abaxus serve`` with intake processes (ABAXUS_INTAKE_PROCESSES), as real processes.

Every request goes on a fresh connection, which any process accepting from the server's
listening socket may take (with two intake processes the owner does not accept); the
assertions hold whichever process answered.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import httpx
import msgspec
import pytest

from abaxus.cli.intake import owner_socket
from conftest import ADMIN_KEY
from helpers import wait_until
from quickstart_bodies import CUSTOMER, JSON, METRIC
from server_process import ServerProcess, free_port

APRIL = {"period_start": "2026-04-01T00:00:00Z", "period_end": "2026-04-30T23:59:59Z"}


def _server(root: Path, processes: int) -> ServerProcess:
    return ServerProcess(root / "data", ADMIN_KEY, extra_env={"ABAXUS_INTAKE_PROCESSES": str(processes),
                                                              "ABAXUS_USAGE_PORT": str(free_port()),
                                                              "ABAXUS_EPOCH_SECONDS": "1"})


def _fresh(server: ServerProcess) -> httpx.Client:
    """A client that opens a new connection per request (any process may take it)."""
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30,
                        limits=httpx.Limits(max_keepalive_connections=0))


def _writing(partition: Path) -> bool:
    """Whether a process holds the writer's lock of this log partition."""
    try:
        fd = os.open(partition / "writer.lock", os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _ready(server: ServerProcess, processes: int) -> bool:
    """Every intake process opened its log partition (it serves on the shared port from then on)."""
    assert server.proc is not None
    return len(_children(server.proc.pid)) == processes and all(
        _writing(server.data_dir / "intake" / str(i)) for i in range(1, processes + 1))


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that just ended
            continue
    return found


def _batch(prefix: str, start: int, n: int) -> bytes:
    return msgspec.json.encode({"events": [
        {"customer_id": "cust_acme", "metric_key": "api_calls", "value": 2, "timestamp": "2026-04-15T12:00:00Z",
         "idempotency_key": f"{prefix}-{i}"} for i in range(start, start + n)]})


def _post_until_accepted(c: httpx.Client, body: bytes) -> int:
    """Resend until 202 (a 503 or a dropped connection accepted nothing new: the keys make resending safe)."""
    for _ in range(300):
        try:
            r = c.post("/v1/events/batch", content=body, headers=JSON)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        if r.status_code == HTTPStatus.ACCEPTED:
            return int(r.json()["accepted"])
        assert r.status_code == HTTPStatus.SERVICE_UNAVAILABLE, r.text
        time.sleep(0.2)
    raise AssertionError("never accepted")


def _usage(c: httpx.Client) -> tuple[int, int]:
    r = c.post("/v1/usage/compute", json={"customer_id": "cust_acme", "metric_key": "api_calls", **APRIL})
    assert r.status_code == HTTPStatus.OK, r.text
    row = r.json()["data"][0]
    return int(row["quantity"]), int(row["event_count"])


def _answered(metrics: str, route: str, status: str) -> int:
    """Requests to ``route`` answered ``status``, as the latency histogram of a /metrics text counts them."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("abaxus_http_request_duration_seconds_count{") and f'route="{route}"' in line \
                and f'status="{status}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _catalog(c: httpx.Client) -> None:
    assert c.post("/v1/metrics", json=METRIC).status_code == HTTPStatus.CREATED
    assert c.post("/v1/customers", json={**CUSTOMER, "id": "cust_acme"}).status_code == HTTPStatus.CREATED


@pytest.fixture
def two_intake(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server with two intake processes, all serving, and the catalog made."""
    server = _server(tmp_path, 2)
    server.start()
    try:
        with _fresh(server) as c:
            _catalog(c)
        wait_until(lambda: _ready(server, 2), timeout=30)
        yield server
    finally:
        server.stop()


def test_events_taken_by_every_process_are_counted_once_and_read_at_once(two_intake: ServerProcess):
    server = two_intake
    try:
        with _fresh(server) as c:
            for k in range(40):
                assert _post_until_accepted(c, _batch("rw", k * 250, 250)) == 250
            for k in range(0, 40, 4):  # the same keys again, to whichever process: counted once
                assert _post_until_accepted(c, _batch("rw", k * 250, 250)) == 250
            # Read at once, through any process: every event any process acknowledged is counted.
            assert _usage(c) == (20_000, 10_000)
            assert _usage(c) == (20_000, 10_000)
            # A key every process has cached fails everywhere the instant it is revoked.
            made = c.post("/v1/api-keys", json={"name": "hot", "scope": "ingest"}).json()
            hot = {"Authorization": f"Bearer {made['secret']}"}
            assert all(c.get("/v1/events", headers=hot).status_code == HTTPStatus.OK for _ in range(12))
            assert c.delete(f"/v1/api-keys/{made['id']}").status_code == HTTPStatus.OK
            assert {c.get("/v1/events", headers=hot).status_code for _ in range(12)} == {HTTPStatus.UNAUTHORIZED}
        written = [sum(f.stat().st_size for f in (server.data_dir / "intake" / str(i)).glob("*.seg")) for i in (1, 2)]
        assert all(written), f"every intake process took events: {written}"
        # From two intake processes on, the owner leaves the port to them: its own partition
        # stays empty, and its API (the dataflow's metrics and readiness) is on a unix socket.
        assert sum(f.stat().st_size for f in (server.data_dir / "log").glob("*.seg")) == 0
        owner = httpx.Client(transport=httpx.HTTPTransport(uds=str(server.data_dir / "owner.sock")),
                             base_url="http://owner", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
        with owner:
            assert owner.get("/readyz").status_code == HTTPStatus.OK
            metrics = owner.get("/metrics").text
        assert "abaxus_events_ingested_total 10000.0" in metrics.splitlines()
        # The public port's /metrics, from whichever process takes each scrape, counts for all
        # of them: what the server stored and dropped, and every 202 any process answered.
        with _fresh(server) as c:
            scrapes = [c.get("/metrics").text for _ in range(8)]
        for text in scrapes:
            lines = text.splitlines()
            assert "abaxus_events_ingested_total 10000.0" in lines
            assert "abaxus_events_deduplicated_total 2500.0" in lines
            assert _answered(text, "/v1/events/batch", "202") == 50
        children = _children(server.proc.pid)  # type: ignore[union-attr]
    finally:
        server.stop()
    # The server stops its intake processes with it.
    assert not any(Path(f"/proc/{p}").exists() for p in children)


def test_long_lived_connections_opened_at_once_go_to_different_processes(two_intake: ServerProcess):
    """Fewest connections first: two keep-alive clients that connect together get a process each."""
    host, port = two_intake.url.removeprefix("http://").split(":")
    for round_ in range(3):
        before = [_partition_bytes(two_intake, i) for i in (1, 2)]
        clients = [socket.create_connection((host, int(port))) for _ in range(2)]
        try:
            for n, sock in enumerate(clients):
                body = _batch(f"conn-{round_}-{n}", 0, 50)
                sock.sendall(b"POST /v1/events/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Authorization: Bearer " + ADMIN_KEY.encode() + b"\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            for sock in clients:
                assert sock.recv(65536).startswith(b"HTTP/1.1 202")
        finally:
            for sock in clients:
                sock.close()
        grew = [_partition_bytes(two_intake, i) > b for i, b in zip((1, 2), before, strict=True)]
        assert grew == [True, True], f"round {round_}: both connections went to one process"
        time.sleep(0.5)  # each process counts a close when its loop reads it: a moment, not a race to test


def test_a_stopped_owner_is_refused_by_the_intake_processes_and_resumes(two_intake: ServerProcess):
    """The owner does not answer on the port: the intake processes go by its report, and by its silence."""
    assert two_intake.proc is not None
    with _fresh(two_intake) as c:
        assert _post_until_accepted(c, _batch("stop", 0, 100)) == 100
        os.kill(two_intake.proc.pid, signal.SIGSTOP)  # hung: alive (its intake processes stay), silent
        try:
            def refused() -> bool:
                r = c.post("/v1/events/batch", content=_batch("stop", 100, 100), headers=JSON)
                return r.status_code == HTTPStatus.SERVICE_UNAVAILABLE and r.headers.get("Retry-After") == "1"
            wait_until(refused, timeout=30)
            r = c.post("/v1/events/batch", content=_batch("stop", 100, 100), headers=JSON)
            assert r.json()["error"]["code"] == "NOT_READY"
            assert "has not reported" in r.json()["error"]["message"]
            ready = c.get("/readyz")
            assert ready.status_code == HTTPStatus.SERVICE_UNAVAILABLE
            assert ready.json()["error"]["checks"]["dataflow"] == "down"
        finally:
            os.kill(two_intake.proc.pid, signal.SIGCONT)
        wait_until(lambda: c.get("/readyz").status_code == HTTPStatus.OK, timeout=30)
        assert _post_until_accepted(c, _batch("stop", 100, 100)) == 100
        assert _usage(c) == (400, 200)


def _partition_bytes(server: ServerProcess, partition: int) -> int:
    return sum(f.stat().st_size for f in (server.data_dir / "intake" / str(partition)).glob("*.seg"))


def test_killed_intake_process_and_killed_owner_lose_nothing_acknowledged(tmp_path: Path):
    server = _server(tmp_path, 2)
    server.start()
    acknowledged: set[int] = set()
    stop = threading.Event()

    def send() -> None:
        with _fresh(server) as c:
            k = 0
            while not stop.is_set():
                try:
                    r = c.post("/v1/events/batch", content=_batch("kill", k * 200, 200), headers=JSON)
                except httpx.TransportError:
                    continue  # the process that had the connection died: nothing to count, send again
                if r.status_code == HTTPStatus.ACCEPTED:
                    acknowledged.add(k)
                    k += 1

    try:
        with _fresh(server) as c:
            _catalog(c)
        assert server.proc is not None
        wait_until(lambda: _ready(server, 2), timeout=30)
        sender = threading.Thread(target=send)
        sender.start()
        wait_until(lambda: len(acknowledged) >= 15, timeout=60)
        victim = _children(server.proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in _children(server.proc.pid)  # type: ignore[union-attr]
                   and len(_children(server.proc.pid)) == 2, timeout=30)  # type: ignore[union-attr]
        before = len(acknowledged)
        wait_until(lambda: len(acknowledged) >= before + 15, timeout=60)
        children = _children(server.proc.pid)
        server.kill()  # the owner, under load: its intake processes follow it (PR_SET_PDEATHSIG)
        stop.set()
        sender.join(30)
        wait_until(lambda: not any(Path(f"/proc/{p}").exists() for p in children), timeout=15)
    finally:
        stop.set()
        server.stop()
    # Back as one process: the intake partitions left on disk are read and stored too.
    again = _server(tmp_path, 0)
    again.start()
    try:
        with _fresh(again) as c:
            wait_until(lambda: _usage(c)[1] >= 200 * len(acknowledged), timeout=60)
            value, count = _usage(c)
        # Every acknowledged batch is stored, and no event twice; a batch whose answer was lost
        # may be stored too (it was durable), never half of one.
        assert count >= 200 * len(acknowledged)
        assert count % 200 == 0
        assert value == 2 * count
        assert count <= 200 * (max(acknowledged) + 2)
    finally:
        again.stop()


def test_a_taken_port_stops_the_server_with_two_intake_processes_at_once(tmp_path: Path):
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):  # another program holds the port
        env = {**os.environ, "ABAXUS_DATA_DIR": str(tmp_path / "d"), "ABAXUS_INTAKE_PROCESSES": "2",
               "ABAXUS_PORT": str(port), "ABAXUS_USAGE_PORT": str(free_port())}
        r = subprocess.run([sys.executable, "-m", "abaxus.cli", "serve"], env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"Cannot listen on 127.0.0.1:{port}" in r.stdout
    assert "ABAXUS_PORT" in r.stdout


def test_the_owner_socket_of_a_deep_data_dir_moves_to_the_temp_dir(tmp_path: Path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)  # past the 107 bytes a unix socket path may have
    deep.mkdir(parents=True)
    sock, path = owner_socket(deep)
    try:
        assert path.parent == Path(tempfile.gettempdir())
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # only the server's user may talk to it
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(path))
        again, same = owner_socket(deep)  # a stale file of an earlier run is replaced
        again.close()
        assert same == path
    finally:
        sock.close()
        path.unlink(missing_ok=True)


def test_intake_processes_need_the_usage_front(tmp_path: Path):
    env = {**os.environ, "ABAXUS_DATA_DIR": str(tmp_path / "d"), "ABAXUS_INTAKE_PROCESSES": "1", "ABAXUS_USAGE_PORT": "off"}
    r = subprocess.run([sys.executable, "-m", "abaxus.cli", "serve"], env=env, capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 2
    assert "ABAXUS_USAGE_PORT" in r.stdout


def test_backfills_and_voids_answered_by_any_process_hold(two_intake: ServerProcess):
    with _fresh(two_intake) as c:
        for k in range(6):  # each to whichever process: stored once, then duplicates, wherever they land
            body = _batch("bf", k * 10, 20)
            r = c.post("/v1/events/backfill", content=body, headers=JSON)
            assert r.status_code == HTTPStatus.OK, r.text
            statuses = [x["status"] for x in r.json()["results"]]
            assert statuses == (["duplicate"] * 10 if k else ["stored"] * 10) + ["stored"] * 10
        assert _usage(c) == (2 * 70, 70)
        # Voids: stored events leave usage at once; a pending one is voided when it arrives.
        keys = [f"bf-{i}" for i in range(0, 70, 7)] + ["bf-late"]
        r = c.post("/v1/events/void", json={"idempotency_keys": keys, "reason": "test data"})
        assert r.status_code == HTTPStatus.OK, r.text
        assert [x["status"] for x in r.json()["results"]] == ["voided"] * 10 + ["pending"]
        assert _usage(c) == (2 * 60, 60)
        for _ in range(3):  # the late event, sent to several processes: stored voided, counted never
            late = msgspec.json.encode({"events": [{"customer_id": "cust_acme", "metric_key": "api_calls", "value": 5,
                                                    "timestamp": "2026-04-20T12:00:00Z", "idempotency_key": "bf-late"}]})
            assert _post_until_accepted(c, late) == 1
        assert _usage(c) == (2 * 60, 60)
