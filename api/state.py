"""What the lifespan opens, and the typed dependencies handlers take.

Each part is its own dependency, named as a handler parameter: ``settings``, ``engine`` (the
metadata store), ``telemetry``, ``ingestion``, ``usage`` (the usage store), ``invoicing``,
``bulk``, ``payments`` and ``key_cache`` (the auth's, if this process keeps one). A handler
calls that part's public methods, never another part's internals (``Ingestion`` keeps its
catalog view, log and dataflow private). ``Services`` is
only the lifespan's record of what it opened and will close, kept on ``app.state.services``.

A new part: a field here, its provider in ``dependencies``, its opening in
``abaxus.api.app.open_services`` (and its closing in ``Services.close``).
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.datastructures import State
from litestar.di import Provide
from sqlalchemy import Engine

from abaxus.api.auth import KeyCache
from abaxus.billing.invoices import Invoicing
from abaxus.billing.jobs import BulkInvoicing
from abaxus.billing.payments import Payments
from abaxus.pipeline.service import Ingestion
from abaxus.settings import Settings
from abaxus.store.usage import UsageStore
from abaxus.telemetry import Telemetry

__all__ = ["Services", "dependencies", "services_of"]


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    engine: Engine
    telemetry: Telemetry
    ingestion: Ingestion
    usage: UsageStore
    invoicing: Invoicing
    bulk: BulkInvoicing
    payments: Payments

    def start(self) -> None:
        self.ingestion.start()
        self.bulk.resume_interrupted()

    def close(self) -> None:
        """Let running bulk jobs finish, stop the dataflow (closing the log and usage store), close the pool."""
        self.bulk.join()
        self.ingestion.stop()
        self.engine.dispose()


def services_of(state: State) -> Services:
    """What the lifespan opened (``app.state.services``)."""
    services: Services = state.services
    return services


def _settings(state: State) -> Settings:
    return services_of(state).settings


def _engine(state: State) -> Engine:
    return services_of(state).engine


def _telemetry(state: State) -> Telemetry:
    return services_of(state).telemetry


def _ingestion(state: State) -> Ingestion:
    return services_of(state).ingestion


def _usage(state: State) -> UsageStore:
    return services_of(state).usage


def _invoicing(state: State) -> Invoicing:
    return services_of(state).invoicing


def _bulk(state: State) -> BulkInvoicing:
    return services_of(state).bulk


def _payments(state: State) -> Payments:
    return services_of(state).payments


def _key_cache(state: State) -> KeyCache | None:
    cache: KeyCache | None = state.get("key_cache")
    return cache


def dependencies() -> dict[str, Provide]:
    """One ``Provide`` per part, by the parameter name handlers use."""
    providers = {"settings": _settings, "engine": _engine, "telemetry": _telemetry, "ingestion": _ingestion,
                 "usage": _usage, "invoicing": _invoicing, "bulk": _bulk, "payments": _payments,
                 "key_cache": _key_cache}
    return {name: Provide(fn, sync_to_thread=False) for name, fn in providers.items()}
