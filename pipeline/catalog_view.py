"""The intake's in-memory view of customers and metrics.

Validating each event against the metadata store would cost a query per event; this view
answers from memory. It is refreshed when this process changes the catalog, every few
seconds for changes made by other processes, and on a miss before an event is refused.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Engine, select

from abaxus.store.tables import customers, metrics

__all__ = ["CatalogView"]


class CatalogView:
    def __init__(self, engine: Engine, max_age_s: float = 5.0) -> None:
        self.engine = engine
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self.customers: frozenset[str] = frozenset()
        self.metrics: dict[str, dict[str, Any]] = {}
        self.loaded_at = 0.0
        self.refresh()

    def refresh(self) -> None:
        with self.engine.connect() as conn:
            cust = frozenset(r[0] for r in conn.execute(select(customers.c.id)))
            mets = {r["key"]: dict(r) for r in conn.execute(select(metrics)).mappings()}
        with self._lock:
            self.customers, self.metrics, self.loaded_at = cust, mets, time.monotonic()

    def refresh_if_stale(self, force: bool = False) -> None:
        if force or time.monotonic() - self.loaded_at > self.max_age_s:
            self.refresh()
