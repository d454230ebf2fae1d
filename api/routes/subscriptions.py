"""Subscriptions (§8): create pinned to a plan version, list, get."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post

from abaxus.api.routes import create_from_body, read_routes
from abaxus.api.state import Services
from abaxus.billing.subscriptions import create_subscription, get_subscription, list_subscriptions
from abaxus.schemas.catalog import SubscriptionCreate, SubscriptionOut


@post("/v1/subscriptions", tags=["subscriptions"])
async def create(request: Request[Any, Any, Any], svc: Services) -> Response[SubscriptionOut]:
    return await create_from_body(request, svc, create_subscription, SubscriptionCreate)


ROUTES = [create, *read_routes("/v1/subscriptions", "subscriptions", SubscriptionOut, list_subscriptions, get_subscription,
                                 "customer_id", "status")]
