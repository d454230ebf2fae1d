"""A real server process killed with SIGKILL mid-stream: every 202'd event is stored once."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from conftest import ADMIN_KEY
from helpers import wait_until
from quickstart_bodies import CUSTOMER, METRIC
from server_process import ServerProcess


def _sender(server: ServerProcess, worker: int, acked: dict[str, int], stop: threading.Event) -> None:
    """Send 200-event batches; remember only what was answered 202."""
    with server.client() as c:
        n = 0
        while not stop.is_set():
            batch = [{"customer_id": "cust_acme", "metric_key": "api_calls", "value": (n + i) % 7 + 1,
                      "timestamp": "2026-04-10T00:00:00Z", "idempotency_key": f"w{worker}-{n + i}"} for i in range(200)]
            # Every third batch re-sends the previous one: duplicates under load.
            if n and n % 600 == 0:
                batch = [{**e, "idempotency_key": f"w{worker}-{n - 200 + i}", "value": (n - 200 + i) % 7 + 1}
                         for i, e in enumerate(batch)]
            try:
                r = c.post("/v1/events/batch", json={"events": batch})
            except httpx.HTTPError:
                return  # the server died mid-request: not acknowledged
            if r.status_code == 202:
                for e in batch:
                    acked.setdefault(e["idempotency_key"], e["value"])
            n += 200


def test_sigkill_mid_stream_loses_no_acknowledged_event_and_counts_none_twice(tmp_path: Path):
    server = ServerProcess(tmp_path / "data", ADMIN_KEY)
    server.start()
    with server.client() as c:
        assert c.post("/v1/metrics", json=METRIC).status_code == 201
        assert c.post("/v1/customers", json=CUSTOMER).status_code == 201
    acked: dict[str, int] = {}
    stop = threading.Event()
    senders = [threading.Thread(target=_sender, args=(server, w, acked, stop)) for w in range(3)]
    for t in senders:
        t.start()
    wait_until(lambda: len(acked) >= 3000, timeout=30)  # the load is going: kill it mid-stream
    server.kill()
    stop.set()
    for t in senders:
        t.join(30)
    assert len(acked) > 1000, "the load did not get going before the kill"

    server.start()
    try:
        with server.client() as c:
            def stored() -> tuple[int, int]:
                r = c.post("/v1/usage/compute", json={"customer_id": "cust_acme", "metric_key": "api_calls",
                                                      "period_start": "2026-04-01T00:00:00Z",
                                                      "period_end": "2026-04-30T23:59:59Z"})
                d = r.json()["data"] if r.status_code == 200 else []  # 503 while the replay catches up
                return (d[0]["event_count"], d[0]["quantity"]) if d else (0, 0)

            # Stored ⊇ acknowledged; events sent but unanswered at the kill may also be stored.
            wait_until(lambda: stored()[0] >= len(acked), timeout=60)
            count, total = stored()  # exact usage waits for everything durable: nothing is still arriving
            raw = c.get("/v1/events", params={"customer_id": "cust_acme", "limit": 1000}).json()
            assert raw["data"]
        events = {}
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as c2:
            cursor = None
            while True:
                params = {"customer_id": "cust_acme", "limit": 1000, **({"cursor": cursor} if cursor else {})}
                page = c2.get("/v1/events", params=params).json()
                for e in page["data"]:
                    assert e["idempotency_key"] not in events, "an event is listed twice"
                    events[e["idempotency_key"]] = e["value"]
                cursor = page["next_cursor"]
                if not cursor:
                    break
        missing = [k for k in acked if k not in events]
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
        assert all(events[k] == v for k, v in acked.items()), "a stored value differs from the first payload"
        assert count == len(events)
        assert total == sum(events.values())
    finally:
        server.stop()
