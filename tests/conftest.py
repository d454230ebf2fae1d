"""Fixtures: the real app over ASGI on real stores (SQLite or PostgreSQL), fresh per test.

PostgreSQL tests create their own database on the server at 127.0.0.1:5432 and drop it
afterwards; they skip, saying why, only when no server answers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from litestar.testing import TestClient
from sqlalchemy import create_engine, text

from abaxus.api.app import create_app
from abaxus.settings import Settings

ADMIN_KEY = "sk_test_" + "A" * 40
PG_ADMIN_URL = os.environ.get("ABAXUS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_available() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001  # pragma: no cover - depends on the machine
        return f"PostgreSQL at 127.0.0.1:5432 did not answer ({exc.__class__.__name__}); start it to run these tests"


@contextlib.contextmanager
def throwaway_pg_database(prefix: str = "abaxus_test") -> Iterator[str]:
    """A new PostgreSQL database (its URL), dropped afterwards; skips when no server answers."""
    reason = _pg_available()
    if reason:
        pytest.skip(reason)

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = PG_ADMIN_URL.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session."""
    with throwaway_pg_database() as url:
        yield url


def _reset_pg(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """Each catalog test runs once on SQLite (the default) and once on PostgreSQL."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_database")
    _reset_pg(url)
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, bootstrap_key=ADMIN_KEY,
                    log_format="console")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        yield c


def make_key(client: TestClient[Any], scope: str, name: str = "k") -> str:
    r = client.post("/v1/api-keys", json={"name": name, "scope": scope})
    assert r.status_code == 201, r.text
    return str(r.json()["secret"])


def error_of(response: Any) -> tuple[int, str, Any]:
    body = response.json()
    return response.status_code, body["error"]["code"], body["error"]["field"]


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    """Embedded defaults (SQLite, chDB, local log) with a short Bytewax epoch for tests.

    ``test_on_postgres.py`` overrides it to run the app-level scenarios on PostgreSQL.
    """
    return Settings(data_dir=tmp_path / "data", bootstrap_key=ADMIN_KEY, log_format="console", epoch_seconds=1.0)


@pytest.fixture
def app_client(embedded_settings: Settings) -> Iterator[TestClient[Any]]:
    """The real app with the real dataflow and chDB, over ASGI (no PostgreSQL variant)."""
    with TestClient(create_app(embedded_settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        yield c


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    """A real stateful fake Stripe (localstripe) on a free loopback port, for the whole session."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(__file__).parent / "localstripe_server.py"
    proc = subprocess.Popen([sys.executable, str(script), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/v1/customers", headers={"Authorization": "Bearer sk_test_x"}, timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("localstripe did not start")
    yield url
    proc.terminate()
    proc.wait(10)
