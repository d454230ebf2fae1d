"""The dashboard at ``/dashboard``: server-rendered pages over the public API, served by the API process itself.

It reads and writes only through the app's own HTTP API, in-process, with the signed-in
key (``_client``), so it shows exactly the API's figures and the API enforces each key's
scope. Sign-in keeps the key in an ``HttpOnly``, ``SameSite=Strict`` cookie and every form
that writes carries a CSRF token (``_session``). Templates, the stylesheet and the one small
script ship inside the package: no CDN, no build step, works offline. Nothing here appears
in the OpenAPI document; the API-key middleware leaves ``/dashboard`` to this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import HTTPException, NotFoundException
from litestar.static_files import create_static_files_router

from abaxus.api.dashboard._views import BASE, HANDLERS, not_found_page

__all__ = ["BASE", "ROUTES"]


@get("/{rest:path}", include_in_schema=False)
async def _no_such_page(request: Request[Any, Any, Any], rest: str) -> Response[str]:
    return not_found_page(request, NotFoundException())


ROUTES = [
    Router(path=BASE, route_handlers=[*HANDLERS, _no_such_page], include_in_schema=False,
           exception_handlers={HTTPException: not_found_page}),
    create_static_files_router(path=f"{BASE}/static", directories=[Path(__file__).parent / "static"],
                               name="dashboard_static", include_in_schema=False,
                               cache_control=CacheControlHeader(max_age=3600)),
]
