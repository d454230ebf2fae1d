"""Commercial terms: plan minimums, prepaid credit grants and their ledger, coupons and discounts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

``plan_versions.minimum`` (JSON ``{"amount": "<decimal>"}``, NULL for none: versions stored
before it have no minimum) and five new tables, written out as explicit operations (never
from the live ``tables`` module). Like 0002–0004, each is added only when missing, so a
database stamped back to ``0001`` while holding later tables and columns upgrades cleanly.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TABLES = ("credit_grants", "credit_ledger", "coupons", "subscription_discounts", "discount_redemptions")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "minimum" not in {c["name"] for c in inspector.get_columns("plan_versions")}:
        with op.batch_alter_table("plan_versions") as batch:
            batch.add_column(sa.Column("minimum", sa.Text(), nullable=True))
    existing = set(inspector.get_table_names())
    if "credit_grants" not in existing:
        op.create_table(
            "credit_grants",
            sa.Column("id", sa.String(40), nullable=False),
            sa.Column("customer_id", sa.String(128), nullable=False),
            sa.Column("currency", sa.String(3), nullable=False),
            sa.Column("amount", sa.BigInteger(), nullable=False),
            sa.Column("remaining", sa.BigInteger(), nullable=False),
            sa.Column("priority", sa.Integer(), nullable=False),
            sa.Column("effective_at", sa.BigInteger(), nullable=False),
            sa.Column("expires_at", sa.BigInteger(), nullable=True),
            sa.Column("description", sa.Text(), nullable=True),
            sa.Column("created_at", sa.BigInteger(), nullable=False),
            sa.Column("voided_at", sa.BigInteger(), nullable=True),
            sa.Column("void_reason", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_credit_grants_customer", "credit_grants", ["customer_id", "created_at", "id"])
    if "credit_ledger" not in existing:
        op.create_table(
            "credit_ledger",
            sa.Column("id", sa.String(40), nullable=False),
            sa.Column("grant_id", sa.String(40), nullable=False),
            sa.Column("customer_id", sa.String(128), nullable=False),
            sa.Column("invoice_id", sa.String(40), nullable=True),
            sa.Column("type", sa.String(10), nullable=False),
            sa.Column("amount", sa.BigInteger(), nullable=False),
            sa.Column("at", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_credit_ledger_grant", "credit_ledger", ["grant_id", "id"])
        op.create_index("ix_credit_ledger_invoice", "credit_ledger", ["invoice_id"])
    if "coupons" not in existing:
        op.create_table(
            "coupons",
            sa.Column("id", sa.String(128), nullable=False),
            sa.Column("percent_off", sa.String(16), nullable=True),
            sa.Column("amount_off", sa.BigInteger(), nullable=True),
            sa.Column("currency", sa.String(3), nullable=True),
            sa.Column("duration", sa.String(10), nullable=False),
            sa.Column("duration_in_periods", sa.Integer(), nullable=True),
            sa.Column("applies_to_charge_ids", sa.Text(), nullable=True),
            sa.Column("created_at", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_coupons_created", "coupons", ["created_at", "id"])
    if "subscription_discounts" not in existing:
        op.create_table(
            "subscription_discounts",
            sa.Column("id", sa.String(40), nullable=False),
            sa.Column("subscription_id", sa.String(40), nullable=False),
            sa.Column("coupon_id", sa.String(128), nullable=False),
            sa.Column("created_at", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_subscription_discounts_subscription", "subscription_discounts",
                        ["subscription_id", "created_at", "id"])
    if "discount_redemptions" not in existing:
        op.create_table(
            "discount_redemptions",
            sa.Column("discount_id", sa.String(40), nullable=False),
            sa.Column("invoice_id", sa.String(40), nullable=False),
            sa.Column("created_at", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("discount_id", "invoice_id"),
        )


def downgrade() -> None:
    for name in reversed(_TABLES):
        op.drop_table(name)
    with op.batch_alter_table("plan_versions") as batch:
        batch.drop_column("minimum")
