"""Charging an invoice and the Stripe webhook (§13)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post

from abaxus.api.contract import ERRORS, NO_AUTH, ONE_MB, StrictBody, check_media, errors
from abaxus.api.routes import run, typed
from abaxus.api.routes.invoices import actor
from abaxus.billing.payments import Payments
from abaxus.errors import AbaxusError
from abaxus.schemas.invoices import EmptyIn
from abaxus.schemas.responses import ChargeResult, WebhookReceived
from abaxus.settings import Settings

__all__ = ["ROUTES"]


@post("/v1/invoices/{invoice_id:str}/charge", tags=["payments"], status_code=200, dto=StrictBody[EmptyIn],
      return_dto=None, responses={**errors(400, 404, 409, 413, 415), 402: ERRORS[402]})
async def charge(invoice_id: str, request: Request[Any, Any, Any], payments: Payments,
                 data: EmptyIn | None = None) -> Response[ChargeResult]:
    return typed(await run(payments.charge, invoice_id, actor(request)), ChargeResult)


@post("/v1/webhooks/stripe", tags=["payments"], status_code=200, security=NO_AUTH,
      responses={400: ERRORS[400], 404: ERRORS[404], 413: ERRORS[413]})
async def stripe_webhook(request: Request[Any, Any, Any], settings: Settings,
                         payments: Payments) -> Response[WebhookReceived]:
    """Signed with ``Stripe-Signature`` (the route exists only when ``STRIPE_WEBHOOK_SECRET`` is set)."""
    if not settings.stripe_webhook_secret:
        raise AbaxusError("NOT_FOUND", f"No route POST {request.url.path}.", status=404)
    payload = await request.body()
    check_media(request, payload, ONE_MB)
    await run(payments.webhook, payload, request.headers.get("stripe-signature"))
    return typed({"received": True}, WebhookReceived)


ROUTES = [charge, stripe_webhook]
