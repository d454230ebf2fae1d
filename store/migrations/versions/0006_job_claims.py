"""jobs.claimed_by, jobs.lease_until, jobs.attempts: bulk jobs are claimed by one replica at a time.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

With several API replicas on one metadata store, a bulk job is run by the replica that
claims it (``abaxus.billing.jobs``): ``claimed_by`` names the replica, ``lease_until`` (ms)
is when its claim lapses unless renewed, ``attempts`` counts claims and fences the current
one. All three are NULL on jobs recorded before this revision; such a job still ``queued``
or ``running`` (left by a stopped single-process release) is claimable, so it is resumed
as before. ``ix_jobs_claimable`` serves the poll every replica runs every few seconds.

Like 0002–0005, each column (and the index) is added only when missing, so a database
stamped back to ``0001`` while holding later columns upgrades cleanly.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("claimed_by", sa.String(64)),
    ("lease_until", sa.BigInteger()),
    ("attempts", sa.Integer()),
)
_INDEX = "ix_jobs_claimable"


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = {c["name"] for c in inspector.get_columns("jobs")}
    missing = [(name, type_) for name, type_ in _COLUMNS if name not in present]
    if missing:
        with op.batch_alter_table("jobs") as batch:
            for name, type_ in missing:
                batch.add_column(sa.Column(name, type_, nullable=True))
    if _INDEX not in {i["name"] for i in inspector.get_indexes("jobs")}:
        op.create_index(_INDEX, "jobs", ["status", "lease_until"])


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
