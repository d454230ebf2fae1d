"""The entry points: the ``abaxus`` command and the Quick Start.

This is the top of the tree: it assembles the app from the parts below it (``abaxus.api``,
``abaxus.billing``, ``abaxus.pipeline``, ``abaxus.store``, all resting on ``abaxus`` itself),
and nothing imports it back. ``python -m abaxus.cli`` runs the same command as ``abaxus``.
"""

from abaxus.cli.commands import app

__all__ = ["app"]
