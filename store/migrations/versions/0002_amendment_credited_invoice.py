"""amendments.credited_invoice_id: the invoice that carries a plan change's proration credits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Added with subscription amendments (commit c877b7b). NULL until an invoice credits the
change, so existing rows need no value.

Databases created before the baseline was written out ran ``create_all`` on the live tables
and were stamped ``0001`` with whatever columns existed that day, so the column may already be
there: it is added only when missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("amendments")}
    if "credited_invoice_id" not in columns:
        with op.batch_alter_table("amendments") as batch:
            batch.add_column(sa.Column("credited_invoice_id", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("amendments") as batch:
        batch.drop_column("credited_invoice_id")
