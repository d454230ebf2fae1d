"""The app factory: wires middleware, routes and DI; its lifespan opens the stores and starts the pipeline.

Middleware order (outermost first): latency → auth (key, scope, rate limit) → write
idempotency; each gets what it uses when it is built. Routes never read the environment or
globals: they name the parts they use as parameters (``engine``, ``ingestion``, …, see
``abaxus.api.state``), each its own dependency.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from sqlalchemy import Engine

from abaxus import __version__
from abaxus.api import dashboard
from abaxus.api.auth import AuthMiddleware, KeyCache, RateLimiter
from abaxus.api.contract import JsonNumberSchema, openapi_config
from abaxus.api.errors import EXCEPTION_HANDLERS
from abaxus.api.idempotency import IdempotencyMiddleware
from abaxus.api.observability import LatencyMiddleware
from abaxus.api.routes import (
    alerts,
    api_keys,
    coupons,
    credits,
    customers,
    entitlements,
    events,
    health,
    ingestion_rate,
    invoices,
    metrics,
    paging,
    payments,
    price_plans,
    subscriptions,
    usage,
    webhooks,
)
from abaxus.api.state import Services, dependencies
from abaxus.billing.alerts import AlertEvaluator
from abaxus.billing.api_keys import any_keys, authenticate, create_key
from abaxus.billing.invoices import Invoicing
from abaxus.billing.jobs import BulkInvoicing
from abaxus.billing.payments import Payments
from abaxus.billing.webhooks import WebhookDispatcher
from abaxus.logging import configure_logging, get_logger
from abaxus.pipeline.kafka_ingestion import KafkaIngestion
from abaxus.pipeline.partitions import PartitionedLogIngestion, partitions_on_disk
from abaxus.pipeline.service import EmbeddedIngestion, Ingestion
from abaxus.settings import Settings
from abaxus.store.metadata import migrate, open_engine, sqlite_change_counter
from abaxus.store.usage import data_path
from abaxus.store.usage_front import UsageFront
from abaxus.telemetry import Telemetry

__all__ = ["create_app", "open_metadata", "open_services", "usage_front"]

log = get_logger("abaxus.app")

ROUTE_MODULES = [health, api_keys, metrics, price_plans, customers, subscriptions, entitlements, events, usage, invoices,
                 payments, ingestion_rate, dashboard, webhooks, alerts, credits, coupons]


def open_metadata(settings: Settings, engine: Engine | None = None) -> Engine:
    """Open and migrate the metadata store; create the bootstrap key on a keyless start."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = engine or open_engine(settings.resolved_database_url)
    migrate(engine)
    if settings.bootstrap_key and not any_keys(engine):
        mode = "test" if settings.bootstrap_key.startswith("sk_test_") else "live"
        create_key(engine, "bootstrap", "admin", mode, secret=settings.bootstrap_key, clock=settings.clock)
        log.info("bootstrap_key_created")
    return engine


def open_services(settings: Settings, engine: Engine, telemetry: Telemetry) -> Services:
    """Migrate the metadata store and open the ingestion pipeline (not started yet) and billing on it."""
    open_metadata(settings, engine)
    # With a broker the events go to Kafka and workers store them; else the embedded log and
    # dataflow, with a log partition per process when intake processes take events too.
    ingestion: Ingestion
    partitions = 1 if settings.kafka_brokers else max(settings.intake_processes + 1, settings.intake_partition + 1,
                                                       partitions_on_disk(settings.data_dir))
    if settings.kafka_brokers:
        ingestion = KafkaIngestion(settings, engine, telemetry)
    elif partitions > 1:
        ingestion = PartitionedLogIngestion(settings, engine, telemetry, partitions)
    else:
        ingestion = EmbeddedIngestion(settings, engine, telemetry)
    invoicing = Invoicing(engine, ingestion.usage, ingestion.caught_up_as_of, clock=settings.clock)
    return Services(settings=settings, engine=engine, telemetry=telemetry, ingestion=ingestion, usage=ingestion.usage,
                    invoicing=invoicing, bulk=BulkInvoicing(engine, invoicing, clock=settings.clock),
                    payments=Payments(engine, settings))


def usage_front(settings: Settings, engine: Engine) -> UsageFront | None:
    """The ClickHouse HTTP front on this process's chDB (None with a ClickHouse server, or ABAXUS_USAGE_PORT=off).

    Analysts get in with an API key of read or admin scope as the password; API replicas
    with user ``abaxus`` and ABAXUS_USAGE_PASSWORD.
    """
    if settings.clickhouse_url or settings.usage_port is None:
        return None

    def may_read(secret: str) -> bool:
        key = authenticate(engine, secret)
        return key is not None and key.scope in ("read", "admin")

    return UsageFront(data_path(settings), host=settings.usage_host, port=settings.usage_port,
                      usage_password=settings.usage_password, authenticate=may_read)


def _lifespan(settings: Settings, engine: Engine, telemetry: Telemetry,
              with_usage_front: bool, background: bool) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """Open every part at start-up and start the dataflow and interrupted bulk runs; close all at shutdown."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            services = open_services(settings, engine, telemetry)
        except BaseException:
            engine.dispose()
            raise
        app.state.services = services
        # Outbound webhooks and alerts run beside the API, never inside a request.
        workers: list[WebhookDispatcher | AlertEvaluator] = [
            WebhookDispatcher(engine, settings), AlertEvaluator(engine, services.usage, services.ingestion.metrics, settings),
        ] if background else []
        front = usage_front(settings, engine) if with_usage_front else None
        try:
            services.start()
            for worker in workers:
                worker.start()
            if front is not None:
                front.start()
            yield
        finally:
            if front is not None:
                front.stop()
            for worker in workers:
                worker.stop()
            services.close()

    return lifespan


def create_app(settings: Settings | None = None, *, with_usage_front: bool = False,
               background: bool = True) -> Litestar:
    """The app for ``settings`` (default: from the environment); nothing is opened until its lifespan starts.

    ``with_usage_front``: also serve the usage front (``abaxus serve`` does; tests and the
    Quick Start, which run many apps, do not). ``background``: run the webhook dispatcher
    and the alert evaluator (an intake process leaves them to its owner). On SQLite, found
    API keys are cached, exactly (see ``KeyCache``); on PostgreSQL each request looks its key up.
    """
    settings = settings or Settings.from_env()
    configure_logging(settings.log_format)
    # Built now for the middleware; the engine connects (and the schema is migrated) at start-up.
    engine = open_engine(settings.resolved_database_url)
    telemetry = Telemetry()
    limiter = RateLimiter(settings.rate_limit_rpm, settings.rate_limit_storage, key_prefix=settings.rate_limit_prefix,
                          clock=settings.clock)
    handlers: list[Any] = [h for module in ROUTE_MODULES for h in module.ROUTES]
    store_version = sqlite_change_counter(settings.resolved_database_url)
    keys = KeyCache(store_version) if store_version is not None else None

    return Litestar(
        route_handlers=handlers,
        dependencies={**dependencies(), "paging": Provide(paging, sync_to_thread=False)},
        middleware=[LatencyMiddleware(telemetry), AuthMiddleware(engine, limiter, keys),
                    IdempotencyMiddleware(engine, settings.clock)],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=openapi_config(__version__),
        plugins=[JsonNumberSchema()],
        lifespan=[_lifespan(settings, engine, telemetry, with_usage_front, background)],
        state=State({"key_cache": keys}),
        request_max_body_size=6_000_000,
        debug=False,
    )
