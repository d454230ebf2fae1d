"""Baseline: every metadata table of API v1.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

The baseline is the table set of ``abaxus.store.tables`` as first released; later schema
changes go into new revisions written with ``op.*`` calls, never into this one.
"""

from alembic import op

from abaxus.store.tables import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
