"""Usage alerts (docs/webhooks-and-alerts.md): create, list, get, disable."""

from __future__ import annotations

from litestar import Response, delete, get, post
from sqlalchemy import Engine

from abaxus.api.contract import StrictBody, errors
from abaxus.api.routes import Paging, page, run, typed
from abaxus.billing.alerts import create_alert, disable_alert, get_alert, list_alerts
from abaxus.schemas.responses import page_of
from abaxus.schemas.webhooks import AlertCreate, AlertOut
from abaxus.settings import Settings

__all__ = ["ROUTES"]

AlertPage = page_of(AlertOut)


@post("/v1/alerts", tags=["alerts"], dto=StrictBody[AlertCreate], return_dto=None, responses=errors(400, 409, 413, 415))
async def create(data: AlertCreate, engine: Engine, settings: Settings) -> Response[AlertOut]:
    return typed(await run(create_alert, engine, data, clock=settings.clock), AlertOut, 201)


@get("/v1/alerts", tags=["alerts"], responses=errors())
async def list_all(paging: Paging, engine: Engine, customer_id: str | None = None) -> Response[AlertPage]:  # type: ignore[valid-type]
    return page(*await run(list_alerts, engine, customer_id, paging.limit, paging.cursor), AlertOut)


@get("/v1/alerts/{alert_id:str}", tags=["alerts"], responses=errors(404))
async def get_one(alert_id: str, engine: Engine) -> Response[AlertOut]:
    """The alert with ``last_triggered_at`` and the period it last fired in."""
    return typed(await run(get_alert, engine, alert_id), AlertOut)


@delete("/v1/alerts/{alert_id:str}", tags=["alerts"], status_code=200, responses=errors(404))
async def disable(alert_id: str, engine: Engine, settings: Settings) -> Response[AlertOut]:
    """Stop evaluating the alert, for good."""
    return typed(await run(disable_alert, engine, alert_id, clock=settings.clock), AlertOut)


ROUTES = [create, list_all, get_one, disable]
