"""Schema upgrades: a store any earlier release created reaches exactly today's schema, rows intact.

Metadata store (SQLite and PostgreSQL): for every revision before head, build a database at
that revision, fill it with rows, upgrade, and ask Alembic's autogenerate comparison whether
the result differs from ``abaxus.store.tables`` (it must not). Databases the old
``create_all`` baseline made (stamped ``0001`` while holding later columns) upgrade too.

Usage store (chDB): the versioned steps run once, are recorded once, and a store created
before the ledger existed (the first release's summary view, no ``schema_migrations``)
reaches today's definitions.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from abaxus.settings import Settings
from abaxus.store import tables, usage_migrations
from abaxus.store.metadata import alembic_config, migrate, open_engine
from abaxus.store.migrations.comparison import include_object
from abaxus.store.usage import DB, UsageStore, migrate_usage, open_usage_client

T0 = 1_775_000_000_000  # 2026-03-31T23:33:20Z, in ms


def _revisions() -> list[str]:
    """Every revision id, oldest first (read from the scripts, not written down here)."""
    with sa.create_engine("sqlite://").connect() as conn:
        script = ScriptDirectory.from_config(alembic_config(conn))
        return [r.revision for r in reversed(list(script.walk_revisions()))]


REVISIONS = _revisions()
HEAD = REVISIONS[-1]

# Rows as a release at each revision wrote them, by the revision that first allows them.
# Only columns that existed then: the point is that upgrades keep what old code stored.
ROWS: dict[str, dict[str, list[dict[str, Any]]]] = {
    "0001": {
        "api_keys": [{"id": "key_01", "name": "bootstrap", "scope": "admin", "mode": "test",
                      "secret_sha256": "a" * 64, "created_at": T0, "revoked_at": None}],
        "metrics": [{"id": "met_01", "key": "api_calls", "name": "API Calls", "aggregation": "sum",
                     "property": None, "percentile": None, "description": "Total API calls",
                     "status": "active", "created_at": T0, "deactivated_at": None}],
        "plan_versions": [{"plan_id": "plan_growth", "version": 1, "name": "Growth", "currency": "usd",
                           "billing_period": "monthly",
                           "charges": '[{"metric_key":null,"pricing_model":"flat_fee","amount":"49.00"}]',
                           "entitlements": "[]", "changelog": None, "effective_from": T0, "created_at": T0,
                           "deprecated_at": None}],
        "customers": [{"id": "cust_acme", "name": "Acme Corp", "email": "billing@acme.io", "currency": "usd",
                       "payment_provider": "stripe", "payment_provider_customer_id": "cus_stripe_acme123",
                       "payment_method_id": None, "metadata": "{}", "created_at": T0, "updated_at": T0}],
        "subscriptions": [{"id": "sub_01", "customer_id": "cust_acme", "plan_id": "plan_growth", "plan_version": 1,
                           "start_date": T0, "end_date": None, "created_at": T0}],
        "amendments": [{"id": "amd_01", "subscription_id": "sub_01", "type": "pause", "effective": "immediate",
                        "effective_at": T0 + 1000, "plan_id": None, "plan_version": None, "prorate": False,
                        "resume_date": None, "end_date": None, "created_at": T0 + 1000}],
        "invoices": [{"id": "inv_01", "type": "standard", "adjusts_invoice_id": None, "customer_id": "cust_acme",
                      "subscription_id": "sub_01", "plan_id": "plan_growth", "plan_version": 1, "status": "issued",
                      "currency": "usd", "period_start": T0, "period_end": T0 + 86_400_000, "total_amount": 4900,
                      "line_items": "[]", "calculation_id": None, "usage_as_of": T0 + 86_400_000,
                      "payment_intent_id": None, "created_at": T0, "paid_at": None, "archived_at": None,
                      "archive_reason": None, "period_slot": f"sub_01:{T0}", "charge_attempt": 0,
                      "charge_lock": None}],
        "jobs": [{"id": "job_01", "status": "succeeded", "cutoff_date": T0, "invoices_created": 1,
                  "invoices_skipped": 0, "invoices_existing": 0, "errors": "[]", "created_at": T0,
                  "started_at": T0, "finished_at": T0 + 5}],
        "audit_entries": [{"id": "aud_01", "invoice_id": "inv_01", "type": "issued", "actor": "key_01", "at": T0,
                           "data": "{}"}],
        "idempotency_records": [{"api_key_id": "key_01", "key": "req-1", "fingerprint": "f" * 64, "status": 201,
                                 "response_body": b'{"id":"cust_acme"}', "created_at": T0}],
        "webhook_events": [{"id": "evt_01", "type": "payment_intent.succeeded", "received_at": T0}],
    },
    "0002": {
        "amendments": [{"id": "amd_02", "subscription_id": "sub_01", "type": "plan_change", "effective": "immediate",
                        "effective_at": T0 + 2000, "plan_id": "plan_growth", "plan_version": 1, "prorate": True,
                        "resume_date": None, "end_date": None, "created_at": T0 + 2000,
                        "credited_invoice_id": "inv_01"}],
    },
    "0003": {
        "jobs": [{"id": "job_03", "status": "queued", "cutoff_date": T0, "invoices_created": 0, "invoices_skipped": 0,
                  "invoices_existing": 0, "errors": "[]", "created_at": T0, "started_at": None, "finished_at": None,
                  "actor": "key_01"}],
    },
    "0006": {
        "jobs": [{"id": "job_06", "status": "running", "cutoff_date": T0, "invoices_created": 3, "invoices_skipped": 0,
                  "invoices_existing": 1, "errors": "[]", "created_at": T0, "started_at": T0, "finished_at": None,
                  "actor": "key_01", "claimed_by": "api-1:4242:0a1b2c3d", "lease_until": T0 + 30_000, "attempts": 2}],
    },
}


@pytest.fixture
def engine(database_url: str | None, tmp_path: Path) -> Iterator[sa.Engine]:
    """An empty metadata database: a SQLite file, or the reset PostgreSQL test database."""
    e = open_engine(database_url or f"sqlite:///{tmp_path / 'metadata.db'}")
    yield e
    e.dispose()


def _insert_rows_up_to(engine: sa.Engine, revision: str) -> dict[str, list[dict[str, Any]]]:
    """Insert the rows of every revision up to ``revision``; return them by table."""
    written: dict[str, list[dict[str, Any]]] = {}
    with engine.begin() as conn:
        for rev in REVISIONS[: REVISIONS.index(revision) + 1]:
            for name, rows in ROWS.get(rev, {}).items():
                table = sa.table(name, *(sa.column(c) for c in rows[0]))
                conn.execute(sa.insert(table), rows)
                written.setdefault(name, []).extend(rows)
    return written


def _assert_rows_kept(engine: sa.Engine, written: dict[str, list[dict[str, Any]]]) -> None:
    with engine.connect() as conn:
        for name, rows in written.items():
            table = tables.metadata.tables[name]
            pk = list(table.primary_key.columns)
            stored = {tuple(r._mapping[c.name] for c in pk): dict(r._mapping)
                      for r in conn.execute(sa.select(table))}
            assert len(stored) == len(rows), name
            for row in rows:
                got = stored[tuple(row[c.name] for c in pk)]
                assert {k: got[k] for k in row} == row, name
                # Columns added after the row was written are NULL on it.
                assert all(got[c] is None for c in set(got) - set(row)), name


def _schema_diff(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        # include_object skips one piece of PostgreSQL noise (see abaxus.store.migrations.comparison).
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include_object})
        return compare_metadata(context, tables.metadata)


def _current(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _writes_during(engine: sa.Engine, action: Any) -> list[str]:
    """The statements ``action`` sent that would change the database (DDL or DML)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"}:
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return seen


