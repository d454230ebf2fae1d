"""Charging invoices through Stripe (§13), safely.

Double charges are prevented by our own state, not by trusting the provider:

* a compare-and-set on the invoice (``charge_lock`` from NULL to now, while ``issued``)
  admits one charge at a time; the loser gets ``409 CHARGE_IN_PROGRESS``;
* the attempt is written to the audit trail before Stripe is called, with the Stripe
  idempotency key ``abaxus:<invoice>:<attempt>``; the attempt rises only after a definite
  decline, so a retry after an unknown outcome reuses the key;
* before any new PaymentIntent, we look for one Stripe already holds for this invoice
  (``metadata.abaxus_invoice_id``): a success we missed (crash, timeout) is recorded, not
  charged again. The webhook reconciles the same way.
"""

from __future__ import annotations

from typing import Any, cast

import stripe
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError
from stripe.params import PaymentIntentCreateParams

from abaxus.billing import audit, outbox
from abaxus.billing.customers import load_customer
from abaxus.billing.invoices import invoice_out
from abaxus.errors import AbaxusError, Conflict, InvalidInput, NotFound, Unavailable
from abaxus.logging import get_logger
from abaxus.settings import Settings
from abaxus.store.tables import invoices, webhook_events
from abaxus.timefmt import format_ms

__all__ = ["Payments"]

log = get_logger("abaxus.payments")
STALE_LOCK_MS = 120_000  # a lock this old belongs to a crashed charge: reconcile, then retry
STRIPE_TIMEOUT_S = 20


class _Declined(Exception):
    def __init__(self, code: str, message: str, payment_intent_id: str | None) -> None:
        super().__init__(message)
        self.code, self.message, self.payment_intent_id = code, message, payment_intent_id


