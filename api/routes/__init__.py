"""Route modules, one per resource; each handler decodes, calls billing, encodes.

The shapes every resource shares (create from a body, list with filters) live here once,
so route modules hold only what differs.
"""

from functools import partial
from typing import Any, Callable, TypeVar

import anyio.to_thread
from litestar import Request, Response

__all__ = ["create_from_body", "list_filtered", "run"]

T = TypeVar("T")


async def run(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking store call on a worker thread, off the event loop."""
    return await anyio.to_thread.run_sync(partial(fn, *args))


async def create_from_body(request: Request[Any, Any, Any], svc: Any, create: Callable[..., Any], body_type: type,
                           *, catalog_changed: bool = False) -> Response[Any]:
    """Decode ``body_type``, run ``create(engine, body)``, answer 201 (refreshing the intake's view if asked)."""
    from abaxus.api.body import read_body
    from abaxus.api.responses import json_response

    out = await run(create, svc.engine, await read_body(request, body_type))
    if catalog_changed:
        svc.extras["catalog_changed"]()
    return json_response(out, 201)


async def list_filtered(request: Request[Any, Any, Any], svc: Any, fetch: Callable[..., Any], *filters: str) -> Response[Any]:
    """``fetch(engine, *filter values, limit, cursor)`` as a list page; filters come from the query string."""
    from abaxus.api.responses import list_response, page_params

    values = [request.query_params.get(name) for name in filters]
    return list_response(*await run(fetch, svc.engine, *values, *page_params(request)))


def read_routes(path: str, tag: str, out: Any, fetch_list: Callable[..., Any], fetch_one: Callable[..., Any],
                *filters: str) -> list[Any]:
    """``GET path`` (a filtered list page) and ``GET path/{id}`` (one object or its 404) for a resource."""
    from litestar import get

    from abaxus.api.responses import json_response
    from abaxus.api.state import Services

    async def list_all(request: Request[Any, Any, Any], svc: Services) -> Response[Any]:
        return await list_filtered(request, svc, fetch_list, *filters)

    async def get_one(object_id: str, svc: Services) -> Response[Any]:
        return json_response(await run(fetch_one, svc.engine, object_id))

    list_all.__annotations__["return"] = Response[list[out]]  # type: ignore[valid-type]
    get_one.__annotations__["return"] = Response[out]
    name = tag.replace(" ", "_")
    return [get(path, tags=[tag], name=f"list_{name}", operation_id=f"list_{name}")(list_all),
            get(f"{path}/{{object_id:str}}", tags=[tag], name=f"get_{name}", operation_id=f"get_{name}")(get_one)]
