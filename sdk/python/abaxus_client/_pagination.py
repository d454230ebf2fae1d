"""Lazy iteration over cursor-paginated lists (spec §1: ``{data, next_cursor}``, ``limit``, ``cursor``).

Nothing is fetched until the first item is asked for, and each next page only when the
previous one is used up, so ``islice(client.invoices.list(), 10)`` costs one request.
Iterating again starts again from the first page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Generic, TypeVar

from abaxus_client._transport import AsyncTransport, Call, SyncTransport
from abaxus_client.models._base import Page

__all__ = ["AsyncPaginator", "Paginator"]

T = TypeVar("T")
P = TypeVar("P", bound=Page[Any])
_MAX_PAGE = 1000  # the server's page-size bound


class _Pages(Generic[P]):
    def __init__(self, path: str, params: Mapping[str, Any], page_type: type[P], limit: int | None) -> None:
        if limit is not None and not 1 <= limit <= _MAX_PAGE:
            raise ValueError("limit is the page size: 1–1000 (the server's bound).")
        self._path, self._page_type = path, page_type
        self._params = {k: v for k, v in params.items() if v is not None}
        if limit is not None:
            self._params["limit"] = limit

    def _call(self, cursor: str | None) -> Call[P]:
        params = {**self._params, **({"cursor": cursor} if cursor else {})}
        return Call("GET", self._path, self._page_type, params=params)


class Paginator(_Pages[P], Generic[P, T]):
    """An iterator over every item of a list, following ``next_cursor`` lazily."""

    def __init__(self, transport: SyncTransport, path: str, params: Mapping[str, Any], page_type: type[P],
                 limit: int | None = None) -> None:
        super().__init__(path, params, page_type, limit)
        self._transport = transport

    def pages(self) -> Iterator[P]:
        """Whole pages, for callers that want ``next_cursor`` or a page's extra totals."""
        cursor: str | None = None
        while True:
            page = self._transport.request(self._call(cursor))
            yield page
            cursor = page.next_cursor
            if not cursor:
                return

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.data

    def first_page(self) -> P:
        return self._transport.request(self._call(None))


class AsyncPaginator(_Pages[P], Generic[P, T]):
    """An async iterator over every item of a list: ``async for item in client.x.list(): …``."""

    def __init__(self, transport: AsyncTransport, path: str, params: Mapping[str, Any], page_type: type[P],
                 limit: int | None = None) -> None:
        super().__init__(path, params, page_type, limit)
        self._transport = transport

    async def pages(self) -> AsyncIterator[P]:
        cursor: str | None = None
        while True:
            page = await self._transport.request(self._call(cursor))
            yield page
            cursor = page.next_cursor
            if not cursor:
                return

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page.data:
                yield item

    async def first_page(self) -> P:
        return await self._transport.request(self._call(None))

    async def collect(self) -> list[T]:
        """Every item in one list (mind the size: this follows every cursor)."""
        return [item async for item in self]
