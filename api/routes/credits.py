"""Prepaid credits: a customer's grants, their ledger, voids and the balance (docs/commercial-terms.md)."""

from __future__ import annotations

from litestar import Response, get, post
from sqlalchemy import Engine

from abaxus.api.contract import StrictBody, errors
from abaxus.api.routes import Paging, page, run, typed
from abaxus.billing.credits import create_grant, credit_balance, get_grant, grant_entries, list_grants, void_grant
from abaxus.schemas.commercial import CreditBalance, CreditGrantCreate, CreditGrantOut, CreditGrantVoid, CreditLedgerEntry
from abaxus.schemas.responses import page_of
from abaxus.settings import Settings

__all__ = ["ROUTES"]

GrantPage = page_of(CreditGrantOut)
LedgerPage = page_of(CreditLedgerEntry)
BODY = (400, 404, 409, 413, 415)
GRANTS = "/v1/customers/{customer_id:str}/credit-grants"


@post(GRANTS, tags=["credits"], dto=StrictBody[CreditGrantCreate], return_dto=None, responses=errors(*BODY))
async def create(customer_id: str, data: CreditGrantCreate, engine: Engine, settings: Settings) -> Response[CreditGrantOut]:
    return typed(await run(create_grant, engine, customer_id, data, clock=settings.clock), CreditGrantOut, 201)


@get(GRANTS, tags=["credits"], responses=errors(404))
async def list_all(customer_id: str, paging: Paging, engine: Engine, settings: Settings) -> Response[GrantPage]:  # type: ignore[valid-type]
    return page(*await run(list_grants, engine, customer_id, paging.limit, paging.cursor, clock=settings.clock), CreditGrantOut)


@get(GRANTS + "/{grant_id:str}", tags=["credits"], responses=errors(404))
async def get_one(customer_id: str, grant_id: str, engine: Engine, settings: Settings) -> Response[CreditGrantOut]:
    return typed(await run(get_grant, engine, customer_id, grant_id, clock=settings.clock), CreditGrantOut)


@post(GRANTS + "/{grant_id:str}/void", tags=["credits"], status_code=200, dto=StrictBody[CreditGrantVoid],
      return_dto=None, responses=errors(*BODY))
async def void(customer_id: str, grant_id: str, engine: Engine, settings: Settings,
               data: CreditGrantVoid | None = None) -> Response[CreditGrantOut]:
    reason = data.reason if data is not None else None
    return typed(await run(void_grant, engine, customer_id, grant_id, reason, clock=settings.clock), CreditGrantOut)


@get(GRANTS + "/{grant_id:str}/ledger", tags=["credits"], responses=errors(404))
async def ledger(customer_id: str, grant_id: str, paging: Paging, engine: Engine) -> Response[LedgerPage]:  # type: ignore[valid-type]
    return page(*await run(grant_entries, engine, customer_id, grant_id, paging.limit, paging.cursor), CreditLedgerEntry)


@get("/v1/customers/{customer_id:str}/credit-balance", tags=["credits"], responses=errors(404))
async def balance(customer_id: str, engine: Engine, settings: Settings, currency: str | None = None) -> Response[CreditBalance]:
    return typed(await run(credit_balance, engine, customer_id, currency, clock=settings.clock), CreditBalance)


ROUTES = [create, list_all, get_one, void, ledger, balance]
