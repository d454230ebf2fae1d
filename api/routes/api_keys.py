"""API keys (§2): create (secret shown once), list, revoke."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, post

from abaxus.api.body import read_body
from abaxus.api.responses import json_response
from abaxus.api.routes import list_filtered, run
from abaxus.api.state import Services
from abaxus.billing import _validate as v
from abaxus.billing.api_keys import create_key, list_keys, revoke_key
from abaxus.schemas.catalog import ApiKeyCreate, ApiKeyOut


@post("/v1/api-keys", tags=["api keys"])
async def create_api_key(request: Request[Any, Any, Any], svc: Services) -> Response[ApiKeyOut]:
    body = await read_body(request, ApiKeyCreate)
    v.text(body.name, "name", max_len=100)
    return json_response(await run(create_key, svc.engine, body.name, body.scope, body.mode), 201)


@get("/v1/api-keys", tags=["api keys"])
async def list_api_keys(request: Request[Any, Any, Any], svc: Services) -> Response[list[ApiKeyOut]]:
    return await list_filtered(request, svc, list_keys)


@delete("/v1/api-keys/{key_id:str}", tags=["api keys"], status_code=200)
async def revoke_api_key(key_id: str, svc: Services) -> Response[ApiKeyOut]:
    return json_response(await run(revoke_key, svc.engine, key_id))


ROUTES = [create_api_key, list_api_keys, revoke_api_key]
