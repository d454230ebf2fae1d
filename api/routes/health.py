"""Liveness, readiness and Prometheus metrics (§17)."""

from __future__ import annotations

from typing import Any

from litestar import Response, get

from abaxus.api.contract import ERRORS, NO_AUTH, errors
from abaxus.api.routes import run, typed
from abaxus.api.state import Services
from abaxus.errors import Unavailable
from abaxus.schemas.responses import Health, Ready
from abaxus.store.metadata import ping


@get("/healthz", tags=["operations"], security=NO_AUTH)
async def healthz() -> Response[Health]:
    return typed({"status": "ok"}, Health)


def _checks(svc: Services) -> tuple[dict[str, str], dict[str, str]]:
    """Each part ``ok``/``down`` (§17), and for a part that is down, what went wrong."""
    checks = {"metadata_store": "ok" if ping(svc.engine) else "down"}
    reasons: dict[str, str] = {}
    if checks["metadata_store"] != "ok":
        reasons["metadata_store"] = "the metadata database does not answer"
    if svc.usage is not None:
        store_problem = svc.dataflow.store_problem if svc.dataflow is not None else None
        answers = svc.usage.healthy()
        checks["usage_store"] = "ok" if answers and store_problem is None else "down"
        if not answers:
            reasons["usage_store"] = "the usage store does not answer queries"
        elif store_problem is not None:
            reasons["usage_store"] = f"inserts fail: {store_problem}"
    if svc.intake is not None:
        queue_ok = svc.intake.log.healthy()
        checks["queue"] = "ok" if queue_ok else "down"
        if not queue_ok:
            reasons["queue"] = svc.intake.log.problem or "the intake log is closed"
    if svc.dataflow is not None:
        checks["dataflow"] = "ok" if svc.dataflow.healthy() else "down"
        if checks["dataflow"] != "ok":
            reasons["dataflow"] = str(svc.dataflow.error or "the dataflow is not running")[:300]
    return checks, reasons


@get("/readyz", tags=["operations"], security=NO_AUTH, responses={503: ERRORS[503]})
async def readyz(svc: Services) -> Response[Ready]:
    checks, reasons = await run(_checks, svc)
    if any(v != "ok" for v in checks.values()):
        down = ", ".join(f"{k} ({reasons.get(k, 'down')})" for k, v in checks.items() if v != "ok")
        raise Unavailable("NOT_READY", f"Not ready: {down}.", extra={"checks": checks, "reasons": reasons})
    return typed({"status": "ready"}, Ready)


@get("/metrics", tags=["operations"], media_type="text/plain; version=0.0.4", responses=errors())
async def prometheus_metrics(svc: Services) -> Response[str]:
    if svc.dataflow is not None:
        svc.telemetry.pipeline_lag.set(svc.dataflow.lag_seconds())
    if svc.intake is not None:
        svc.telemetry.intake_backlog.set(svc.intake.backlog_events())
        svc.telemetry.intake_backlog_limit.set(svc.settings.intake_max_backlog_events)
        svc.telemetry.intake_lag_limit.set(svc.settings.intake_max_lag_seconds)
    return Response(content=svc.telemetry.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


ROUTES = [healthz, readyz, prometheus_metrics]
