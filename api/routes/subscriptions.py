"""Subscriptions (§8): create pinned to a plan version, list, get, amend."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from abaxus.api.body import read_body
from abaxus.api.responses import json_response, list_response, page_params
from abaxus.api.routes import create_from_body, read_routes, run
from abaxus.api.state import Services
from abaxus.billing.amendments import create_amendment, list_amendments
from abaxus.billing.subscriptions import create_subscription, get_subscription, list_subscriptions
from abaxus.schemas.catalog import AmendmentCreate, AmendmentOut, SubscriptionCreate, SubscriptionOut


@post("/v1/subscriptions", tags=["subscriptions"])
async def create(request: Request[Any, Any, Any], svc: Services) -> Response[SubscriptionOut]:
    return await create_from_body(request, svc, create_subscription, SubscriptionCreate)


@post("/v1/subscriptions/{subscription_id:str}/amendments", tags=["subscriptions"])
async def amend(subscription_id: str, request: Request[Any, Any, Any], svc: Services) -> Response[AmendmentOut]:
    body = await read_body(request, AmendmentCreate)
    return json_response(await run(create_amendment, svc.engine, subscription_id, body), 201)


@get("/v1/subscriptions/{subscription_id:str}/amendments", tags=["subscriptions"])
async def amendments_of(subscription_id: str, request: Request[Any, Any, Any], svc: Services) -> Response[list[AmendmentOut]]:
    return list_response(*await run(list_amendments, svc.engine, subscription_id, *page_params(request)))


ROUTES = [create, amend, amendments_of, *read_routes("/v1/subscriptions", "subscriptions", SubscriptionOut, list_subscriptions, get_subscription,
                                 "customer_id", "status")]
