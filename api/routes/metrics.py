"""Metrics (§5): create, list, get, deactivate."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post

from abaxus.api.responses import json_response
from abaxus.api.routes import create_from_body, read_routes, run
from abaxus.api.state import Services
from abaxus.billing.metrics import create_metric, deactivate_metric, get_metric, list_metrics
from abaxus.schemas.catalog import MetricCreate, MetricOut


@post("/v1/metrics", tags=["metrics"])
async def create(request: Request[Any, Any, Any], svc: Services) -> Response[MetricOut]:
    return await create_from_body(request, svc, create_metric, MetricCreate, catalog_changed=True)


@post("/v1/metrics/{key:str}/deactivate", tags=["metrics"])
async def deactivate(key: str, svc: Services) -> Response[MetricOut]:
    out = await run(deactivate_metric, svc.engine, key)
    svc.extras["catalog_changed"]()
    return json_response(out)


ROUTES = [create, deactivate, *read_routes("/v1/metrics", "metrics", MetricOut, list_metrics, get_metric, "status")]
