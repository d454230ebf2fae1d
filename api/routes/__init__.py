"""Route modules, one per resource; each handler takes its decoded body, calls billing, encodes.

What every resource shares lives here once: running blocking store calls off the event loop,
the ``limit``/``cursor`` paging parameters (a dependency, so the OpenAPI document lists them
on every list operation), and typed answers.
"""

from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, TypeVar, cast

import anyio.to_thread
import msgspec
from litestar import Response
from litestar.params import Parameter

from abaxus.schemas.codec import encode_json
from abaxus.schemas.responses import page_of

__all__ = ["Paging", "page", "paging", "run", "typed"]

T = TypeVar("T")


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking store call on a worker thread, off the event loop."""
    return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))


class Paging(msgspec.Struct, frozen=True):
    limit: int
    cursor: str | None


def paging(
    limit: Annotated[int, Parameter(ge=1, le=1000, description="Page size, 1–1000.")] = 100,
    cursor: Annotated[str | None, Parameter(description="The next_cursor of the previous page.")] = None,
) -> Paging:
    """``limit`` (1–1000, default 100) and ``cursor`` (§1), validated before the handler runs."""
    return Paging(limit, cursor or None)


def typed(content: Any, out: type[T], status: int = 200, headers: dict[str, str] | None = None) -> Response[T]:
    """Answer with ``content`` as the struct ``out``: what billing built is checked against the contract.

    The body is encoded here, once, with the contract's number formats (quantities as plain
    JSON numbers); the annotation says what that body is, for the handler and the document.
    """
    if not isinstance(content, out):
        content = msgspec.convert(content, out, from_attributes=True)
    body = Response(content=encode_json(content), status_code=status, media_type="application/json", headers=headers)
    return cast("Response[T]", body)


def page(rows: list[Any], next_cursor: str | None, item: type) -> Response[Any]:
    """A ``{data, next_cursor}`` list page of ``item`` structs."""
    return typed({"data": rows, "next_cursor": next_cursor}, page_of(item))
