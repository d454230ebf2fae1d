"""What every resource shares: its transport, path quoting, and list construction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from abaxus_client._pagination import AsyncPaginator, Paginator
from abaxus_client._transport import AsyncTransport, SyncTransport
from abaxus_client.models._base import Page

__all__ = ["AsyncResource", "SyncResource", "seg"]

T = TypeVar("T")


def seg(value: str | int) -> str:
    """One path segment, quoted: an id can never change which route is called."""
    return quote(str(value), safe="")


class SyncResource:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def _list(self, path: str, item: type[T], params: Mapping[str, Any], limit: int | None) -> Paginator[Page[T], T]:
        return Paginator(self._t, path, params, Page[item], limit)  # type: ignore[valid-type]


class AsyncResource:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    def _list(self, path: str, item: type[T], params: Mapping[str, Any],
              limit: int | None) -> AsyncPaginator[Page[T], T]:
        return AsyncPaginator(self._t, path, params, Page[item], limit)  # type: ignore[valid-type]
