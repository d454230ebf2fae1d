"""Analysts query a running embedded Abaxus through its usage front (§18), read-only, with a read key."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from conftest import ADMIN_KEY
from helpers import event, wait_until
from server_process import ServerProcess, free_port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path / "data", ADMIN_KEY, extra_env={"ABAXUS_USAGE_PORT": str(free_port())})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _read_key(server: ServerProcess) -> str:
    with server.client() as c:
        assert c.post("/v1/metrics", json={"key": "api_calls", "name": "API calls", "aggregation": "sum"}).status_code == 201
        assert c.post("/v1/customers", json={"id": "cust_acme", "name": "Acme"}).status_code == 201
        r = c.post("/v1/events/batch", json={"events": [event(f"k{i}", value=2) for i in range(30)]})
        assert r.status_code == 202, r.text
        r = c.post("/v1/api-keys", json={"name": "analyst", "scope": "read"})
        assert r.status_code == 201, r.text
        ingest = c.post("/v1/api-keys", json={"name": "sender", "scope": "ingest"}).json()["secret"]
        return f"{r.json()['secret']} {ingest}"


def test_abaxus_sql_and_clickhouse_clients_read_a_running_server(server: ServerProcess):
    read_key, ingest_key = _read_key(server).split()
    port = int(server.env["ABAXUS_USAGE_PORT"])
    analyst = clickhouse_connect.get_client(host="127.0.0.1", port=port, username="analyst", password=read_key)
    total = wait_until(lambda: (n := analyst.command("SELECT sum(value) FROM abaxus.events_dedup")) and int(float(n)) == 60
                       and n)
    assert int(float(total)) == 60
    # Read-only and limited to the documented table and view.
    with pytest.raises(DatabaseError, match="ACCESS_DENIED"):
        analyst.command("SELECT count() FROM abaxus.pending_voids")
    with pytest.raises(DatabaseError):
        analyst.command("INSERT INTO abaxus.events (event_id) VALUES ('x')")
    # A key without read scope is refused.
    with pytest.raises(DatabaseError):
        clickhouse_connect.get_client(host="127.0.0.1", port=port, username="analyst", password=ingest_key)

    env = {**os.environ, "ABAXUS_DATA_DIR": str(server.data_dir), "ABAXUS_USAGE_PORT": str(port)}
    env.pop("ABAXUS_API_KEY", None)
    out = subprocess.run([sys.executable, "-m", "abaxus.cli", "sql", "--key", read_key,
                          "SELECT count() AS n FROM abaxus.events_dedup"], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "30" in out.stdout
    # Without a key, while the server runs, the command says what to pass (it never opens the owner's chDB).
    out = subprocess.run([sys.executable, "-m", "abaxus.cli", "sql", "SELECT 1"], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 1
    assert "--key" in out.stdout
