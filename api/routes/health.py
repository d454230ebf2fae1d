"""Liveness, readiness and Prometheus metrics (§17)."""

from __future__ import annotations

from typing import Any

from litestar import Response, get

from abaxus.api.responses import json_response
from abaxus.api.routes import run
from abaxus.api.state import Services
from abaxus.errors import Unavailable
from abaxus.store.metadata import ping


@get("/healthz", tags=["operations"])
async def healthz() -> Response[dict[str, str]]:
    return json_response({"status": "ok"})


def _checks(svc: Services) -> dict[str, str]:
    checks = {"metadata_store": "ok" if ping(svc.engine) else "down"}
    for name, part in (("usage_store", svc.usage), ("queue", svc.intake.log if svc.intake else None),
                       ("dataflow", svc.dataflow)):
        if part is not None:
            checks[name] = "ok" if part.healthy() else "down"
    return checks


@get("/readyz", tags=["operations"])
async def readyz(svc: Services) -> Response[dict[str, str]]:
    checks = await run(_checks, svc)
    if any(v != "ok" for v in checks.values()):
        raise Unavailable("NOT_READY", "A store, the queue or the dataflow is down; see checks.", extra={"checks": checks})
    return json_response({"status": "ready"})


@get("/metrics", tags=["operations"], media_type="text/plain; version=0.0.4")
async def prometheus_metrics(svc: Services) -> Response[Any]:
    if svc.dataflow is not None:
        svc.telemetry.pipeline_lag.set(svc.dataflow.lag_seconds())
    return Response(content=svc.telemetry.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


ROUTES = [healthz, readyz, prometheus_metrics]
