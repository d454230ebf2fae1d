"""Customers (§7): create, list, get, patch."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, patch, post

from abaxus.api.body import read_body
from abaxus.api.responses import json_response
from abaxus.api.routes import create_from_body, read_routes, run
from abaxus.api.state import Services
from abaxus.billing.customers import create_customer, get_customer, list_customers, patch_customer
from abaxus.schemas.catalog import CustomerCreate, CustomerOut, CustomerPatch


@post("/v1/customers", tags=["customers"])
async def create(request: Request[Any, Any, Any], svc: Services) -> Response[CustomerOut]:
    return await create_from_body(request, svc, create_customer, CustomerCreate, catalog_changed=True)


@patch("/v1/customers/{customer_id:str}", tags=["customers"])
async def update(customer_id: str, request: Request[Any, Any, Any], svc: Services) -> Response[CustomerOut]:
    body = await read_body(request, CustomerPatch)
    return json_response(await run(patch_customer, svc.engine, customer_id, body))


ROUTES = [create, update, *read_routes("/v1/customers", "customers", CustomerOut, list_customers, get_customer)]
