"""The app-level scenarios again with the metadata store on the real PostgreSQL.

Keys, plans, subscriptions, amendments, invoices, audit entries and charge locks then live
in PostgreSQL (row locks, its own transaction isolation) while usage stays in chDB. The
tests are the very functions of the SQLite runs, imported here, so both stores are held to
the same assertions; only ``embedded_settings`` differs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from abaxus.settings import Settings
from conftest import ADMIN_KEY, _reset_pg
from test_amendments import (  # noqa: F401 - collected again here
    clock,
    live,
    test_a_pause_cuts_its_interval_out_of_the_invoice,
    test_a_prorated_plan_change_splits_the_period_and_credits_the_old_fee,
    test_amendment_validation_and_conflicts,
)
from test_entitlements import entitled, test_limits_add_up_and_count_usage_of_the_current_period  # noqa: F401
from test_invoices import (  # noqa: F401
    acme,
    test_adjustment_after_late_usage_bills_the_difference,
    test_audit_trail_records_issue_and_archive_with_the_actor,
    test_bulk_run_counts_created_skipped_and_existing,
    test_calculate_then_invoice_from_the_calculation,
    test_one_invoice_per_subscription_period,
    test_quickstart_invoice_is_14900_with_its_tier_breakdown,
)
from test_payments import (  # noqa: F401
    billing,
    test_a_declined_card_keeps_the_invoice_issued_and_a_good_card_then_pays,
    test_a_signed_webhook_marks_paid_and_a_forged_one_is_refused,
    test_a_success_stripe_holds_but_we_never_recorded_is_reconciled_not_charged_again,
    test_twenty_concurrent_charges_make_exactly_one_payment,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def embedded_settings(tmp_path: Path, pg_database: str, request: pytest.FixtureRequest) -> Settings:
    """PostgreSQL settings; on the test's ``ManualClock`` when the test moves one (the amendment tests)."""
    _reset_pg(pg_database)
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_database, bootstrap_key=ADMIN_KEY,
                        log_format="console", epoch_seconds=1.0)
    if "clock" in request.fixturenames:
        settings = dataclasses.replace(settings, clock=request.getfixturevalue("clock"))
    return settings
