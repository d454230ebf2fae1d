"""The metadata store's engine: SQLite in the data dir by default, PostgreSQL by URL.

``open_engine`` applies the settings each engine needs (WAL and a busy timeout on SQLite so
the API's threads and a CLI can share the file), and ``migrate`` brings the schema to head
with Alembic; it is safe to run again.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text

__all__ = ["alembic_config", "is_postgres", "migrate", "open_engine", "ping", "sqlite_change_counter"]

_MIGRATIONS = str(Path(__file__).parent / "migrations")


def open_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:  # the DB-API connection: untyped
            # pysqlite's implicit transactions off: Abaxus issues BEGIN itself (below).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin_immediate(conn: Connection) -> None:
            # Take the write lock up front, so read-then-write transactions (compare-and-set
            # of an invoice, the next plan version) serialize instead of failing mid-way.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def sqlite_change_counter(url: str) -> Callable[[], int] | None:
    """For a SQLite file: a function whose value changes whenever any connection, of any process, commits to it.

    SQLite's ``PRAGMA data_version`` on a connection that never writes: a few microseconds,
    no lock taken. Caches of what the store holds (API keys) check it on each use, so they
    are exact across processes sharing the file. ``None`` for other engines (and ``:memory:``).
    """
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    if not path or path == ":memory:":
        return None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    lock = threading.Lock()

    def value() -> int:
        with lock:
            row = conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    return value


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def migrate(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the metadata schema to ``revision`` (the newest by default).

    Alembic applies only the revisions a database lacks, so this is safe to re-run, and a
    database at any earlier revision is brought forward step by step. ``revision`` is there
    for tests that build a database as an older release left it.
    """
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def alembic_config(connection: Connection) -> Config:
    """Alembic's configuration for our migrations, bound to ``connection`` (``env.py`` uses it).

    Public so tests and operators can run any Alembic command (``stamp``, ``current``,
    ``history``) on exactly the environment ``migrate`` uses.
    """
    config = Config()
    config.set_main_option("script_location", _MIGRATIONS)
    config.attributes["connection"] = connection
    return config


def ping(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - a health probe: any failure means not ready
        return False
