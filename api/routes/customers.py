"""Customers (§7): create, list, get, patch."""

from __future__ import annotations

from litestar import Response, get, patch, post
from sqlalchemy import Engine

from abaxus.api.contract import StrictBody, errors
from abaxus.api.routes import Paging, page, run, typed
from abaxus.billing.customers import create_customer, get_customer, list_customers, patch_customer
from abaxus.pipeline.service import Ingestion
from abaxus.schemas.catalog import CustomerCreate, CustomerOut, CustomerPatch
from abaxus.schemas.responses import page_of
from abaxus.settings import Settings

__all__ = ["ROUTES"]

CustomerPage = page_of(CustomerOut)


@post("/v1/customers", tags=["customers"], dto=StrictBody[CustomerCreate], return_dto=None,
      responses=errors(400, 409, 413, 415))
async def create(data: CustomerCreate, engine: Engine, ingestion: Ingestion, settings: Settings) -> Response[CustomerOut]:
    out = await run(create_customer, engine, data, clock=settings.clock)
    ingestion.catalog_changed()
    return typed(out, CustomerOut, 201)


@patch("/v1/customers/{customer_id:str}", tags=["customers"], dto=StrictBody[CustomerPatch], return_dto=None,
       responses=errors(400, 404, 409, 413, 415))
async def update(customer_id: str, data: CustomerPatch, engine: Engine, settings: Settings) -> Response[CustomerOut]:
    return typed(await run(patch_customer, engine, customer_id, data, clock=settings.clock), CustomerOut)


@get("/v1/customers", tags=["customers"], responses=errors())
async def list_all(paging: Paging, engine: Engine) -> Response[CustomerPage]:  # type: ignore[valid-type]
    return page(*await run(list_customers, engine, paging.limit, paging.cursor), CustomerOut)


@get("/v1/customers/{customer_id:str}", tags=["customers"], responses=errors(404))
async def get_one(customer_id: str, engine: Engine) -> Response[CustomerOut]:
    return typed(await run(get_customer, engine, customer_id), CustomerOut)


ROUTES = [create, update, list_all, get_one]