def test_revisions_form_one_line() -> None:
    assert REVISIONS[0] == "0001"
    assert len(REVISIONS) == len(set(REVISIONS)) >= 3
    assert "0006" in REVISIONS  # the bulk job claims: upgraded to from every earlier revision below


def test_baseline_does_not_import_the_live_tables() -> None:
    baseline = Path(__file__).parents[1] / "store" / "migrations" / "versions" / "0001_baseline.py"
    text = baseline.read_text()
    assert "abaxus.store.tables" not in text.split('"""', 2)[2]
    assert "create_all" not in text.split('"""', 2)[2]


def test_fresh_database_reaches_head_and_matches_the_tables(engine: sa.Engine) -> None:
    migrate(engine)
    assert _current(engine) == HEAD
    assert _schema_diff(engine) == []
    assert _writes_during(engine, lambda: migrate(engine)) == []
    assert _current(engine) == HEAD


@pytest.mark.parametrize("revision", REVISIONS[:-1])
def test_upgrade_from_each_earlier_revision_keeps_rows(engine: sa.Engine, revision: str) -> None:
    migrate(engine, revision)
    assert _current(engine) == revision
    written = _insert_rows_up_to(engine, revision)
    migrate(engine)
    assert _current(engine) == HEAD
    _assert_rows_kept(engine, written)
    assert _schema_diff(engine) == []
    assert _writes_during(engine, lambda: migrate(engine)) == []


