"""Alembic environment: runs on the connection Abaxus hands over in ``config.attributes``.

``render_as_batch`` lets revisions alter tables SQLite cannot alter in place (Alembic copies
the table); ``compare_type`` and ``include_object`` shape autogenerate's comparison, when
drafting a new revision against ``abaxus.store.tables`` (see ``comparison``).
"""

from alembic import context

from abaxus.store.migrations.comparison import include_object
from abaxus.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True,
                  include_object=include_object)
with context.begin_transaction():
    context.run_migrations()
