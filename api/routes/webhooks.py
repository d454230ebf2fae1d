"""Outbound webhook endpoints and their deliveries (docs/webhooks-and-alerts.md)."""

from __future__ import annotations

from typing import Literal

from litestar import Response, delete, get, patch, post
from sqlalchemy import Engine

from abaxus.api.contract import StrictBody, errors
from abaxus.api.routes import Paging, page, run, typed
from abaxus.billing.webhooks import (
    create_endpoint,
    disable_endpoint,
    get_delivery,
    get_endpoint,
    list_deliveries,
    list_endpoints,
    patch_endpoint,
    redeliver,
)
from abaxus.schemas.invoices import EmptyIn
from abaxus.schemas.responses import page_of
from abaxus.schemas.webhooks import WebhookDeliveryOut, WebhookEndpointCreate, WebhookEndpointOut, WebhookEndpointPatch
from abaxus.settings import Settings

__all__ = ["ROUTES"]

EndpointPage = page_of(WebhookEndpointOut)
DeliveryPage = page_of(WebhookDeliveryOut)
BODY = (400, 409, 413, 415)
ONE = "/v1/webhook-endpoints/{endpoint_id:str}"


@post("/v1/webhook-endpoints", tags=["webhooks"], dto=StrictBody[WebhookEndpointCreate], return_dto=None,
      responses=errors(*BODY))
async def create(data: WebhookEndpointCreate, engine: Engine, settings: Settings) -> Response[WebhookEndpointOut]:
    """The new endpoint with its signing ``secret``, shown in this answer only."""
    return typed(await run(create_endpoint, engine, data, clock=settings.clock), WebhookEndpointOut, 201)


@get("/v1/webhook-endpoints", tags=["webhooks"], responses=errors())
async def list_all(paging: Paging, engine: Engine) -> Response[EndpointPage]:  # type: ignore[valid-type]
    return page(*await run(list_endpoints, engine, paging.limit, paging.cursor), WebhookEndpointOut)


@get(ONE, tags=["webhooks"], responses=errors(404))
async def get_one(endpoint_id: str, engine: Engine) -> Response[WebhookEndpointOut]:
    return typed(await run(get_endpoint, engine, endpoint_id), WebhookEndpointOut)


@patch(ONE, tags=["webhooks"], dto=StrictBody[WebhookEndpointPatch], return_dto=None, responses=errors(*BODY, 404))
async def update(endpoint_id: str, data: WebhookEndpointPatch, engine: Engine,
                 settings: Settings) -> Response[WebhookEndpointOut]:
    return typed(await run(patch_endpoint, engine, endpoint_id, data, clock=settings.clock), WebhookEndpointOut)


@delete(ONE, tags=["webhooks"], status_code=200, responses=errors(404))
async def disable(endpoint_id: str, engine: Engine, settings: Settings) -> Response[WebhookEndpointOut]:
    """Disable the endpoint for good; its pending deliveries become ``failed``."""
    return typed(await run(disable_endpoint, engine, endpoint_id, clock=settings.clock), WebhookEndpointOut)


@get(ONE + "/deliveries", tags=["webhooks"], responses=errors(404))
async def deliveries(endpoint_id: str, paging: Paging, engine: Engine, settings: Settings,
                     status: Literal["pending", "succeeded", "failed"] | None = None,
                     event_id: str | None = None) -> Response[DeliveryPage]:  # type: ignore[valid-type]
    """Deliveries to the endpoint, newest first, each with its attempts and next retry."""
    found = await run(list_deliveries, engine, settings, endpoint_id, status, event_id, paging.limit,
                      paging.cursor)
    return page(*found, WebhookDeliveryOut)


@get(ONE + "/deliveries/{delivery_id:str}", tags=["webhooks"], responses=errors(404))
async def delivery(endpoint_id: str, delivery_id: str, engine: Engine, settings: Settings) -> Response[WebhookDeliveryOut]:
    return typed(await run(get_delivery, engine, settings, endpoint_id, delivery_id), WebhookDeliveryOut)


@post(ONE + "/deliveries/{delivery_id:str}/redeliver", tags=["webhooks"], status_code=202, dto=StrictBody[EmptyIn],
      return_dto=None, responses=errors(*BODY, 404))
async def redeliver_one(endpoint_id: str, delivery_id: str, engine: Engine, settings: Settings,
                        data: EmptyIn | None = None) -> Response[WebhookDeliveryOut]:
    """Send the delivery again now, same event id and body: one more attempt if it had ended."""
    return typed(await run(redeliver, engine, settings, endpoint_id, delivery_id), WebhookDeliveryOut, 202)


ROUTES = [create, list_all, get_one, update, disable, deliveries, delivery, redeliver_one]
