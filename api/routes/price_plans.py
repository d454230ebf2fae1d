"""Price plans (§6): each POST appends an immutable version."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from abaxus.api.responses import json_response
from abaxus.api.routes import create_from_body, read_routes, run
from abaxus.api.state import Services
from abaxus.billing.plans import create_plan_version, deprecate_version, get_plan, list_plans
from abaxus.schemas.catalog import PlanCreate, PlanOut


@post("/v1/price-plans", tags=["price plans"])
async def create(request: Request[Any, Any, Any], svc: Services) -> Response[PlanOut]:
    return await create_from_body(request, svc, create_plan_version, PlanCreate)


@get("/v1/price-plans/{plan_id:str}/versions/{version:int}", tags=["price plans"])
async def get_version(plan_id: str, version: int, svc: Services) -> Response[PlanOut]:
    return json_response(await run(get_plan, svc.engine, plan_id, version))


@post("/v1/price-plans/{plan_id:str}/versions/{version:int}/deprecate", tags=["price plans"])
async def deprecate(plan_id: str, version: int, svc: Services) -> Response[PlanOut]:
    return json_response(await run(deprecate_version, svc.engine, plan_id, version))


ROUTES = [create, get_version, deprecate, *read_routes("/v1/price-plans", "price plans", PlanOut, list_plans, get_plan)]
