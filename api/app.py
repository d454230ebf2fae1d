"""The app factory: opens the stores, wires middleware, routes and DI, starts the pipeline.

Middleware order (outermost first): latency → auth (key, scope, rate limit) → write
idempotency. Routes never read the environment or globals: they take ``svc: Services``.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from sqlalchemy import Engine

from abaxus import __version__
from abaxus.api.auth import AuthMiddleware, RateLimiter
from abaxus.api.contract import JsonNumberSchema, openapi_config
from abaxus.api.errors import EXCEPTION_HANDLERS
from abaxus.api.idempotency import IdempotencyMiddleware
from abaxus.api.observability import LatencyMiddleware
from abaxus.api.routes import paging
from abaxus.api.routes import (
    api_keys, customers, entitlements, events, health, invoices, metrics, payments, price_plans, subscriptions, usage,
)
from abaxus.api.state import Services, services_from_state
from abaxus.billing.api_keys import any_keys, create_key
from abaxus.billing.invoices import Invoicing
from abaxus.billing.jobs import BulkInvoicing
from abaxus.billing.payments import Payments
from abaxus.logging import configure_logging, get_logger
from abaxus.pipeline.service import Ingestion
from abaxus.settings import Settings
from abaxus.store.metadata import migrate, open_engine
from abaxus.telemetry import Telemetry

__all__ = ["create_app", "open_metadata", "open_services"]

log = get_logger("abaxus.app")

ROUTE_MODULES = [health, api_keys, metrics, price_plans, customers, subscriptions, entitlements, events, usage, invoices,
                 payments]


def open_metadata(settings: Settings) -> Engine:
    """Open and migrate the metadata store; create the bootstrap key on a keyless start."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_engine(settings.resolved_database_url)
    migrate(engine)
    if settings.bootstrap_key and not any_keys(engine):
        mode = "test" if settings.bootstrap_key.startswith("sk_test_") else "live"
        create_key(engine, "bootstrap", "admin", mode, secret=settings.bootstrap_key)
        log.info("bootstrap_key_created")
    return engine


def open_services(settings: Settings) -> Services:
    """Open every store and the ingestion pipeline (started with the app)."""
    engine = open_metadata(settings)
    services = Services(settings=settings, engine=engine, telemetry=Telemetry())
    services.extras["rate_limiter"] = RateLimiter(settings.rate_limit_rpm)
    services.extras["catalog_changed"] = lambda: services.catalog_view.refresh() if services.catalog_view else None
    ingestion = Ingestion(settings, engine, services.telemetry)
    services.intake, services.usage, services.dataflow = ingestion, ingestion.usage, ingestion.dataflow
    services.catalog_view = ingestion.view
    services.invoicing = Invoicing(engine, ingestion.usage, ingestion.caught_up_as_of)
    services.bulk = BulkInvoicing(engine, services.invoicing)
    services.payments = Payments(engine, settings)
    return services


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_format)
    services = services or open_services(settings)
    handlers: list[Any] = [h for module in ROUTE_MODULES for h in module.ROUTES]

    def on_shutdown() -> None:
        services.bulk.join()
        services.intake.stop()
        services.engine.dispose()

    return Litestar(
        route_handlers=handlers,
        dependencies={"svc": Provide(services_from_state, sync_to_thread=False),
                      "paging": Provide(paging, sync_to_thread=False)},
        middleware=[LatencyMiddleware(), AuthMiddleware(), IdempotencyMiddleware()],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=openapi_config(__version__),
        plugins=[JsonNumberSchema()],
        state=State({"services": services}),
        on_startup=[services.intake.start, services.bulk.resume_interrupted],
        on_shutdown=[on_shutdown],
        request_max_body_size=6_000_000,
        debug=False,
    )
