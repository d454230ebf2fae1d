"""Charging an invoice and the Stripe webhook (§13)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post

from abaxus.api.body import read_body, read_raw
from abaxus.api.responses import json_response
from abaxus.api.routes import run
from abaxus.api.routes.invoices import actor
from abaxus.api.state import Services
from abaxus.errors import AbaxusError
from abaxus.schemas.invoices import EmptyIn


@post("/v1/invoices/{invoice_id:str}/charge", tags=["payments"])
async def charge(invoice_id: str, request: Request[Any, Any, Any], svc: Services) -> Response[dict[str, Any]]:
    await read_body(request, EmptyIn)
    return json_response(await run(svc.payments.charge, invoice_id, actor(request)))


@post("/v1/webhooks/stripe", tags=["payments"])
async def stripe_webhook(request: Request[Any, Any, Any], svc: Services) -> Response[dict[str, Any]]:
    if not svc.settings.stripe_webhook_secret:
        raise AbaxusError("NOT_FOUND", f"No route POST {request.url.path}.", status=404)
    payload = await read_raw(request)
    await run(svc.payments.webhook, payload, request.headers.get("stripe-signature"))
    return json_response({"received": True})


ROUTES = [charge, stripe_webhook]
