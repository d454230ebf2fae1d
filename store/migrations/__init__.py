"""Alembic migrations of the metadata store (run by ``abaxus migrate`` and at start-up)."""
