"""Abaxus: a self-hosted, usage-based billing engine.

The distribution maps the repository's top-level folders onto sub-packages:
``abaxus.api`` (HTTP), ``abaxus.pipeline`` (durable intake and the Bytewax dataflow),
``abaxus.store`` (metadata and usage stores), ``abaxus.billing`` (invoices, payments),
``abaxus.rating`` (pure pricing over Arrow tables) and ``abaxus.schemas`` (msgspec structs).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
