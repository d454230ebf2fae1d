"""Price plans (§6): each POST appends an immutable version."""

from __future__ import annotations

from litestar import Response, get, post
from sqlalchemy import Engine

from abaxus.api.contract import StrictBody, errors
from abaxus.api.routes import Paging, page, run, typed
from abaxus.billing.plans import create_plan_version, deprecate_version, get_plan, list_plans
from abaxus.schemas.catalog import PlanCreate, PlanOut
from abaxus.schemas.responses import page_of
from abaxus.settings import Settings

__all__ = ["ROUTES"]

PlanPage = page_of(PlanOut)


@post("/v1/price-plans", tags=["price plans"], dto=StrictBody[PlanCreate], return_dto=None,
      responses=errors(400, 409, 413, 415))
async def create(data: PlanCreate, engine: Engine, settings: Settings) -> Response[PlanOut]:
    return typed(await run(create_plan_version, engine, data, clock=settings.clock), PlanOut, 201)


@get("/v1/price-plans", tags=["price plans"], responses=errors())
async def list_all(paging: Paging, engine: Engine, settings: Settings) -> Response[PlanPage]:  # type: ignore[valid-type]
    return page(*await run(list_plans, engine, paging.limit, paging.cursor, clock=settings.clock), PlanOut)


@get("/v1/price-plans/{plan_id:str}", tags=["price plans"], responses=errors(404))
async def get_one(plan_id: str, engine: Engine, settings: Settings) -> Response[PlanOut]:
    return typed(await run(get_plan, engine, plan_id, clock=settings.clock), PlanOut)


@get("/v1/price-plans/{plan_id:str}/versions/{version:int}", tags=["price plans"], responses=errors(404))
async def get_version(plan_id: str, version: int, engine: Engine, settings: Settings) -> Response[PlanOut]:
    return typed(await run(get_plan, engine, plan_id, version, clock=settings.clock), PlanOut)


@post("/v1/price-plans/{plan_id:str}/versions/{version:int}/deprecate", tags=["price plans"], status_code=200,
      responses=errors(404))
async def deprecate(plan_id: str, version: int, engine: Engine, settings: Settings) -> Response[PlanOut]:
    return typed(await run(deprecate_version, engine, plan_id, version, clock=settings.clock), PlanOut)


ROUTES = [create, list_all, get_one, get_version, deprecate]