def test_revision_0006_downgrades_to_jobs_without_claims_and_upgrades_again(engine: sa.Engine) -> None:
    """The claim columns go and come back; the jobs (claimed or not) stay."""
    migrate(engine)
    written = _insert_rows_up_to(engine, "0005")
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0005")
    assert _current(engine) == "0005"
    columns = {c["name"] for c in sa.inspect(engine).get_columns("jobs")}
    assert not columns & {"claimed_by", "lease_until", "attempts"}
    assert "ix_jobs_claimable" not in {i["name"] for i in sa.inspect(engine).get_indexes("jobs")}
    migrate(engine)
    _assert_rows_kept(engine, written)
    assert _schema_diff(engine) == []


@pytest.mark.parametrize("built_as", REVISIONS[1:])
def test_legacy_baseline_stamped_0001_with_later_columns_upgrades(engine: sa.Engine, built_as: str) -> None:
    """The old baseline ran ``create_all`` on the day's tables and stamped ``0001``.

    Such a database holds the columns of ``built_as`` under the label ``0001``; the later
    revisions must notice what is there and add only what is missing.
    """
    migrate(engine, built_as)
    with engine.begin() as conn:
        command.stamp(alembic_config(conn), "0001")
    assert _current(engine) == "0001"
    written = _insert_rows_up_to(engine, built_as)
    migrate(engine)
    assert _current(engine) == HEAD
    _assert_rows_kept(engine, written)
    assert _schema_diff(engine) == []


# ---- usage store (chDB) -------------------------------------------------------------------
# chDB serves one data directory per process at a time: each test closes its store before the
# next opens, as the other usage-store tests do.


def _ledger(store: Any) -> list[tuple[int, str]]:
    rows = store.client.query(f"SELECT version, description FROM {usage_migrations.LEDGER} ORDER BY version")
    return [(int(v), d) for v, d in rows.result_rows]


def _mv_query(store: Any) -> str:
    rows = store.client.query("SELECT create_table_query FROM system.tables "
                              "WHERE database = 'abaxus' AND name = 'usage_hourly_mv'").result_rows
    return str(rows[0][0])


def test_usage_store_migrates_once_and_reopens_as_a_no_op(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    everything = [(s.version, s.description) for s in usage_migrations.STEPS]
    store = UsageStore(settings)
    try:
        assert _ledger(store) == everything
        assert "sumIf" in _mv_query(store)
        assert "multiIf" not in _mv_query(store)
    finally:
        store.close()
    store = UsageStore(settings)  # re-opened: nothing to apply, nothing recorded twice
    try:
        assert _ledger(store) == everything
    finally:
        store.close()
    assert migrate_usage(settings) == []


def test_usage_store_from_before_the_ledger_reaches_todays_schema(tmp_path: Path) -> None:
    """A store the first release created: its DDL, its summary view, no ``schema_migrations``."""
    settings = Settings(data_dir=tmp_path / "data")
    client = open_usage_client(settings)
    try:
        client.command(f"CREATE DATABASE IF NOT EXISTS {DB}")
        for statement in usage_migrations.STEPS[0].statements:
            client.command(statement)
        assert not int(client.command(f"EXISTS TABLE {usage_migrations.LEDGER}"))
        at = datetime.fromtimestamp(T0 / 1000, tz=UTC)
        epoch = datetime.fromtimestamp(0, tz=UTC)
        client.insert(f"{DB}.events", [["evt_1", "req_1", "cust_acme", "api_calls", 1000, at, {}, at, False, epoch, ""]],
                      column_names=["event_id", "idempotency_key", "customer_id", "metric_key", "value", "timestamp",
                                    "properties", "ingested_at", "voided", "voided_at", "void_reason"])
    finally:
        client.close()

    store = UsageStore(settings)
    try:
        assert [v for v, _ in _ledger(store)] == [s.version for s in usage_migrations.STEPS]
        assert "sumIf" in _mv_query(store)
        assert store.count_events() == 1
        # The swapped view still feeds the summary: a new event lands in usage_hourly.
        store.client.insert(f"{DB}.events", [["evt_2", "req_2", "cust_acme", "api_calls", 500, at, {}, at, False,
                                              epoch, ""]],
                            column_names=["event_id", "idempotency_key", "customer_id", "metric_key", "value",
                                          "timestamp", "properties", "ingested_at", "voided", "voided_at",
                                          "void_reason"])
        total = store.client.query(f"SELECT sum(value_sum), sum(event_count) FROM {DB}.usage_hourly").result_rows[0]
        assert (int(total[0]), int(total[1])) == (1500, 2)
    finally:
        store.close()
