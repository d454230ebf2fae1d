"""Abaxus: a self-hosted, usage-based billing engine.

The distribution maps the repository's top-level folders onto sub-packages:
``abaxus.api`` (HTTP), ``abaxus.pipeline`` (durable intake and the Bytewax dataflow),
``abaxus.store`` (metadata and usage stores), ``abaxus.billing`` (invoices, payments),
``abaxus.rating`` (pure pricing over Arrow tables) and ``abaxus.schemas`` (msgspec structs),
with ``abaxus.cli`` (the ``abaxus`` command, the Quick Start) on top. This package itself is
the bottom layer (settings, errors, ids, money and time formats): it imports none of them.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
