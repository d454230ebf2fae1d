"""Metrics (§5): create, list, get, deactivate."""

from __future__ import annotations

from typing import Literal

from litestar import Response, get, post
from sqlalchemy import Engine

from abaxus.api.contract import StrictBody, errors
from abaxus.api.routes import Paging, page, run, typed
from abaxus.billing.metrics import create_metric, deactivate_metric, get_metric, list_metrics
from abaxus.pipeline.service import Ingestion
from abaxus.schemas.catalog import MetricCreate, MetricOut
from abaxus.schemas.responses import page_of
from abaxus.settings import Settings

__all__ = ["ROUTES"]

MetricPage = page_of(MetricOut)


@post("/v1/metrics", tags=["metrics"], dto=StrictBody[MetricCreate], return_dto=None,
      responses=errors(400, 409, 413, 415))
async def create(data: MetricCreate, engine: Engine, ingestion: Ingestion, settings: Settings) -> Response[MetricOut]:
    out = await run(create_metric, engine, data, clock=settings.clock)
    ingestion.catalog_changed()
    return typed(out, MetricOut, 201)


@post("/v1/metrics/{key:str}/deactivate", tags=["metrics"], status_code=200, responses=errors(404))
async def deactivate(key: str, engine: Engine, ingestion: Ingestion, settings: Settings) -> Response[MetricOut]:
    out = await run(deactivate_metric, engine, key, clock=settings.clock)
    ingestion.catalog_changed()
    return typed(out, MetricOut)


@get("/v1/metrics", tags=["metrics"], responses=errors())
async def list_all(paging: Paging, engine: Engine,
                   status: Literal["active", "inactive"] | None = None) -> Response[MetricPage]:  # type: ignore[valid-type]
    return page(*await run(list_metrics, engine, status, paging.limit, paging.cursor), MetricOut)


@get("/v1/metrics/{key:str}", tags=["metrics"], responses=errors(404))
async def get_one(key: str, engine: Engine) -> Response[MetricOut]:
    return typed(await run(get_metric, engine, key), MetricOut)


ROUTES = [create, deactivate, list_all, get_one]
