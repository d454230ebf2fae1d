"""API keys (§2): create (secret shown once), list, revoke."""

from __future__ import annotations

from litestar import Response, delete, get, post
from sqlalchemy import Engine

from abaxus.api.auth import KeyCache
from abaxus.api.contract import StrictBody, errors
from abaxus.api.routes import Paging, page, run, typed
from abaxus.billing.api_keys import create_key, list_keys, revoke_key
from abaxus.schemas.catalog import ApiKeyCreate, ApiKeyOut
from abaxus.schemas.responses import page_of
from abaxus.settings import Settings

__all__ = ["ROUTES"]

ApiKeyPage = page_of(ApiKeyOut)


@post("/v1/api-keys", tags=["api keys"], dto=StrictBody[ApiKeyCreate], return_dto=None,
      responses=errors(400, 409, 413, 415))
async def create_api_key(data: ApiKeyCreate, engine: Engine, settings: Settings) -> Response[ApiKeyOut]:
    return typed(await run(create_key, engine, data.name, data.scope, data.mode, clock=settings.clock), ApiKeyOut, 201)


@get("/v1/api-keys", tags=["api keys"], responses=errors())
async def list_api_keys(paging: Paging, engine: Engine) -> Response[ApiKeyPage]:  # type: ignore[valid-type]
    return page(*await run(list_keys, engine, paging.limit, paging.cursor), ApiKeyOut)


@delete("/v1/api-keys/{key_id:str}", tags=["api keys"], status_code=200, responses=errors(404))
async def revoke_api_key(key_id: str, engine: Engine, settings: Settings,
                         key_cache: KeyCache | None) -> Response[ApiKeyOut]:
    revoked = await run(revoke_key, engine, key_id, clock=settings.clock)
    if key_cache is not None:  # after the store changed: a lookup from now on finds it revoked
        key_cache.changed()
    return typed(revoked, ApiKeyOut)


ROUTES = [create_api_key, list_api_keys, revoke_api_key]
