"""jobs.actor: the API key that asked for a bulk run, so a resumed run's audit entries name it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Added when queued or running bulk jobs became resumable at start (commit 7948ecc). Jobs
recorded before it have no actor (NULL).

Databases created before the baseline was written out ran ``create_all`` on the live tables
and were stamped ``0001`` with whatever columns existed that day, so the column may already be
there: it is added only when missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("jobs")}
    if "actor" not in columns:
        with op.batch_alter_table("jobs") as batch:
            batch.add_column(sa.Column("actor", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("actor")
