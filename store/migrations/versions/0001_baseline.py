"""Baseline: every metadata table of API v1, as first released.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

The tables exactly as ``abaxus.store.tables`` defined them at first release (commit a9e4916),
written out as explicit operations. This revision must never import the live ``tables``
module nor change again: a database stamped ``0001`` has to mean one schema, so every later
change is a new revision. (Until this was fixed the baseline ran ``metadata.create_all`` on
the live tables; databases it created may therefore already hold later columns, which is why
the later revisions check before they add.)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES = ("api_keys", "metrics", "plan_versions", "customers", "subscriptions", "amendments",
           "idempotency_records", "invoices", "calculations", "jobs", "audit_entries", "webhook_events")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(10), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_sha256"),
    )
    op.create_table(
        "metrics",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("aggregation", sa.String(16), nullable=False),
        sa.Column("property", sa.String(255), nullable=True),
        sa.Column("percentile", sa.String(32), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("deactivated_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_table(
        "plan_versions",
        sa.Column("plan_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("billing_period", sa.String(10), nullable=False),
        sa.Column("charges", sa.Text(), nullable=False),
        sa.Column("entitlements", sa.Text(), nullable=False),
        sa.Column("changelog", sa.Text(), nullable=True),
        sa.Column("effective_from", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("deprecated_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("plan_id", "version"),
    )
    op.create_table(
        "customers",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("payment_provider", sa.String(16), nullable=True),
        sa.Column("payment_provider_customer_id", sa.String(255), nullable=True),
        sa.Column("payment_method_id", sa.String(255), nullable=True),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_customers_created", "customers", ["created_at", "id"])
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("plan_id", sa.String(128), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("start_date", sa.BigInteger(), nullable=False),
        sa.Column("end_date", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_subscriptions_customer_id", "subscriptions", ["customer_id"])
    op.create_table(
        "amendments",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("subscription_id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("effective", sa.String(40), nullable=False),
        sa.Column("effective_at", sa.BigInteger(), nullable=False),
        sa.Column("plan_id", sa.String(128), nullable=True),
        sa.Column("plan_version", sa.Integer(), nullable=True),
        sa.Column("prorate", sa.Boolean(), nullable=False),
        sa.Column("resume_date", sa.BigInteger(), nullable=True),
        sa.Column("end_date", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_amendments_subscription_id", "amendments", ["subscription_id"])
    op.create_table(
        "idempotency_records",
        sa.Column("api_key_id", sa.String(40), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("api_key_id", "key"),
    )
    op.create_index("ix_idempotency_records_created_at", "idempotency_records", ["created_at"])
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(12), nullable=False),
        sa.Column("adjusts_invoice_id", sa.String(40), nullable=True),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("subscription_id", sa.String(40), nullable=False),
        sa.Column("plan_id", sa.String(128), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("period_start", sa.BigInteger(), nullable=False),
        sa.Column("period_end", sa.BigInteger(), nullable=False),
        sa.Column("total_amount", sa.BigInteger(), nullable=False),
        sa.Column("line_items", sa.Text(), nullable=False),
        sa.Column("calculation_id", sa.String(40), nullable=True),
        sa.Column("usage_as_of", sa.BigInteger(), nullable=False),
        sa.Column("payment_intent_id", sa.String(255), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", sa.BigInteger(), nullable=True),
        sa.Column("archived_at", sa.BigInteger(), nullable=True),
        sa.Column("archive_reason", sa.Text(), nullable=True),
        sa.Column("period_slot", sa.String(80), nullable=True),
        sa.Column("charge_attempt", sa.Integer(), nullable=False),
        sa.Column("charge_lock", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("period_slot"),
    )
    op.create_index("ix_invoices_adjusts_invoice_id", "invoices", ["adjusts_invoice_id"])
    op.create_index("ix_invoices_customer_id", "invoices", ["customer_id"])
    op.create_index("ix_invoices_subscription_id", "invoices", ["subscription_id"])
    op.create_table(
        "calculations",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("subscription_id", sa.String(40), nullable=False),
        sa.Column("cutoff", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("cutoff_date", sa.BigInteger(), nullable=False),
        sa.Column("invoices_created", sa.Integer(), nullable=False),
        sa.Column("invoices_skipped", sa.Integer(), nullable=False),
        sa.Column("invoices_existing", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("invoice_id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(40), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_invoice", "audit_entries", ["invoice_id", "id"])
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(80), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("id", name="uq_webhook_event"),
    )


def downgrade() -> None:
    for name in reversed(_TABLES):
        op.drop_table(name)
