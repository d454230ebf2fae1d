"""Liveness, readiness and Prometheus metrics (§17)."""

from __future__ import annotations

from typing import cast

from litestar import Response, get
from sqlalchemy import Engine

from abaxus.api.contract import ERRORS, NO_AUTH, errors
from abaxus.api.routes import run, typed
from abaxus.errors import Unavailable
from abaxus.pipeline.service import Ingestion
from abaxus.schemas.responses import Health, Ready
from abaxus.settings import Settings
from abaxus.store.metadata import ping
from abaxus.telemetry import Telemetry

__all__ = ["ROUTES"]


@get("/healthz", tags=["operations"], security=NO_AUTH)
async def healthz() -> Response[Health]:
    return typed({"status": "ok"}, Health)


def _checks(engine: Engine, ingestion: Ingestion) -> tuple[dict[str, str], dict[str, str]]:
    """Each part ``ok``/``down`` (§17), and for a part that is down, what went wrong."""
    problems = {"metadata_store": None if ping(engine) else "the metadata database does not answer",
                **ingestion.health()}
    checks = {part: "ok" if problem is None else "down" for part, problem in problems.items()}
    reasons = {part: problem for part, problem in problems.items() if problem is not None}
    return checks, reasons


@get("/readyz", tags=["operations"], security=NO_AUTH, responses={503: ERRORS[503]})
async def readyz(engine: Engine, ingestion: Ingestion) -> Response[Ready]:
    checks, reasons = await run(_checks, engine, ingestion)
    if any(v != "ok" for v in checks.values()):
        down = ", ".join(f"{k} ({reasons.get(k, 'down')})" for k, v in checks.items() if v != "ok")
        raise Unavailable("NOT_READY", f"Not ready: {down}.", extra={"checks": checks, "reasons": reasons})
    return typed({"status": "ready"}, Ready)


@get("/metrics", tags=["operations"], media_type="text/plain; version=0.0.4", responses=errors())
async def prometheus_metrics(ingestion: Ingestion, telemetry: Telemetry, settings: Settings) -> Response[str]:
    telemetry.pipeline_lag.set(ingestion.lag_seconds())
    telemetry.intake_backlog.set(ingestion.backlog_events())
    telemetry.intake_backlog_limit.set(settings.intake_max_backlog_events)
    telemetry.intake_lag_limit.set(settings.intake_max_lag_seconds)
    # The exposition format is text (the document says so); prometheus_client renders it as bytes.
    return cast("Response[str]", Response(content=telemetry.render(), media_type="text/plain; version=0.0.4; charset=utf-8"))


ROUTES = [healthz, readyz, prometheus_metrics]
