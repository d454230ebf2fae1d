"""Coupons and subscription discounts (docs/commercial-terms.md)."""

from __future__ import annotations

from litestar import Response, get, post
from sqlalchemy import Engine

from abaxus.api.contract import StrictBody, errors
from abaxus.api.routes import Paging, page, run, typed
from abaxus.billing.coupons import attach_discount, create_coupon, get_coupon, list_coupons, list_discounts
from abaxus.schemas.commercial import CouponCreate, CouponOut, DiscountCreate, DiscountOut
from abaxus.schemas.responses import page_of
from abaxus.settings import Settings

__all__ = ["ROUTES"]

CouponPage = page_of(CouponOut)
DiscountPage = page_of(DiscountOut)


@post("/v1/coupons", tags=["coupons"], dto=StrictBody[CouponCreate], return_dto=None,
      responses=errors(400, 409, 413, 415))
async def create(data: CouponCreate, engine: Engine, settings: Settings) -> Response[CouponOut]:
    return typed(await run(create_coupon, engine, data, clock=settings.clock), CouponOut, 201)


@get("/v1/coupons", tags=["coupons"], responses=errors())
async def list_all(paging: Paging, engine: Engine) -> Response[CouponPage]:  # type: ignore[valid-type]
    return page(*await run(list_coupons, engine, paging.limit, paging.cursor), CouponOut)


@get("/v1/coupons/{coupon_id:str}", tags=["coupons"], responses=errors(404))
async def get_one(coupon_id: str, engine: Engine) -> Response[CouponOut]:
    return typed(await run(get_coupon, engine, coupon_id), CouponOut)


@post("/v1/subscriptions/{subscription_id:str}/discounts", tags=["coupons"], dto=StrictBody[DiscountCreate],
      return_dto=None, responses=errors(400, 404, 409, 413, 415))
async def attach(subscription_id: str, data: DiscountCreate, engine: Engine, settings: Settings) -> Response[DiscountOut]:
    return typed(await run(attach_discount, engine, subscription_id, data, clock=settings.clock), DiscountOut, 201)


@get("/v1/subscriptions/{subscription_id:str}/discounts", tags=["coupons"], responses=errors(404))
async def discounts_of(subscription_id: str, paging: Paging, engine: Engine) -> Response[DiscountPage]:  # type: ignore[valid-type]
    return page(*await run(list_discounts, engine, subscription_id, paging.limit, paging.cursor), DiscountOut)


ROUTES = [create, list_all, get_one, attach, discounts_of]
