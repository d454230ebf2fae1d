"""Operations (§17): rate limiting, Prometheus metrics, settings, bootstrap key, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from litestar.testing import TestClient

from abaxus.api.app import create_app
from abaxus.settings import Settings, SettingsError
from conftest import ADMIN_KEY, error_of


def test_rate_limit_headers_and_429(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, bootstrap_key=ADMIN_KEY, rate_limit_rpm=3, log_format="console")
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        seen = [c.get("/v1/metrics") for _ in range(3)]
        assert [r.headers["X-RateLimit-Remaining"] for r in seen] == ["2", "1", "0"]
        assert all(r.headers["X-RateLimit-Limit"] == "3" for r in seen)
        r = c.get("/v1/metrics")
        assert error_of(r) == (429, "RATE_LIMITED", None)
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert int(r.headers["X-RateLimit-Reset"]) > 0


def test_prometheus_metrics_record_request_latency(client):
    client.get("/v1/metrics")
    text = client.get("/metrics").text
    assert 'abaxus_http_request_duration_seconds_count{method="GET",route="/v1/metrics",status="200"} 1.0' in text
    for name in ("abaxus_events_ingested_total", "abaxus_events_deduplicated_total", "abaxus_pipeline_lag_seconds"):
        assert name in text


def test_settings_refuse_bad_values_loudly():
    with pytest.raises(SettingsError, match="ABAXUS_DEDUP_WINDOW"):
        Settings.from_env({"ABAXUS_DEDUP_WINDOW": "a week"})
    with pytest.raises(SettingsError, match="ABAXUS_BOOTSTRAP_KEY"):
        Settings.from_env({"ABAXUS_BOOTSTRAP_KEY": "sk_live_short"})
    s = Settings.from_env({"ABAXUS_DEDUP_WINDOW": "12h", "ABAXUS_PORT": "9000"})
    assert (s.dedup_window_seconds, s.port) == (43200, 9000)


def test_bootstrap_key_is_ignored_once_keys_exist(tmp_path: Path):
    with TestClient(create_app(Settings(data_dir=tmp_path, bootstrap_key=ADMIN_KEY))) as c:
        assert c.get("/v1/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
    other = "sk_live_" + "B" * 40
    with TestClient(create_app(Settings(data_dir=tmp_path, bootstrap_key=other))) as c:
        assert c.get("/v1/metrics", headers={"Authorization": f"Bearer {other}"}).status_code == 401


def test_cli_creates_a_key_that_the_server_accepts(tmp_path: Path):
    env = {"ABAXUS_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "abaxus.cli", "api-keys", "create", "--name", "ops", "--scope", "read"],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    secret = out.stdout.strip().splitlines()[-1]
    assert secret.startswith("sk_live_")
    assert len(secret) == 48
    migrate = subprocess.run([sys.executable, "-m", "abaxus.cli", "migrate"], env=env, capture_output=True, text=True,
                             timeout=120, check=False)
    assert migrate.returncode == 0, migrate.stderr
    with TestClient(create_app(Settings(data_dir=tmp_path))) as c:
        assert c.get("/v1/metrics", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
        assert error_of(c.post("/v1/customers", json={"id": "x", "name": "y"},
                               headers={"Authorization": f"Bearer {secret}"}))[:2] == (403, "INSUFFICIENT_SCOPE")
