"""A real server on a small filesystem: a full disk never turns a 202 into a lost event.

The data directory sits on a tmpfs this test mounts (CI runs as root; elsewhere it skips,
saying why). Unique events go in until the server answers 503; the filesystem then grows
(as an operator freeing space would make it) and ingestion must resume *without* a restart;
after a SIGKILL and a restart every event that got a 202 is counted exactly once and none
that got a 503 is. The set of stored keys is checked through ``events_checksum`` (the XOR of
the keys' SHA-256 prefixes, §12), computed here independently.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ADMIN_KEY
from helpers import wait_until
from quickstart_bodies import CUSTOMER, JSON, METRIC, PLAN_JSON, SUBSCRIPTION
from server_process import ServerProcess

BATCH = 1000


def _checksum(keys: set[str]) -> str:
    acc = 0
    for k in keys:
        acc ^= int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "big")
    return f"{acc:016x}"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; CI runs as root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mnt)], capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _batch(prefix: str, n: int) -> list[dict[str, object]]:
    return [{"customer_id": "cust_acme", "metric_key": "api_calls", "value": 1, "timestamp": "2026-04-10T00:00:00Z",
             "idempotency_key": f"{prefix}-{i}"} for i in range(n)]


def _send(c: httpx.Client, prefix: str, acked: set[str], refused: set[str]) -> int:
    events = _batch(prefix, BATCH)
    r = c.post("/v1/events/batch", json={"events": events})
    keys = {e["idempotency_key"] for e in events}
    if r.status_code == 202:
        acked.update(keys)  # type: ignore[arg-type]
    else:
        assert r.status_code == 503, r.text
        body = r.json()["error"]
        assert body["code"] == "NOT_READY", r.text
        assert r.headers.get("retry-after"), r.text
        refused.update(keys)  # type: ignore[arg-type]
    return r.status_code


def test_full_disk_refuses_with_503_recovers_without_restart_and_loses_nothing(small_fs: Path):
    server = ServerProcess(small_fs / "data", ADMIN_KEY, extra_env={"ABAXUS_INTAKE_MAX_LAG": "600s",
                                                                    "ABAXUS_INTAKE_MAX_BACKLOG": "100000000"})
    server.start()
    acked: set[str] = set()
    refused: set[str] = set()
    run = uuid.uuid4().hex[:6]
    try:
        with server.client() as c:
            assert c.post("/v1/metrics", json=METRIC).status_code == 201
            assert c.post("/v1/customers", json=CUSTOMER).status_code == 201
            assert c.post("/v1/price-plans", content=PLAN_JSON, headers=JSON).status_code == 201
            assert c.post("/v1/subscriptions", json=SUBSCRIPTION).status_code == 201
            deadline = time.monotonic() + 120
            n = 0
            while time.monotonic() < deadline and len(refused) < 3 * BATCH:
                _send(c, f"{run}-fill-{n}", acked, refused)
                n += 1
            assert refused, "the filesystem never filled up"
            assert len(acked) > 10 * BATCH, "too few events got in before the disk was full"
            ready = c.get("/readyz")
            assert ready.status_code == 503
            checks = ready.json()["error"]["checks"]
            assert "down" in (checks["queue"], checks["usage_store"]), checks
            # While acknowledged events cannot be stored, nothing that needs them answers.
            if checks["usage_store"] == "down":
                inv = c.post("/v1/invoices", json={"customer_id": "cust_acme", "cutoff_date": "2026-04-30T23:59:59Z"})
                assert (inv.status_code, inv.json()["error"]["code"]) == (503, "NOT_READY"), inv.text
                usage = c.post("/v1/usage/compute", json={"customer_id": "cust_acme", "period_start": "2026-04-01T00:00:00Z",
                                                          "period_end": "2026-04-30T23:59:59Z"})
                assert (usage.status_code, usage.json()["error"]["code"]) == (503, "NOT_READY"), usage.text

            # The operator frees space; no restart.
            subprocess.run(["mount", "-o", "remount,size=400m", str(small_fs)], check=True)

            def resumed() -> bool:
                return _send(c, f"{run}-after-{time.monotonic_ns()}", acked, refused) == 202

            try:
                wait_until(resumed, timeout=60, interval=0.5)
                wait_until(lambda: c.get("/readyz").status_code == 200, timeout=60, interval=0.5)
            except AssertionError:  # say which part still refuses
                raise AssertionError(f"still refused 60 s after space was freed; /readyz: {c.get('/readyz').text}") from None
            for i in range(3):
                assert _send(c, f"{run}-later-{i}", acked, refused) == 202
            inv = c.post("/v1/invoices", json={"customer_id": "cust_acme", "cutoff_date": "2026-04-30T23:59:59Z"})
            assert inv.status_code == 201, inv.text
            assert inv.json()["line_items"][0]["quantity"] == len(acked)

        server.kill()
        server.start()
        with server.client() as c:
            def stored() -> dict[str, object]:
                r = c.post("/v1/usage/compute", json={"customer_id": "cust_acme", "metric_key": "api_calls",
                                                      "period_start": "2026-04-01T00:00:00Z",
                                                      "period_end": "2026-04-30T23:59:59Z"})
                return r.json()["data"][0] if r.status_code == 200 and r.json()["data"] else {}

            line = wait_until(lambda: (d := stored()) and d["event_count"] >= len(acked) and d, timeout=60)
            assert line["event_count"] == len(acked)
            assert line["quantity"] == len(acked)
            assert line["events_checksum"] == _checksum(acked)
            assert not (acked & refused)
    finally:
        server.stop()
