"""Subscriptions (§8): create pinned to a plan version, list, get, amend."""

from __future__ import annotations

from typing import Literal

from litestar import Response, get, post
from sqlalchemy import Engine

from abaxus.api.contract import StrictBody, errors
from abaxus.api.routes import Paging, page, run, typed
from abaxus.billing.amendments import create_amendment, list_amendments
from abaxus.billing.subscriptions import create_subscription, get_subscription, list_subscriptions
from abaxus.schemas.catalog import AmendmentCreate, AmendmentOut, SubscriptionCreate, SubscriptionOut
from abaxus.schemas.responses import page_of
from abaxus.settings import Settings

__all__ = ["ROUTES"]

SubscriptionPage = page_of(SubscriptionOut)
AmendmentPage = page_of(AmendmentOut)
Status = Literal["active", "paused", "cancelled", "ended"]


@post("/v1/subscriptions", tags=["subscriptions"], dto=StrictBody[SubscriptionCreate], return_dto=None,
      responses=errors(400, 409, 413, 415))
async def create(data: SubscriptionCreate, engine: Engine, settings: Settings) -> Response[SubscriptionOut]:
    return typed(await run(create_subscription, engine, data, clock=settings.clock), SubscriptionOut, 201)


@get("/v1/subscriptions", tags=["subscriptions"], responses=errors())
async def list_all(paging: Paging, engine: Engine, settings: Settings, customer_id: str | None = None,
                   status: Status | None = None) -> Response[SubscriptionPage]:  # type: ignore[valid-type]
    found = await run(list_subscriptions, engine, customer_id, status, paging.limit, paging.cursor, clock=settings.clock)
    return page(*found, SubscriptionOut)


@get("/v1/subscriptions/{subscription_id:str}", tags=["subscriptions"], responses=errors(404))
async def get_one(subscription_id: str, engine: Engine, settings: Settings) -> Response[SubscriptionOut]:
    return typed(await run(get_subscription, engine, subscription_id, clock=settings.clock), SubscriptionOut)


@post("/v1/subscriptions/{subscription_id:str}/amendments", tags=["subscriptions"], dto=StrictBody[AmendmentCreate],
      return_dto=None, responses=errors(400, 404, 409, 413, 415))
async def amend(subscription_id: str, data: AmendmentCreate, engine: Engine, settings: Settings) -> Response[AmendmentOut]:
    return typed(await run(create_amendment, engine, subscription_id, data, clock=settings.clock), AmendmentOut, 201)


@get("/v1/subscriptions/{subscription_id:str}/amendments", tags=["subscriptions"], responses=errors(404))
async def amendments_of(subscription_id: str, paging: Paging, engine: Engine, settings: Settings) -> Response[AmendmentPage]:  # type: ignore[valid-type]
    found = await run(list_amendments, engine, subscription_id, paging.limit, paging.cursor, clock=settings.clock)
    return page(*found, AmendmentOut)


ROUTES = [create, list_all, get_one, amend, amendments_of]