class Payments:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = settings.clock
        self.client: stripe.StripeClient | None = None
        if settings.stripe_secret_key:
            self.client = stripe.StripeClient(
                settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base},
                max_network_retries=0, http_client=stripe.RequestsClient(timeout=STRIPE_TIMEOUT_S))

    # ---- charge ------------------------------------------------------------------------
    def charge(self, invoice_id: str, actor: str) -> dict[str, Any]:
        claim = self._claim(invoice_id, actor)
        if "result" in claim:
            return cast("dict[str, Any]", claim["result"])
        inv, customer, attempt = claim["invoice"], claim["customer"], claim["attempt"]
        try:
            found = self._find_paid_intent(inv, customer)
            intent = found or self._create_intent(inv, customer, attempt)
        except _Declined as d:
            self._declined(inv, attempt, d, actor)
            raise AbaxusError("PAYMENT_FAILED", f"The payment was declined ({d.code}): {d.message}", None, status=402,
                              extra={"decline_code": d.code, "payment_intent_id": d.payment_intent_id}) from None
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
            self._release(invoice_id)
            raise Unavailable("PAYMENT_PROVIDER_UNAVAILABLE",
                              "Stripe did not answer; nothing was charged twice. Retry the charge.") from exc
        except BaseException:
            self._release(invoice_id)
            raise
        return self._paid(inv, intent["id"], "charge", actor)

    def _claim(self, invoice_id: str, actor: str) -> dict[str, Any]:
        """Lock the invoice for one charge, after every check that needs no provider.

        An unknown, paid or archived invoice is answered as such (404/409) even when Stripe is
        not configured; only a charge that would really call Stripe needs it (a zero total does not).
        """
        now = self.clock.now_ms()
        with self.engine.begin() as conn:
            row = conn.execute(select(invoices).where(invoices.c.id == invoice_id)).mappings().first()
            if row is None:
                raise NotFound("INVOICE_NOT_FOUND", f"No invoice '{invoice_id}'.")
            inv = dict(row)
            if inv["status"] == "paid":
                raise Conflict("INVOICE_ALREADY_PAID", "The invoice is already paid.")
            if inv["status"] == "archived":
                raise Conflict("INVOICE_ARCHIVED", "The invoice is archived; it cannot be charged.")
            if inv["total_amount"] < 0:
                raise InvalidInput("NEGATIVE_TOTAL", "A negative total is a credit; it cannot be charged.", None)
            if inv["charge_lock"] is not None and now - inv["charge_lock"] < STALE_LOCK_MS:
                raise Conflict("CHARGE_IN_PROGRESS", "A charge of this invoice is in flight; retry when it ends.")
            if inv["total_amount"] == 0:
                result = self._mark_paid(conn, inv, None, "zero_total", actor)
                return {"result": result}
            if self.client is None:
                raise Unavailable("PAYMENT_PROVIDER_UNAVAILABLE", "Set STRIPE_SECRET_KEY to charge invoices.")
            customer = load_customer(conn, inv["customer_id"])
            claimed = conn.execute(update(invoices).where(
                (invoices.c.id == invoice_id) & (invoices.c.status == "issued")
                & ((invoices.c.charge_lock.is_(None)) | (invoices.c.charge_lock < now - STALE_LOCK_MS)))
                .values(charge_lock=now)).rowcount
            if claimed != 1:
                raise Conflict("CHARGE_IN_PROGRESS", "A charge of this invoice is in flight; retry when it ends.")
        attempt = inv["charge_attempt"] + 1
        try:
            self._payment_method(customer)
        except BaseException:
            self._release(invoice_id)
            raise
        with self.engine.begin() as conn:
            audit.append(conn, invoice_id, "invoice.charge_attempted", actor, {
                "attempt": attempt, "amount": inv["total_amount"], "currency": inv["currency"],
                "stripe_idempotency_key": f"abaxus:{invoice_id}:{attempt}"}, at=now)
        return {"invoice": inv, "customer": customer, "attempt": attempt}

    def _payment_method(self, customer: dict[str, Any]) -> str:
        assert self.client is not None
        if customer["payment_provider"] != "stripe" or not customer["payment_provider_customer_id"]:
            raise InvalidInput("PAYMENT_METHOD_MISSING", "Link the customer to a Stripe customer (payment_provider_customer_id).",
                               None)
        if customer["payment_method_id"]:
            return str(customer["payment_method_id"])
        try:
            cus = self.client.v1.customers.retrieve(customer["payment_provider_customer_id"]).to_dict()
        except stripe.InvalidRequestError:
            raise InvalidInput("PAYMENT_METHOD_MISSING", "Stripe does not know this customer; fix payment_provider_customer_id.",
                               None) from None
        except stripe.StripeError as exc:
            raise Unavailable("PAYMENT_PROVIDER_UNAVAILABLE", "Stripe did not answer. Retry the charge.") from exc
        default = (cus.get("invoice_settings") or {}).get("default_payment_method")
        if not default:
            raise InvalidInput("PAYMENT_METHOD_MISSING", "Set payment_method_id or a default payment method in Stripe.", None)
        return str(default if isinstance(default, str) else default["id"])

    def _find_paid_intent(self, inv: dict[str, Any], customer: dict[str, Any]) -> dict[str, Any] | None:
        """A succeeded PaymentIntent Stripe already holds for this invoice, if any."""
        assert self.client is not None
        try:
            listing = self.client.v1.payment_intents.list(
                params={"customer": customer["payment_provider_customer_id"], "limit": 100})
        except stripe.InvalidRequestError:  # Stripe-compatible servers without the filter: match on metadata alone
            listing = self.client.v1.payment_intents.list(params={"limit": 100})
        for item in listing.data:
            pi = item.to_dict()
            if (pi.get("metadata") or {}).get("abaxus_invoice_id") == inv["id"] and pi.get("status") == "succeeded":
                return pi
        return None

    def _create_intent(self, inv: dict[str, Any], customer: dict[str, Any], attempt: int) -> dict[str, Any]:
        assert self.client is not None
        params: PaymentIntentCreateParams = {
            "amount": inv["total_amount"], "currency": inv["currency"], "customer": customer["payment_provider_customer_id"],
            "payment_method": self._payment_method(customer), "off_session": True, "confirm": True,
            "metadata": {"abaxus_invoice_id": inv["id"]},
        }
        try:
            pi = self.client.v1.payment_intents.create(params=params, options={
                "idempotency_key": f"abaxus:{inv['id']}:{attempt}"})
        except stripe.CardError as exc:
            err = exc.error
            code = (err.decline_code if err and err.decline_code else None) or (err.code if err else None) or "card_declined"
            intent = getattr(err, "payment_intent", None)  # absent from some Stripe-compatible servers' errors
            pi_id = intent.id if intent is not None else None
            raise _Declined(code, exc.user_message or str(exc), pi_id) from None
        except stripe.InvalidRequestError as exc:
            code = exc.code or "invalid_request"
            raise _Declined(code, exc.user_message or str(exc), None) from None
        if pi.status != "succeeded":
            code = "authentication_required" if pi.status == "requires_action" else pi.status
            raise _Declined(code, f"The PaymentIntent is {pi.status}.", pi.id)
        return pi.to_dict()

    def _declined(self, inv: dict[str, Any], attempt: int, d: _Declined, actor: str) -> None:
        now = self.clock.now_ms()
        with self.engine.begin() as conn:
            conn.execute(update(invoices).where(invoices.c.id == inv["id"]).values(charge_lock=None, charge_attempt=attempt))
            audit.append(conn, inv["id"], "invoice.charge_failed", actor, {
                "attempt": attempt, "payment_intent_id": d.payment_intent_id, "decline_code": d.code, "message": d.message},
                at=now)
            outbox.emit(conn, "invoice.payment_failed", outbox.invoice_data(
                inv, attempt=attempt, payment_intent_id=d.payment_intent_id, decline_code=d.code, message=d.message), now=now)

    def _release(self, invoice_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(invoices).where(invoices.c.id == invoice_id).values(charge_lock=None))

    def _mark_paid(self, conn: Any, inv: dict[str, Any], intent_id: str | None, source: str, actor: str) -> dict[str, Any]:
        now = self.clock.now_ms()
        done = conn.execute(update(invoices).where((invoices.c.id == inv["id"]) & (invoices.c.status == "issued"))
                            .values(status="paid", paid_at=now, payment_intent_id=intent_id, charge_lock=None)).rowcount
        if done == 1:
            audit.append(conn, inv["id"], "invoice.paid", actor,
                         {"payment_intent_id": intent_id, "amount": inv["total_amount"], "source": source}, at=now)
            inv.update(status="paid", paid_at=now, payment_intent_id=intent_id)
            outbox.emit(conn, "invoice.paid", outbox.invoice_data(inv, payment_intent_id=intent_id, source=source), now=now)
        return {"invoice_id": inv["id"], "status": "paid", "payment_intent_id": intent_id,
                "amount": inv["total_amount"], "currency": inv["currency"], "charged_at": format_ms(now)}

    def _paid(self, inv: dict[str, Any], intent_id: str, source: str, actor: str) -> dict[str, Any]:
        with self.engine.begin() as conn:
            return self._mark_paid(conn, inv, intent_id, source, actor)

    # ---- webhook -----------------------------------------------------------------------
    def webhook(self, payload: bytes, signature: str | None) -> None:
        secret = self.settings.stripe_webhook_secret
        assert secret
        try:
            event = stripe.Webhook.construct_event(payload, signature or "", secret, tolerance=300).to_dict()
        except (stripe.SignatureVerificationError, ValueError):
            raise AbaxusError("INVALID_SIGNATURE", "The Stripe-Signature header does not match this body and secret.",
                              None, status=400) from None
        try:
            with self.engine.begin() as conn:
                now = self.clock.now_ms()
                conn.execute(insert(webhook_events).values(id=event["id"], type=event["type"], received_at=now))
                self._apply(conn, event, now)
        except IntegrityError:
            log.info("webhook_replayed", event_id=event["id"])  # already applied once

    def _apply(self, conn: Any, event: Any, now: int) -> None:
        obj = event["data"]["object"]
        invoice_id = (obj.get("metadata") or {}).get("abaxus_invoice_id")
        if not invoice_id or event["type"] not in ("payment_intent.succeeded", "payment_intent.payment_failed"):
            return
        row = conn.execute(select(invoices).where(invoices.c.id == invoice_id)).mappings().first()
        if row is None:
            return
        inv = dict(row)
        if event["type"] == "payment_intent.succeeded":
            if inv["status"] == "issued":
                self._mark_paid(conn, inv, obj["id"], "webhook", "stripe")
        else:
            err = obj.get("last_payment_error") or {}
            audit.append(conn, invoice_id, "invoice.charge_failed", "stripe", {
                "attempt": inv["charge_attempt"] or None, "payment_intent_id": obj["id"],
                "decline_code": err.get("decline_code") or err.get("code"), "message": err.get("message")}, at=now)
            outbox.emit(conn, "invoice.payment_failed", outbox.invoice_data(
                inv, attempt=inv["charge_attempt"] or None, payment_intent_id=obj["id"],
                decline_code=err.get("decline_code") or err.get("code"), message=err.get("message")), now=now)


def invoice_after(engine: Engine, invoice_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return invoice_out(conn.execute(select(invoices).where(invoices.c.id == invoice_id)).mappings().one())
