"""What Alembic's autogenerate comparison should skip when it compares a database with the tables.

One thing only: a unique constraint on exactly the primary key's columns
(``webhook_events.uq_webhook_event``). It adds nothing a primary key does not already
enforce, and PostgreSQL folds it into the primary key at ``CREATE TABLE`` (the key takes its
name, no unique constraint exists), so there is nothing to reflect and the comparison would
ask to add it on every run. SQLite keeps it, and it is compared there as usual.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import UniqueConstraint

__all__ = ["include_object"]


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's ``include_object`` hook: False only for a PK-duplicating unique constraint absent from the database."""
    if type_ == "unique_constraint" and not reflected and compare_to is None and isinstance(obj, UniqueConstraint):
        key = {c.name for c in obj.table.primary_key.columns}
        return {c.name for c in obj.columns} != key
    return True
