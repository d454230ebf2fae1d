"""Outbound webhooks (endpoints, the transactional outbox, deliveries, attempts) and usage alerts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

Five new tables, written out as explicit operations (never from the live ``tables`` module).
Each is created only when missing, like the columns of 0002 and 0003: a database stamped back
to ``0001`` while holding later tables (the old ``create_all`` baseline's legacy) upgrades
cleanly.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TABLES = ("webhook_endpoints", "outbox_events", "webhook_deliveries", "webhook_attempts", "alerts")


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "webhook_endpoints" not in existing:
        op.create_table(
            "webhook_endpoints",
            sa.Column("id", sa.String(40), nullable=False),
            sa.Column("url", sa.Text(), nullable=False),
            sa.Column("events", sa.Text(), nullable=False),
            sa.Column("description", sa.Text(), nullable=True),
            sa.Column("secret", sa.String(64), nullable=False),
            sa.Column("status", sa.String(10), nullable=False),
            sa.Column("created_at", sa.BigInteger(), nullable=False),
            sa.Column("updated_at", sa.BigInteger(), nullable=False),
            sa.Column("disabled_at", sa.BigInteger(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_webhook_endpoints_created", "webhook_endpoints", ["created_at", "id"])
    if "outbox_events" not in existing:
        op.create_table(
            "outbox_events",
            sa.Column("id", sa.String(40), nullable=False),
            sa.Column("type", sa.String(40), nullable=False),
            sa.Column("payload", sa.Text(), nullable=False),
            sa.Column("created_at", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    if "webhook_deliveries" not in existing:
        op.create_table(
            "webhook_deliveries",
            sa.Column("id", sa.String(40), nullable=False),
            sa.Column("event_id", sa.String(40), nullable=False),
            sa.Column("endpoint_id", sa.String(40), nullable=False),
            sa.Column("event_type", sa.String(40), nullable=False),
            sa.Column("status", sa.String(10), nullable=False),
            sa.Column("attempt_count", sa.Integer(), nullable=False),
            sa.Column("next_attempt_at", sa.BigInteger(), nullable=True),
            sa.Column("retry_until", sa.BigInteger(), nullable=True),
            sa.Column("claimed_until", sa.BigInteger(), nullable=True),
            sa.Column("last_status_code", sa.Integer(), nullable=True),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.Column("created_at", sa.BigInteger(), nullable=False),
            sa.Column("delivered_at", sa.BigInteger(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])
        op.create_index("ix_webhook_deliveries_endpoint", "webhook_deliveries", ["endpoint_id", "created_at", "id"])
        op.create_index("ix_webhook_deliveries_event", "webhook_deliveries", ["event_id"])
    if "webhook_attempts" not in existing:
        op.create_table(
            "webhook_attempts",
            sa.Column("delivery_id", sa.String(40), nullable=False),
            sa.Column("attempt", sa.Integer(), nullable=False),
            sa.Column("at", sa.BigInteger(), nullable=False),
            sa.Column("status_code", sa.Integer(), nullable=True),
            sa.Column("error", sa.Text(), nullable=True),
            sa.Column("duration_ms", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("delivery_id", "attempt"),
        )
    if "alerts" not in existing:
        op.create_table(
            "alerts",
            sa.Column("id", sa.String(40), nullable=False),
            sa.Column("customer_id", sa.String(128), nullable=False),
            sa.Column("metric_key", sa.String(64), nullable=True),
            sa.Column("kind", sa.String(8), nullable=False),
            sa.Column("threshold", sa.String(40), nullable=False),
            sa.Column("status", sa.String(10), nullable=False),
            sa.Column("created_at", sa.BigInteger(), nullable=False),
            sa.Column("disabled_at", sa.BigInteger(), nullable=True),
            sa.Column("last_triggered_at", sa.BigInteger(), nullable=True),
            sa.Column("triggered_period_start", sa.BigInteger(), nullable=True),
            sa.Column("triggered_period_end", sa.BigInteger(), nullable=True),
            sa.Column("triggered_value", sa.String(64), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_alerts_customer", "alerts", ["customer_id", "created_at", "id"])
        op.create_index("ix_alerts_created", "alerts", ["created_at", "id"])


def downgrade() -> None:
    for name in reversed(_TABLES):
        op.drop_table(name)
